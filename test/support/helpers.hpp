// Helpers shared by the coproc test suites.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
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

}  // namespace coproc_test
