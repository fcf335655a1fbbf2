// Helpers shared by the coproc test suites.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <ostream>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

extern char** environ;

// Boost.Test prints what it compares; teach it std::optional.
namespace boost::test_tools::tt_detail {
template <class T>
struct print_log_value<std::optional<T>> {
  void operator()(std::ostream& os, const std::optional<T>& v) {
    if (v)
      print_log_value<T>()(os, *v);
    else
      os << "nullopt";
  }
};
}  // namespace boost::test_tools::tt_detail

namespace coproc_test {

// A scenario is a whole program run by `<test binary> --scenario <name> args...`.
using scenario_fn = int (*)(int argc, char** argv);
std::map<std::string, scenario_fn>& scenarios();
struct scenario_registrar {
  scenario_registrar(const char* name, scenario_fn fn);
};
#define COPROC_TEST_SCENARIO(name)                                               \
  static int scenario_##name(int argc, char** argv);                             \
  static ::coproc_test::scenario_registrar registrar_##name(#name, scenario_##name); \
  static int scenario_##name([[maybe_unused]] int argc, [[maybe_unused]] char** argv)

// GCC 12's ASan and TSan allocators are not fork-safe: a child forked while another thread of
// the parent allocates may hang at its first allocation (docs/design.md, "Forked children
// under the sanitizers"). True in those two builds (not under UBSan alone): tests that fork from
// a multi-threaded parent keep their children allocation-free there, or do less.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized = true;
#else
inline constexpr bool sanitized = false;
#endif

// Writes `n` bytes from `data` to `fd` with write(2), again after EINTR and short writes; false
// (errno says why) if a write fails. Allocation-free: children of multi-threaded parents call it.
inline bool write_all(int fd, const void* data, std::size_t n) noexcept {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const auto w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Formats `v` in decimal into `out` (no allocation, no terminating '\0'); returns the number of
// characters.
inline std::size_t format_decimal(unsigned long v, char* out) noexcept {
  char tmp[24];
  std::size_t n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  for (std::size_t i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  return n;
}

// Waits until `fd` is readable (or hung up, or in error: a read then tells which); false once
// `deadline` has passed (a hang guard) or if poll(2) fails. Allocation-free.
inline bool wait_readable(int fd, std::chrono::steady_clock::time_point deadline) noexcept {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}
inline bool wait_readable(int fd, std::chrono::milliseconds guard) noexcept {
  return wait_readable(fd, std::chrono::steady_clock::now() + guard);
}

// Number of open descriptors of this process.
inline int fd_count() {
  int n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) throw std::system_error(errno, std::generic_category(), "opendir");
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - 1;  // the directory stream itself
}

// True if some child of this process is a zombie (waitable and not reaped).
inline bool has_zombie_child() {
  siginfo_t info{};
  if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == -1) return false;  // ECHILD
  return info.si_pid != 0;
}

// A plain pipe for child-to-parent data (connections come later in coproc).
class test_pipe {
 public:
  test_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) == -1) throw std::system_error(errno, std::generic_category(), "pipe");
    r_ = fds[0];
    w_ = fds[1];
  }
  ~test_pipe() {
    close_read();
    close_write();
  }
  test_pipe(const test_pipe&) = delete;
  test_pipe& operator=(const test_pipe&) = delete;

  int read_fd() const { return r_; }
  int write_fd() const { return w_; }
  void close_read() {
    if (r_ >= 0) ::close(std::exchange(r_, -1));
  }
  void close_write() {
    if (w_ >= 0) ::close(std::exchange(w_, -1));
  }
  // In the child.
  void write(const std::string& s) const {
    if (!write_all(w_, s.data(), s.size()))
      throw std::system_error(errno, std::generic_category(), "write");
  }
  // In the parent: everything until EOF (close the parent's write end first), with a hang guard.
  std::string read_all(std::chrono::seconds guard = std::chrono::seconds(30)) {
    close_write();
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + guard;
    char buf[4096];
    for (;;) {
      if (!wait_readable(r_, deadline)) throw std::runtime_error("read_all: hang guard expired");
      auto n = ::read(r_, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) throw std::system_error(errno, std::generic_category(), "read");
      if (n == 0) return out;
      out.append(buf, static_cast<std::size_t>(n));
    }
  }
  // One line (without '\n'), with a hang guard.
  std::string read_line(std::chrono::seconds guard = std::chrono::seconds(30)) {
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + guard;
    for (;;) {
      if (!wait_readable(r_, deadline)) throw std::runtime_error("read_line: hang guard expired");
      char c;
      auto n = ::read(r_, &c, 1);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) throw std::system_error(errno, std::generic_category(), "read");
      if (n == 0 || c == '\n') return out;
      out.push_back(c);
    }
  }

 private:
  int r_ = -1, w_ = -1;
};

