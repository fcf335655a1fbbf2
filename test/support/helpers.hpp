// Helpers shared by the coproc test suites.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
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
#include <system_error>
#include <utility>
#include <vector>

#include <ostream>

#include <boost/test/unit_test.hpp>

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
    std::size_t done = 0;
    while (done < s.size()) {
      auto n = ::write(w_, s.data() + done, s.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::system_error(errno, std::generic_category(), "write");
      done += static_cast<std::size_t>(n);
    }
  }
  // In the parent: everything until EOF (close the parent's write end first), with a hang guard.
  std::string read_all(std::chrono::seconds guard = std::chrono::seconds(30)) {
    close_write();
    std::string out;
    const auto deadline = std::chrono::steady_clock::now() + guard;
    char buf[4096];
    for (;;) {
      pollfd p{r_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw std::runtime_error("read_all: hang guard expired");
      if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
        throw std::system_error(errno, std::generic_category(), "poll");
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
      pollfd p{r_, POLLIN, 0};
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) throw std::runtime_error("read_line: hang guard expired");
      if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
        throw std::system_error(errno, std::generic_category(), "poll");
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
  pollfd p{release.read_fd(), POLLIN, 0};
  ::poll(&p, 1, 30'000);
}

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

// `sig` is added to this thread's signal mask for the scope.
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

// A resource limit, restored at the end of the scope to what it was at its start.
class rlimit_scope {
 public:
  explicit rlimit_scope(int resource) : resource_(resource) {
    if (::getrlimit(resource_, &old_) == -1)
      throw std::system_error(errno, std::generic_category(), "getrlimit");
  }
  ~rlimit_scope() { ::setrlimit(resource_, &old_); }
  rlimit_scope(const rlimit_scope&) = delete;
  rlimit_scope& operator=(const rlimit_scope&) = delete;

  const rlimit& old() const { return old_; }
  bool set(const rlimit& lim) const { return ::setrlimit(resource_, &lim) == 0; }

 private:
  int resource_;
  rlimit old_{};
};

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
