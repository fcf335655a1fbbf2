// The failure modes the peers shipped with (peers-and-pitfalls.md, recommendation 10).
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>
#include <coproc/testing.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using coproc_test::refuse_pidfd_open;
using coproc_test::run_scenario;
using coproc_test::sigchld_ignored;
using coproc_test::conn_pipe;
using coproc_test::send_text;
using coproc_test::test_pipe;
using coproc_test::wait_for_release;
using coproc_test::targets::nothing;

namespace {

// True if every pidfd this process holds refers to `allowed` (from /proc/self/fdinfo). It runs
// in children forked while other threads allocate, so it allocates nothing: under ASan, GCC 12's
// allocator lock is copied held into such a child (glibc's own malloc resets its locks in fork).
bool only_pidfds_of(pid_t allowed) {
  char path[64], buf[1024];
  for (int fd = 0; fd < 4096; ++fd) {
    std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    const int f = ::open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) continue;
    const auto n = ::read(f, buf, sizeof buf - 1);
    ::close(f);
    if (n <= 0) continue;
    buf[n] = '\0';
    const char* line = std::strstr(buf, "\nPid:");
    if (line && std::atoi(line + 5) != allowed) return false;
  }
  return true;
}

// The targets of these tests: registered, so that they run under every start method.

void exit_with_parent_liveness() {
  // The child's own parent watch falls back too, and still works.
  coproc::exit(coproc::parent_process()->is_alive() ? 5 : 6);
}
COPROC_TARGET(exit_with_parent_liveness);

void raw_fork_a_grandchild(coproc::connection release) {
  if (::fork() == 0) {  // a raw fork: the grandchild keeps every descriptor of the child
    wait_for_release(release);
    ::_exit(0);
  }
  coproc::exit(4);
}
COPROC_TARGET(raw_fork_a_grandchild);

void check_only_pidfds_of(bool check_pidfds, int parent) {
  if (check_pidfds && !only_pidfds_of(parent)) coproc::exit(1);
}
COPROC_TARGET(check_only_pidfds_of);

void report_signal_state(coproc::connection report, coproc::connection release) {
  struct sigaction usr1 {}, pipe_action{};
  ::sigaction(SIGUSR1, nullptr, &usr1);
  ::sigaction(SIGPIPE, nullptr, &pipe_action);
  sigset_t mask;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  send_text(report, std::string(usr1.sa_handler == SIG_DFL ? "usr1=default " : "usr1=caught ") +
                        (pipe_action.sa_handler == SIG_IGN ? "pipe=ignored " : "pipe=not-ignored ") +
                        (sigismember(&mask, SIGUSR2) ? "usr2=blocked\n" : "usr2=open\n"));
  wait_for_release(release);
}
COPROC_TARGET(report_signal_state);

}  // namespace

// Whether refuse_pidfd_open() works here at all: 0 if the filter was installed, 77 if not.
COPROC_TEST_SCENARIO(seccomp_probe) { return refuse_pidfd_open(EPERM) ? 0 : 77; }

COPROC_TEST_SCENARIO(pidfd_refused) {
  const int err = std::stoi(argv[0]);
  if (!refuse_pidfd_open(err)) return 77;
  coproc::process p(exit_with_parent_liveness);
  p.start();
  const int code = p.join();
  std::printf("pidfd=%d code=%d\n", coproc::testing::pidfd_sentinels() ? 1 : 0, code);
  return 0;
}