// In a child: waits until the parent closes `release`'s write end (a hang guard ends the wait
// after 30 s). The child's own inherited copy of the write end is closed first, or EOF would
// never come.
inline void wait_for_release(test_pipe& release) {
  release.close_write();
  wait_readable(release.read_fd(), std::chrono::seconds(30));
}

// ---------------------------------------------------------------------------------------------
// Start methods. COPROC_TEST_START_METHOD=fork|spawn|forkserver (the `spawn`, `forkserver`,
// `spawn_nopidfd` and `forkserver_nopidfd` test setups) makes that method the default of the
// whole binary (test_main.cpp). A test that cannot run under some method says so and skips
// (BOOST_TEST_MESSAGE), or starts its children with `.method = coproc::start_method::fork`
// explicitly, with a comment why.

// The default start method of this test binary (what test_main set).
coproc::start_method method_under_test();
// What coproc::get_start_method() returned before test_main set the method under test.
coproc::start_method library_default_method();
// True unless the default method is forkserver: under fork and spawn the children are this
// process's own (it can waitpid them, they are its zombies); under forkserver they are the
// server's.
inline bool children_are_ours() { return method_under_test() != coproc::start_method::forkserver; }

// Starts and joins one child with the method under test, so that what a method keeps for the
// whole program (a forkserver and the connection to it) exists before a test counts this
// process's descriptors.
void warm_up_start_method();

// Another connection on the same descriptor (a duplicate), to hand to one more child (a
// connection cannot be copied). It belongs to coproc as the original does.
coproc::connection dup_connection(const coproc::connection& c);

// A one-way pipe whose ends are coproc connections, used as a plain byte stream (never
// framed: coproc never reads ahead, so raw reads and writes on fileno() are safe). The child's
// ends are handed to it as arguments of its target (writer() / reader(): a new duplicate per
// call), so they reach it under every start method and no other child inherits them; the
// parent's own ends stay here. The parent's side has test_pipe's interface.
class conn_pipe {
 public:
  conn_pipe();
  conn_pipe(const conn_pipe&) = delete;
  conn_pipe& operator=(const conn_pipe&) = delete;

  // For a child: a duplicate of the write end (it writes, the parent reads) or of the read end
  // (the parent writes or closes its write end, the child waits).
  coproc::connection writer() const { return dup_connection(w_); }
  coproc::connection reader() const { return dup_connection(r_); }

  int read_fd() const { return r_.fileno(); }
  void close_read() { r_.close(); }
  // Releases the children waiting on reader()s (they see the end of the stream).
  void close_write() { w_.close(); }
  void write(const std::string& s) const;
  // Everything until EOF (closes the parent's write end first), with a hang guard.
  std::string read_all(std::chrono::seconds guard = std::chrono::seconds(30));
  // One line (without '\n'), with a hang guard.
  std::string read_line(std::chrono::seconds guard = std::chrono::seconds(30));

 private:
  coproc::connection r_, w_;
};

// In a child: writes `s` as raw bytes to a conn_pipe's writer() (throws on failure).
void send_text(coproc::connection& c, std::string_view s);
// In a child: waits until the parent closes the write end of the conn_pipe whose reader() this
// is (a hang guard ends the wait after 30 s).
void wait_for_release(coproc::connection& release);

// Targets that many tests share, registered for every start method (helpers.cpp). Their names
// are taken in every test binary: test files register others.
namespace targets {
void nothing();                                            // returns: exit code 0
void exit_with(int code);                                  // coproc::exit(code)
void pause_forever();                                      // until a signal ends it
void raise_signal(int sig);                                // ::raise(sig), then pause
void released(coproc::connection release);                // wait_for_release, then return
void released_exit(coproc::connection release, int code);  // wait_for_release, then exit(code)
}  // namespace targets

// Checks that `f` throws std::logic_error whose what() contains `words` (Python's wording for a
// misuse).
template <class F>
void expect_misuse(F&& f, const std::string& words) {
  try {
    f();
  } catch (const std::logic_error& e) {
    BOOST_TEST(std::string(e.what()).find(words) != std::string::npos,
               "'" << e.what() << "' does not contain '" << words << "'");
    return;
  }
  BOOST_ERROR("no std::logic_error containing '" << words << "'");
}

