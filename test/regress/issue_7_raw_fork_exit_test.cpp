// Issue 7, regression: a raw fork() copy of the program that calls exit() must not run
// coproc's at-exit policy on its parent's children.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>
#include <coproc/testing.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using coproc_test::run_scenario;
using coproc_test::test_pipe;
using coproc_test::wait_for_release;

// A whole program: a daemonic and a non-daemonic child, both blocked until released; then the
// classic death path of a raw fork (fork, a failed exec, exit(127)). Prints what happened.
COPROC_TEST_SCENARIO(raw_fork_exits) {
  test_pipe release;
  coproc::process daemon_child({.name = "daemon", .daemon = true}, [&] { wait_for_release(release); });
  coproc::process other_child({.name = "other", .daemon = false}, [&] { wait_for_release(release); });
  daemon_child.start();
  other_child.start();
  std::fflush(stdout);  // the raw child's exit() flushes what it inherited

  // EOF on `gone` tells the parent that the raw child has closed its descriptors, that is,
  // that its exit() is done (it is created after the coproc children: only the raw child has
  // its write end).
  test_pipe gone;
  const pid_t raw = ::fork();
  if (raw == -1) {
    std::printf("fork failed\n");
    return 3;
  }
  if (raw == 0) {
    gone.close_read();
    ::execl("/nonexistent/coproc-regress-no-such-program", "no-such-program",
            static_cast<char*>(nullptr));
    std::exit(127);  // not _exit: atexit handlers (coproc's among them) run
  }
  gone.close_write();
  const auto started = std::chrono::steady_clock::now();
  std::string raw_result;
  if (coproc_test::wait_readable(gone.read_fd(), 10'000ms)) {
    int status = 0;
    while (::waitpid(raw, &status, 0) == -1 && errno == EINTR) {
    }
    raw_result = WIFEXITED(status) ? std::to_string(WEXITSTATUS(status))
                                   : "signal-" + std::to_string(WTERMSIG(status));
  } else {
    // The hang guard: the raw child is stuck in its exit() (waiting for our children).
    ::kill(raw, SIGKILL);
    ::waitpid(raw, nullptr, 0);
    raw_result = "hung";
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);

  const bool daemon_alive = daemon_child.is_alive();
  const bool other_alive = other_child.is_alive();
  release.close_write();
  const int daemon_code = daemon_child.join();
  const int other_code = other_child.join();
  std::fprintf(stderr, "the raw child took %lld ms\n", static_cast<long long>(took.count()));
  std::printf("raw=%s daemon_alive=%d other_alive=%d daemon=%d other=%d\n", raw_result.c_str(),
              daemon_alive ? 1 : 0, other_alive ? 1 : 0, daemon_code, other_code);
  return 0;
}

BOOST_AUTO_TEST_SUITE(issue_7)

// Defect: coproc registers its at-exit policy (SIGTERM to daemonic children, join the others)
// with std::atexit, and a raw fork() copy of the program inherits both the handler and the
// parent's registry of children. When that copy calls exit() -- fork, exec fails, exit(127),
// the classic death path -- the policy runs on children that are not its own: it waits for
// the parent's non-daemonic children (which never end before the parent releases them, so
// the copy hangs in exit()) and it may SIGTERM the parent's daemonic children.
// Expected: the raw copy exits with 127 at once, and the parent's children are untouched:
// both still alive afterwards, and both end with 0 when released (not -15).
// (Before the fix it hangs on the pidfd sentinel; on the pipe sentinel, the copy's waitid
// fails with ECHILD and the old code gets away with it.)
BOOST_AUTO_TEST_CASE(a_raw_fork_that_exits_leaves_the_parents_children_alone) {
  const auto r = run_scenario("raw_fork_exits", {}, {}, 90s);
  BOOST_TEST_REQUIRE(r.exit_code == 0, "scenario exited " << r.exit_code << "\n" << r.out << r.err);
  BOOST_TEST(r.out == "raw=127 daemon_alive=1 other_alive=1 daemon=0 other=0\n",
             "got: " << r.out << r.err);
}

BOOST_AUTO_TEST_SUITE_END()