namespace {

// Preconditions: where the facility a test needs is missing, Boost.Test reports the test as
// skipped (with this message), not as passed.
boost::test_tools::assertion_result seccomp_filter_available(boost::unit_test::test_unit_id) {
  static const int code = run_scenario("seccomp_probe").exit_code;  // probed once
  boost::test_tools::assertion_result r(code == 0);
  r.message() << "no seccomp filter here (other architecture, or refused: probe exited " << code
              << ")";
  return r;
}

boost::test_tools::assertion_result pidfd_sentinels_in_use(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r(coproc::testing::pidfd_sentinels());
  r.message() << "the pipe sentinel is in use";
  return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(robustness)

BOOST_AUTO_TEST_CASE(pidfd_refused_by_seccomp_falls_back_to_the_pipe,
                     *boost::unit_test::precondition(seccomp_filter_available)) {
  for (int err : {EPERM, ENOSYS}) {
    auto r = run_scenario("pidfd_refused", {std::to_string(err)});
    BOOST_TEST(r.exit_code == 0, r.err);  // 77 (no filter) fails too: the probe installed one
    BOOST_TEST(r.out == "pidfd=0 code=5\n", "errno " << err << ": " << r.out << r.err);
  }
}

// A child whose status somebody else took reads the same everywhere: exit code 255, no
// exception, no error code (never ECHILD), and never "still running"; status() says lost.
// join() is the first to look (it waits for the child's end); then every other reader.
void expect_lost(coproc::process& p) {
  try {
    BOOST_TEST(p.join() == 255);
    BOOST_TEST(!p.is_alive());
    BOOST_TEST(p.join(30s) == std::optional<int>(255));
    BOOST_TEST(p.join(0s) == std::optional<int>(255));
    BOOST_TEST(p.exitcode() == std::optional<int>(255));
    const auto s = p.status();
    BOOST_REQUIRE(s);
    BOOST_TEST(s->exitcode == 255);
    BOOST_TEST(!s->signal);
    BOOST_TEST(s->lost);
  } catch (const std::exception& e) {
    BOOST_ERROR("a reader of the lost status threw: " << e.what());
  }
  // The asynchronous forms: no error, 255 (the timed one too).
  boost::asio::io_context ioc;
  std::optional<std::pair<boost::system::error_code, int>> plain;
  std::optional<std::pair<boost::system::error_code, std::optional<int>>> timed;
  p.async_join(boost::asio::bind_executor(
      ioc, [&](boost::system::error_code ec, int code) { plain.emplace(ec, code); }));
  p.async_join(30s, boost::asio::bind_executor(ioc, [&](boost::system::error_code ec,
                                                        std::optional<int> code) {
                 timed.emplace(ec, code);
               }));
  ioc.run_for(60s);  // a hang guard: the child has ended
  BOOST_REQUIRE(plain);
  BOOST_TEST(!plain->first, "async_join: " << plain->first.message());
  BOOST_TEST(plain->second == 255);
  BOOST_REQUIRE(timed);
  BOOST_TEST(!timed->first, "async_join(30s): " << timed->first.message());
  BOOST_TEST(timed->second == std::optional<int>(255));
}

// While set, the parent's side of every fork in this process waits, before fork() returns to
// coproc, until the kernel has reaped all children (only when SIGCHLD is ignored). So it needs
// the test's own child to be the only one alive: every earlier test joins its children.
std::atomic<bool> hold_until_children_reaped{false};
void on_fork_in_parent() {
  if (hold_until_children_reaped.load()) coproc_test::wait_until_children_reaped();
}

BOOST_AUTO_TEST_CASE(sigchld_ignored_reports_the_lost_status) {
  // With SIGCHLD set to SIG_IGN the kernel reaps children by itself and their status is gone;
  // Python then reports the child as running forever (gh-92881). coproc reports 255 everywhere.
  if (!coproc_test::children_are_ours()) {
    BOOST_TEST_MESSAGE("skipped under forkserver: the child is the server's, whose SIGCHLD "
                       "action this test cannot set; its status is never lost this way");
    return;
  }
  sigchld_ignored scope;
  coproc::process p(coproc_test::targets::exit_with, 3);
  p.start();
  expect_lost(p);
}

BOOST_AUTO_TEST_CASE(a_child_reaped_before_start_could_watch_it_is_reported_lost) {
  // The same child, reaped by the kernel before start() opened its pidfd (a race that a child
  // ending at once can win): start() succeeds, and the status is reported lost.
  static const bool registered = ::pthread_atfork(nullptr, on_fork_in_parent, nullptr) == 0;
  BOOST_REQUIRE(registered);
  sigchld_ignored scope;
  // Fork only: the race is forced by a pthread_atfork handler, which only fork() runs.
  coproc::process p({.method = coproc::start_method::fork}, [] { ::_exit(3); });
  hold_until_children_reaped = true;
  try {
    p.start();
  } catch (...) {
    hold_until_children_reaped = false;
    throw;
  }
  hold_until_children_reaped = false;
  expect_lost(p);
  BOOST_TEST(p.exitcode() == std::optional<int>(255));  // the status is lost, not "not yet"
  BOOST_TEST(coproc::active_children().empty());
}

BOOST_AUTO_TEST_CASE(a_grandchild_holding_everything_does_not_delay_the_join,
                     *boost::unit_test::precondition(pidfd_sentinels_in_use)) {
  // Python's sentinel is a pipe: a grandchild that inherited its write end keeps it from
  // becoming ready after the child died (K-2). A pidfd is ready when the child ends. On the
  // pipe sentinel a raw-forked grandchild delays it (documented): skipped there.
  conn_pipe release;
  coproc::process p(raw_fork_a_grandchild, release.reader());
  p.start();
  BOOST_TEST(p.join(30s) == 4);  // while the grandchild still runs
  release.close_write();
}

BOOST_AUTO_TEST_CASE(concurrent_starts_never_leak_siblings_into_children) {
  // Four threads start and join children at once; every child checks that the only pidfd it
  // holds is its parent's. This is the fork guard's job: a sibling's pidfd created by another
  // thread while this child was being forked must not slip through.
  const bool check_pidfds = coproc::testing::pidfd_sentinels();
  const pid_t me = ::getpid();
  std::atomic<int> bad{0}, done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 40; ++i) {
        coproc::process p(check_only_pidfds_of, check_pidfds, static_cast<int>(me));
        p.start();
        const int code = p.join();
        if (code != 0) ++bad;
        ++done;
      }
    });
  }
  for (auto& t : threads) t.join();
  BOOST_TEST(done.load() == 160);
  BOOST_TEST(bad.load() == 0);
  BOOST_TEST(!coproc_test::has_zombie_child());
}