struct run_result {
  int exit_code;  // >= 0 exit code, -N for signal N
  std::string out, err;
  std::chrono::milliseconds elapsed;
};

// Runs this test binary as `--scenario name args...`, capturing stdout and stderr, with stdin
// from `input` (a pipe). A hang guard kills it after `guard`.
run_result run_scenario(const std::string& name, std::vector<std::string> args = {},
                        std::string input = {},
                        std::chrono::seconds guard = std::chrono::seconds(60));

// The process-wide settings a test changes are restored however the test ends (a failing check
// or an exception), so that they cannot leak into the next test.

// `sig`'s action is `handler` (no SA_RESTART, nothing extra masked) for the scope.
class signal_action_scope {
 public:
  signal_action_scope(int sig, void (*handler)(int)) : sig_(sig) {
    struct sigaction action {};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    if (::sigaction(sig, &action, &old_) == -1)
      throw std::system_error(errno, std::generic_category(), "sigaction");
  }
  ~signal_action_scope() { ::sigaction(sig_, &old_, nullptr); }
  signal_action_scope(const signal_action_scope&) = delete;
  signal_action_scope& operator=(const signal_action_scope&) = delete;

 private:
  int sig_;
  struct sigaction old_ {};
};

// SIGCHLD ignored for the scope: the kernel reaps children by itself, and their status is lost.
struct sigchld_ignored : signal_action_scope {
  sigchld_ignored() : signal_action_scope(SIGCHLD, SIG_IGN) {}
};

// With SIGCHLD ignored (sigchld_ignored): waits until the kernel has reaped every child of this
// process -- waitid then blocks while any child runs and fails with ECHILD once none is left --
// so the test's own child must be the only one. Returns the errno that ended the wait (ECHILD
// unless something else went wrong). Allocation-free: a pthread_atfork handler may call it.
inline int wait_until_children_reaped() noexcept {
  siginfo_t info{};
  while (::waitid(P_ALL, 0, &info, WEXITED | WNOWAIT) == 0 || errno == EINTR) {
  }
  return errno;
}

// `sig` is added to this thread's signal mask for the scope. At its end the whole mask is put
// back as it was at its start: whatever else was blocked (or unblocked) in between is undone
// too.
class signal_blocked_scope {
 public:
  explicit signal_blocked_scope(int sig) {
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, sig);
    if (const int e = ::pthread_sigmask(SIG_BLOCK, &block, &old_); e != 0)
      throw std::system_error(e, std::generic_category(), "pthread_sigmask");
  }
  ~signal_blocked_scope() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  signal_blocked_scope(const signal_blocked_scope&) = delete;
  signal_blocked_scope& operator=(const signal_blocked_scope&) = delete;

 private:
  sigset_t old_;
};

// A resource limit, restored at the end of the scope (or by restore()) to what it was at its
// start.
class rlimit_scope {
 public:
  explicit rlimit_scope(int resource) : resource_(resource) {
    if (::getrlimit(resource_, &old_) == -1)
      throw std::system_error(errno, std::generic_category(), "getrlimit");
  }
  ~rlimit_scope() { restore(); }
  rlimit_scope(const rlimit_scope&) = delete;
  rlimit_scope& operator=(const rlimit_scope&) = delete;

  const rlimit& old() const { return old_; }
  // Sets the soft limit to `soft` (at most the hard limit); returns the soft limit now in force.
  rlim_t set_soft(rlim_t soft) const {
    rlimit lim = old_;
    lim.rlim_cur = soft > lim.rlim_max ? lim.rlim_max : soft;
    ::setrlimit(resource_, &lim);
    ::getrlimit(resource_, &lim);
    return lim.rlim_cur;
  }
  void restore() const { ::setrlimit(resource_, &old_); }

 private:
  int resource_;
  rlimit old_{};
};

// The soft limit on open descriptors raised to the hard limit for the scope; limit() is the
// soft limit then in force.
class descriptor_limit_raised {
 public:
  descriptor_limit_raised() : limit_(saved_.set_soft(saved_.old().rlim_max)) {}
  rlim_t limit() const { return limit_; }

 private:
  rlimit_scope saved_{RLIMIT_NOFILE};
  rlim_t limit_;
};

// Descriptors opened on /dev/null until the table is full (EMFILE); closed at the end of the
// scope (or by release()). Filling allocates nothing (below 4,096 descriptors).
class descriptor_hogs {
 public:
  descriptor_hogs() { fds_.reserve(4096); }
  ~descriptor_hogs() { release(); }
  descriptor_hogs(const descriptor_hogs&) = delete;
  descriptor_hogs& operator=(const descriptor_hogs&) = delete;

