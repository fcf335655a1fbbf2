// Issue 7, regression: a target that ends its thread with pthread_exit() (or is cancelled)
// ends the child as a plain fork child would: exit code 0, after coproc's usual clean-up.
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>
#include <coproc/testing.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using coproc_test::run_scenario;
using coproc_test::test_pipe;
using coproc_test::write_all;

namespace {

// An object of the test function (the parent's frame, copied into the child by fork). Its
// destructor must never run in the child: the child's unwinding stops at coproc's frames.
struct unwind_sentry {
  pid_t owner;
  int fd;
  ~unwind_sentry() {
    if (::getpid() != owner) write_all(fd, "unwound\n", 8);
  }
};

// How the target ends its thread.
enum class ending { pthread_exit, cancel };

void end_thread(ending how) {
  if (how == ending::pthread_exit) ::pthread_exit(nullptr);
  ::pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, nullptr);
  ::pthread_cancel(::pthread_self());
  ::pthread_testcancel();
}

void check_ending(ending how) {
  test_pipe reached, unwound;
  unwind_sentry sentry{::getpid(), unwound.write_fd()};
  // The target has no objects of its own (raw writes of literals): under ASan, the frames a
  // forced unwind abandons keep their use-after-scope poison, which ASan's own clean-up before
  // _exit can trip over.
  const int reached_fd = reached.write_fd();
  coproc::process p([reached_fd, how] {
    write_all(reached_fd, "reached\n", 8);
    end_thread(how);
    write_all(reached_fd, "returned\n", 9);  // never: the thread has ended
  });
  p.start();
  const int code = p.join();
  BOOST_TEST(reached.read_all() == "reached\n");  // the target ran up to the thread's end
  BOOST_TEST(code == 0, "the child ended with " << code << " (-6: it aborted)");
  BOOST_TEST(unwound.read_all() == "", "the parent's frames were unwound in the child");
}

}  // namespace

// A whole program: the target prints a line to stdout (a pipe: fully buffered) without
// flushing, then ends its thread. coproc's clean-up in the child flushes it.
COPROC_TEST_SCENARIO(pthread_exit_flushes) {
  const ending how = std::string(argv[0]) == "cancel" ? ending::cancel : ending::pthread_exit;
  coproc::process p([how] {
    std::printf("child output\n");
    end_thread(how);
  });
  p.start();
  const int code = p.join();
  std::printf("code=%d\n", code);
  return 0;
}

BOOST_AUTO_TEST_SUITE(issue_7)

// Defect: pthread_exit() unwinds the calling thread with a "forced unwind" exception
// (abi::__forced_unwind), which coproc's catch (...) around the target swallowed without
// rethrowing: the C++ runtime then calls std::terminate, and the child aborts (exit code -6).
// Expected: the child ends with exit code 0, as a plain fork child whose last thread calls
// pthread_exit() does, and the unwinding stops in coproc's frames: objects of the parent's
// frames (copied into the child by fork) are not destroyed in the child.
BOOST_AUTO_TEST_CASE(pthread_exit_in_a_target_ends_the_child_with_0) {
  check_ending(ending::pthread_exit);
}

// The same path: cancellation unwinds with the same forced-unwind exception.
BOOST_AUTO_TEST_CASE(a_target_that_cancels_itself_ends_the_child_with_0) {
  check_ending(ending::cancel);
}

// The same defect, seen from outside: after pthread_exit() the child still runs coproc's usual
// clean-up (its buffered stdout is flushed, as exit() after the last thread would).
BOOST_AUTO_TEST_CASE(pthread_exit_in_a_target_still_flushes_the_childs_stdout) {
  for (const char* how : {"pthread_exit", "cancel"}) {
    const auto r = run_scenario("pthread_exit_flushes", {how});
    BOOST_TEST(r.exit_code == 0, how << ": scenario exited " << r.exit_code << "\n" << r.err);
    BOOST_TEST(r.out == "child output\ncode=0\n", how << ": got: " << r.out << r.err);
  }
}

BOOST_AUTO_TEST_SUITE_END()
