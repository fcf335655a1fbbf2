// What the pool suites share: the tasks (registered, so that spawn and forkserver workers find
// them by name), a named pipe a task blocks on until the test releases it, and the start
// methods. Included by exactly one source file of each pool test binary (the COPROC_TARGET
// registrars are defined here).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <coproc/coproc.hpp>

#include "helpers.hpp"

#include <boost/asio/error.hpp>

// Boost.Test prints what it compares: the error enums the pool's asynchronous forms report.
namespace boost::test_tools::tt_detail {
template <>
struct print_log_value<coproc::errc> {
  void operator()(std::ostream& os, coproc::errc e) { os << make_error_code(e).message(); }
};
template <>
struct print_log_value<boost::asio::error::basic_errors> {
  void operator()(std::ostream& os, boost::asio::error::basic_errors e) {
    os << make_error_code(e).message();
  }
};
}  // namespace boost::test_tools::tt_detail

namespace pool_tasks {

inline int sqr(int x) { return x * x; }
COPROC_TARGET(sqr);
inline int mul(int a, int b) { return a * b; }
COPROC_TARGET(mul);
inline int identity(int x) { return x; }
COPROC_TARGET(identity);
// Throws for 7 and 13 (one failed item, or chunk, each).
inline int sqr_unless_7_or_13(int x) {
  if (x == 7 || x == 13) throw std::invalid_argument("unlucky " + std::to_string(x));
  return x * x;
}
COPROC_TARGET(sqr_unless_7_or_13);
inline int throws_runtime(int x) { throw std::runtime_error("boom " + std::to_string(x)); }
COPROC_TARGET(throws_runtime);
inline void nothing() {}
COPROC_TARGET(nothing);
inline void nothing_one(int) {}
COPROC_TARGET(nothing_one);

inline int worker_pid() { return static_cast<int>(::getpid()); }
COPROC_TARGET(worker_pid);

// Ways for a worker to die under its task. The default action is put back first: a sanitizer's
// handler would otherwise turn the signal into its own report and exit code.
inline int die_by_signal(int sig) {
  ::signal(sig, SIG_DFL);
  ::kill(::getpid(), sig);
  return 0;
}
COPROC_TARGET(die_by_signal);
inline int exit_with(int code) { coproc::exit(code); }
COPROC_TARGET(exit_with);
inline int call_abort(int) {
  ::signal(SIGABRT, SIG_DFL);
  std::abort();
}
COPROC_TARGET(call_abort);
// Dies in the item `when` of a chunk (SIGKILL), else the identity.
inline int die_at(int x) {
  if (x == 5) {
    ::signal(SIGKILL, SIG_DFL);
    ::kill(::getpid(), SIGKILL);
  }
  return x;
}
COPROC_TARGET(die_at);

// A task that outlives any deadline the tests set (its worker is killed); 0 ms returns at once.
inline int sleep_ms(int ms) {
  const timespec t{ms / 1000, static_cast<long>(ms % 1000) * 1'000'000L};
  ::nanosleep(&t, nullptr);
  return ms;
}
COPROC_TARGET(sleep_ms);

// Opens the named pipe `path` for reading (which waits until the test opens it for writing:
// that tells the test the task has started), reads one byte (or the end: the test wrote or
// closed it), returns `value`. A byte, not only the end: a worker forked later holds a copy of
// the test's write end.
inline int wait_fifo(std::string path, int value) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open fifo");
  char c;
  while (::read(fd, &c, 1) < 0 && errno == EINTR) {
  }
  ::close(fd);
  return value;
}
COPROC_TARGET(wait_fifo);
inline int wait_fifo_13(std::string path) { return wait_fifo(std::move(path), 13); }
COPROC_TARGET(wait_fifo_13);

// The initializer's traces in a worker: how many times it ran (in this process).
inline int init_runs = 0;
inline void count_init() { ++init_runs; }
COPROC_TARGET(count_init);
inline void init_throws() { throw std::runtime_error("the initializer broke"); }
COPROC_TARGET(init_throws);
// {pid, how many times the initializer ran in this worker}
inline std::vector<int> pid_and_inits() { return {static_cast<int>(::getpid()), init_runs}; }
COPROC_TARGET(pid_and_inits);

}  // namespace pool_tasks

namespace pool_test {

inline const coproc::start_method all_methods[] = {
    coproc::start_method::fork, coproc::start_method::spawn, coproc::start_method::forkserver};

// Sanitized builds run the big cases smaller (the workers are sanitized programs too).
inline constexpr bool sanitized = coproc_test::sanitized
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
                                  || true
#endif
#endif
    ;

// A named pipe in a fresh temporary folder; wait_fifo(path(), v) blocks on it until release().
class fifo {
 public:
  fifo() {
    char tmpl[] = "/tmp/coproc-pool-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    dir_ = tmpl;
    path_ = dir_ + "/fifo";
    if (::mkfifo(path_.c_str(), 0600) != 0)
      throw std::system_error(errno, std::generic_category(), "mkfifo");
  }
  ~fifo() {
    release();
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  fifo(const fifo&) = delete;
  fifo& operator=(const fifo&) = delete;

  const std::string& path() const { return path_; }
  // Waits until a task has opened the pipe (it is running); false after the hang guard.
  bool wait_started(std::chrono::seconds guard = std::chrono::seconds(60)) {
    if (w_ >= 0) return true;
    return coproc_test::wait_until(
        [&] {
          w_ = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // ENXIO: no reader yet
          return w_ >= 0;
        },
        guard);
  }
  // Lets the task return (it reads the end of the pipe). The task must have started.
  void release() {
    if (w_ >= 0) {
      // Through a descriptor that reads too: a task killed meanwhile (terminate) leaves no
      // reader, and a write to a pipe without one would be SIGPIPE for the test.
      const int rw = ::open(path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
      if (rw >= 0) {
        coproc_test::write_all(rw, "x", 1);
        ::close(rw);
      }
      ::close(w_);
    }
    w_ = -1;
  }

 private:
  std::string dir_, path_;
  int w_ = -1;
};

// True once `pid` is gone or a zombie: its descriptors are closed (a killed worker's socket is
// then seen closed by anyone who writes to it).
inline bool dead(int pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  const int f = ::open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return true;
  char buf[512];
  const auto n = ::read(f, buf, sizeof buf - 1);
  ::close(f);
  if (n <= 0) return true;
  buf[n] = '\0';
  const char* e = std::strrchr(buf, ')');
  return e && e[1] == ' ' && (e[2] == 'Z' || e[2] == 'X');
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace pool_test