  // Returns the errno that stopped the filling (EMFILE expected).
  int fill() {
    for (;;) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) return errno;
      fds_.push_back(fd);
    }
  }
  // Closes one of them (if any): one descriptor free again.
  void free_one() {
    if (fds_.empty()) return;
    ::close(fds_.back());
    fds_.pop_back();
  }
  void release() {
    for (int fd : fds_) ::close(fd);
    fds_.clear();
  }
  std::size_t size() const { return fds_.size(); }

 private:
  std::vector<int> fds_;
};

// The default start method (coproc::set_start_method), restored at the end of the scope.
class start_method_scope {
 public:
  start_method_scope() = default;
  ~start_method_scope() { coproc::set_start_method(old_); }
  start_method_scope(const start_method_scope&) = delete;
  start_method_scope& operator=(const start_method_scope&) = delete;

 private:
  coproc::start_method old_ = coproc::get_start_method();
};

// seccomp filters, for tests that make a system call fail as a kernel, a container runtime or a
// limit would. seccomp_audit_arch is this architecture's AUDIT_ARCH_ value, 0 where the tests
// do not express filters (install_seccomp_filter then refuses).
#if defined(__x86_64__)
inline constexpr unsigned seccomp_audit_arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
inline constexpr unsigned seccomp_audit_arch = AUDIT_ARCH_AARCH64;
#else
inline constexpr unsigned seccomp_audit_arch = 0;
#endif

// Installs `filter` for this thread and every process forked (or thread created) from it from
// now on; there is no way back. False where it cannot be expressed or installed. System calls
// only: a child between fork and exec may call it.
template <std::size_t N>
bool install_seccomp_filter(sock_filter (&filter)[N]) noexcept {
  if (seccomp_audit_arch == 0) return false;
  sock_fprog prog{static_cast<unsigned short>(N), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

// Makes pidfd_open fail with `err` from now on (install_seccomp_filter), as an old container
// runtime's seccomp profile (EPERM) or an old kernel (ENOSYS) would.
inline bool refuse_pidfd_open(int err) noexcept {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, seccomp_audit_arch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  return install_seccomp_filter(filter);
}

// True if thread `tid` of process `pid` sleeps in the kernel (state S in
// /proc/<pid>/task/<tid>/stat: blocked in a system call, neither running nor runnable). It
// allocates nothing, so a child forked from a multithreaded parent may call it too.
inline bool thread_asleep(pid_t pid, pid_t tid) {
  char path[64], buf[512];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/stat", static_cast<int>(pid), static_cast<int>(tid));
  const int f = ::open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return false;
  const auto n = ::read(f, buf, sizeof buf - 1);
  ::close(f);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* name_end = std::strrchr(buf, ')');  // the command name may contain anything
  return name_end && name_end[1] == ' ' && name_end[2] == 'S';
}

// True if signal `sig`, sent to thread `tid` of `pid` alone (pthread_kill, tgkill), is still
// pending: the thread has not taken it yet (SigPnd in /proc/<pid>/task/<tid>/status). Once
// taken, the thread was woken from any sleep in a system call to handle it, whether a
// sanitizer's runtime then runs the handler at once or later.
inline bool signal_pending(pid_t pid, pid_t tid, int sig) {
  char path[64], buf[2048];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/status", static_cast<int>(pid), static_cast<int>(tid));
  const int f = ::open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return false;
  const auto n = ::read(f, buf, sizeof buf - 1);
  ::close(f);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* line = std::strstr(buf, "\nSigPnd:");
  if (!line) return false;
  const unsigned long long mask = std::strtoull(line + 8, nullptr, 16);
  return (mask >> (sig - 1)) & 1u;
}

// Waits until `done()` (looked at every millisecond); false if it is still false after `guard`
// (a hang guard). Allocates nothing.
template <class Pred>
bool wait_until(Pred done, std::chrono::seconds guard = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + guard;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    const timespec pause{0, 1'000'000};
    ::nanosleep(&pause, nullptr);
  }
  return true;
}

// Waits until thread `tid` of `pid` sleeps in the kernel; false after `guard`.
inline bool wait_until_asleep(pid_t pid, pid_t tid,
                              std::chrono::seconds guard = std::chrono::seconds(30)) {
  return wait_until([=] { return thread_asleep(pid, tid); }, guard);
}

}  // namespace coproc_test