BOOST_AUTO_TEST_CASE(a_thread_holding_a_lock_during_fork_does_not_hang_the_child) {
  // The child runs only coproc's bootstrap and the target; nothing in between takes a lock
  // that another thread of the parent could hold at the moment of fork. The other thread
  // holds the lock through every fork (not most of the time: then a fork could miss it).
  std::mutex user_lock;
  std::promise<void> held, stop;
  std::thread holder([&] {
    std::lock_guard guard(user_lock);
    held.set_value();
    stop.get_future().wait();
  });
  held.get_future().wait();
  for (int i = 0; i < 50; ++i) {
    coproc::process p(nothing);
    p.start();
    BOOST_TEST(p.join(30s) == 0);
  }
  stop.set_value();
  holder.join();
}

BOOST_AUTO_TEST_CASE(the_child_starts_with_default_signal_actions_and_no_mask) {
  // A parent's handler belongs to the parent (Asio's signal_set writes into the parent's
  // pipe): in the child terminate() must end the child, not run the parent's handler.
  static test_pipe* handler_pipe = nullptr;
  test_pipe from_handler;
  conn_pipe report;
  handler_pipe = &from_handler;
  // The parent's settings, restored however the test ends (and before from_handler is gone).
  auto catch_it = [](int) { (void)!::write(handler_pipe->write_fd(), "h", 1); };
  coproc_test::signal_action_scope term(SIGTERM, catch_it), usr1(SIGUSR1, catch_it);
  coproc_test::signal_action_scope ignore_pipe(SIGPIPE, SIG_IGN);
  coproc_test::signal_blocked_scope block_usr2(SIGUSR2);

  conn_pipe release;
  coproc::process p(report_signal_state, report.writer(), release.reader());
  p.start();
  const std::string line = report.read_line();
  p.terminate();
  const int code = p.join();
  from_handler.close_write();
  BOOST_TEST(line == "usr1=default pipe=ignored usr2=open");
  BOOST_TEST(code == -SIGTERM);
  BOOST_TEST(from_handler.read_all() == "");  // nobody ran the parent's handler
}

BOOST_AUTO_TEST_CASE(start_failure_leaves_no_child_behind) {
  // Exhaust descriptors so the pidfd (or the fallback's pipes) cannot be created: start()
  // must throw, and no child or zombie may remain.
  coproc::process p(nothing);
  coproc::process q(nothing);
  // The limit and the hogs go however the test ends: the next test needs its descriptors.
  coproc_test::rlimit_scope limit(RLIMIT_NOFILE);
  coproc_test::descriptor_hogs hogs;
  BOOST_REQUIRE(limit.set_soft(64) == 64);
  hogs.fill();
  // Leave exactly one descriptor free: enough for fork's bookkeeping in a sanitizer's runtime
  // but not for coproc's sentinel and the child's checks.
  hogs.free_one();
  bool threw = false;
  try {
    p.start();
    // With exactly one free descriptor the pidfd itself may fit; then a second start must fail.
    try {
      q.start();
    } catch (const std::system_error&) {
      threw = true;
    }
    p.join();
    if (!threw) q.join();
  } catch (const std::system_error& e) {
    threw = true;
    BOOST_TEST((e.code().value() == EMFILE || e.code().value() == ENFILE), e.what());
  }
  hogs.release();
  limit.restore();
  BOOST_TEST(threw);
  BOOST_TEST(!coproc_test::has_zombie_child());
  BOOST_TEST(coproc::active_children().empty());
}

BOOST_AUTO_TEST_SUITE_END()
