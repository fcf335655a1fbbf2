// Issue 7, regression, for what the fix adds to the API: a lost status reads 255 everywhere
// (exit_status::lost), process::interrupt(), coproc::get_context(). This file does not build
// against the code before the fix.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/test/unit_test.hpp>

#include "../async/async_support.hpp"

using namespace async_test;
using coproc_test::expect_misuse;

// Python's ctx.Pipe(duplex): the ends reach a child the context made; duplex=false gives
// (reader, writer) with Python's misuse words.
BOOST_AUTO_TEST_CASE(a_context_makes_pipes) {
  const auto ctx = coproc::get_context(coproc::start_method::fork);
  auto [parent_end, child_end] = ctx.pipe();
  coproc::process p = ctx.process(
      [](coproc::connection c) { c.send_bytes(c.recv_bytes()); }, std::move(child_end));
  p.start();
  parent_end.send_bytes(coproc::as_bytes("via ctx"));
  BOOST_TEST((parent_end.recv_bytes() == coproc::as_bytes("via ctx")));
  BOOST_TEST(p.join() == 0);

  auto [reader, writer] = ctx.pipe(false);
  BOOST_TEST(reader.readable());
  BOOST_TEST(!reader.writable());
  BOOST_TEST(!writer.readable());
  BOOST_TEST(writer.writable());
  writer.send_bytes(coproc::as_bytes("one way"));
  BOOST_TEST((reader.recv_bytes() == coproc::as_bytes("one way")));
  try {
    reader.send_bytes(coproc::as_bytes("x"));
    BOOST_FAIL("a reader sent");
  } catch (const std::logic_error& e) {
    BOOST_TEST(std::string(e.what()) == "connection is read-only");
  }
}

// ---------------------------------------------------------------------------------------
// 7. A status lost to somebody else's reap

namespace {

// A child that ends at once and whose status the kernel throws away (SIGCHLD is ignored). The
// wait for the kernel's reap needs the test's own child to be the only one: every test in this
// file joins its children.
coproc::process lost_child() {
  coproc::process p([] { coproc::exit(3); });
  p.start();
  const int e = coproc_test::wait_until_children_reaped();
  BOOST_REQUIRE_MESSAGE(e == ECHILD, "waitid: " << std::strerror(e));
  return p;
}

// Runs `f`, failing the test (not ending it) if it throws: the rule is that nothing throws.
template <class F>
auto no_throw(const char* what, F&& f) -> std::optional<decltype(f())> {
  try {
    return f();
  } catch (const std::exception& e) {
    BOOST_ERROR(what << " threw: " << e.what());
  }
  return std::nullopt;
}

using observer = std::function<void(coproc::process&)>;

// Every way of reading the child's end, each checked against the rule: 255, no error, no
// exception, no signal, lost.
void check_join(coproc::process& p) {
  BOOST_TEST(no_throw("join()", [&] { return p.join(); }) == 255);
}
void check_timed_join(coproc::process& p) {
  BOOST_TEST(no_throw("join(30s)", [&] { return p.join(30s); }) == std::optional<int>(255));
  BOOST_TEST(no_throw("join(0s)", [&] { return p.join(0s); }) == std::optional<int>(255));
}
void check_exitcode(coproc::process& p) {
  BOOST_TEST(no_throw("exitcode()", [&] { return p.exitcode(); }) == std::optional<int>(255));
}
void check_status(coproc::process& p) {
  const auto s = no_throw("status()", [&] { return p.status(); });
  if (!s) return;  // reported by no_throw
  if (!*s) {
    BOOST_ERROR("status() is nullopt: the child reads as running");
    return;
  }
  BOOST_TEST((*s)->exitcode == 255);
  BOOST_TEST(!(*s)->signal);
  BOOST_TEST(!(*s)->core_dumped);
  BOOST_TEST((*s)->lost);
}
void check_is_alive(coproc::process& p) {
  BOOST_TEST(no_throw("is_alive()", [&] { return p.is_alive(); }) == std::optional<bool>(false));
}
void check_async_join(coproc::process& p) {
  asio::io_context ioc;
  join_result r;
  no_throw("async_join", [&] {
    p.async_join(asio::bind_executor(ioc, record{&r}));
    return 0;
  });
  run_guarded(ioc);
  BOOST_TEST(r.calls == 1);
  BOOST_TEST(!r.ec, "async_join: " << r.ec.message());
  BOOST_TEST(r.code == 255);
}
void check_timed_async_join(coproc::process& p) {
  asio::io_context ioc;
  join_result r;
  no_throw("async_join(30s)", [&] {
    p.async_join(30s, asio::bind_executor(ioc, record{&r}));
    return 0;
  });
  run_guarded(ioc);
  BOOST_TEST(r.calls == 1);
  BOOST_TEST(!r.ec, "async_join(30s): " << r.ec.message());
  BOOST_TEST(r.code == std::optional<int>(255));
}
void check_awaited_join(coproc::process& p) {
  const join_result r = awaited_join(p);
  BOOST_TEST(r.calls == 1);
  BOOST_TEST(!r.ec, "co_await async_join: " << r.ec.message());
  BOOST_TEST(r.code == 255);
}

const std::vector<std::pair<const char*, observer>>& observers() {
  static const std::vector<std::pair<const char*, observer>> all = {
      {"join()", check_join},
      {"join(timeout)", check_timed_join},
      {"exitcode()", check_exitcode},
      {"status()", check_status},
      {"is_alive()", check_is_alive},
      {"async_join", check_async_join},
      {"async_join(timeout)", check_timed_async_join},
      {"co_await async_join", check_awaited_join},
  };
  return all;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(issue_7)

// The cases of 7 come last: the use_future join in the last one (three_pending_joins) starts
// coproc's own I/O thread, and the children of 8 and 9 allocate, which the sanitizers'
// allocators allow only while the parent is single-threaded.

// ---------------------------------------------------------------------------------------
// 8. process::interrupt()

// New (Python 3.14): interrupt() sends SIGINT through the pidfd, as terminate() and kill() send
// theirs: the child, blocked until released, ends by SIGINT (-2). Before start() it is misuse
// ("process not started"); after the child was reaped it does nothing (a reaped pid may be
// somebody else's by now).
BOOST_AUTO_TEST_CASE(interrupt_sends_sigint) {
  coproc::process unstarted([] {});
  expect_misuse([&] { unstarted.interrupt(); }, "process not started");

  test_pipe release, ready;
  coproc::process p([&] {
    ::signal(SIGINT, SIG_DFL);  // whatever the test runner left us: SIGINT must end the child
    ready.write("ready\n");
    wait_for_release(release);
    coproc::exit(0);
  });
  p.start();
  BOOST_TEST_REQUIRE(ready.read_line() == "ready");
  p.interrupt();
  const int code = p.join();
  release.close_write();
  BOOST_TEST(code == -SIGINT);
  BOOST_CHECK_NO_THROW(p.interrupt());  // reaped: a no-op
  BOOST_TEST(p.exitcode() == std::optional<int>(-SIGINT));
}

// ---------------------------------------------------------------------------------------
// 9. coproc::get_context()

// New: get_context(m) pins start method m (the processes it makes start with m unless their
// options say otherwise); get_context() is the default context, whose start method follows
// set_start_method() and is read by start(). Observable through the fork method's freedom: a
// lambda target starts only with fork (spawn needs a registered target, and is not built yet).
BOOST_AUTO_TEST_CASE(get_context_pins_a_start_method_or_follows_the_default) {
  coproc_test::start_method_scope restore;  // set_start_method is process-wide
  coproc::set_start_method(coproc::start_method::fork);

  {
    auto ctx = coproc::get_context(coproc::start_method::fork);
    BOOST_TEST((ctx.get_start_method() == coproc::start_method::fork));
    coproc::process p = ctx.process([] { coproc::exit(3); });
    p.start();
    BOOST_TEST(p.join() == 3);
  }

  // The default context follows set_start_method().
  coproc::set_start_method(coproc::start_method::spawn);
  BOOST_TEST((coproc::get_context().get_start_method() == coproc::start_method::spawn));
  coproc::set_start_method(coproc::start_method::forkserver);
  BOOST_TEST((coproc::get_context().get_start_method() == coproc::start_method::forkserver));
  coproc::set_start_method(coproc::start_method::fork);
  BOOST_TEST((coproc::get_context().get_start_method() == coproc::start_method::fork));

  // A pinned context does not.
  const auto spawn_ctx = coproc::get_context(coproc::start_method::spawn);
  BOOST_TEST((spawn_ctx.get_start_method() == coproc::start_method::spawn));
  coproc::set_start_method(coproc::start_method::forkserver);
  BOOST_TEST((spawn_ctx.get_start_method() == coproc::start_method::spawn));

  // Its processes start with its method, whatever the default says...
  {
    coproc::set_start_method(coproc::start_method::spawn);
    coproc::process p = coproc::get_context(coproc::start_method::fork).process([] { coproc::exit(4); });
    p.start();  // a lambda: only fork can start it
    BOOST_TEST(p.join() == 4);
  }
  // ... unless their options name one.
  {
    coproc::process p = coproc::get_context(coproc::start_method::spawn)
                            .process({.method = coproc::start_method::fork}, [] { coproc::exit(5); });
    p.start();
    BOOST_TEST(p.join() == 5);
  }
  // The default context leaves the method to start(): set to spawn there, a lambda cannot start;
  // set back to fork, the same object starts.
  {
    coproc::set_start_method(coproc::start_method::spawn);
    coproc::process p = coproc::get_context().process([] { coproc::exit(6); });
    BOOST_CHECK_THROW(p.start(), std::exception);
    coproc::set_start_method(coproc::start_method::fork);
    p.start();
    BOOST_TEST(p.join() == 6);
  }
}

// ---------------------------------------------------------------------------------------
// 7. A status lost to somebody else's reap (its helpers are above)

// Defect: with SIGCHLD set to SIG_IGN the kernel reaps children by itself and their status is
// lost. What coproc then reported depended on who asked: join(), join(timeout), exitcode() and
// status() threw std::system_error(ECHILD), async_join completed with an ECHILD error, and
// other paths (the at-exit join, a parent watch) used 255.
// New rule: 255 everywhere, never ECHILD -- join() and join(timeout) return 255, exitcode() is
// 255, status() has exitcode 255, no signal and lost == true, is_alive() is false, and
// async_join (every form) completes with no error and 255. Checked with each reader being the
// first to see the child's end (the one that finds the status gone), then all the others.
BOOST_AUTO_TEST_CASE(a_lost_status_reads_255_everywhere) {
  coproc_test::sigchld_ignored scope;
  for (const auto& [first_name, first] : observers()) {
    BOOST_TEST_CONTEXT("first reader: " << first_name) {
      auto p = lost_child();
      first(p);
      for (const auto& [name, check] : observers()) {
        BOOST_TEST_CONTEXT("then: " << name) { check(p); }
      }
    }
  }
  BOOST_TEST(coproc::active_children().empty());
}

// The same, for a join pending when the status is lost (the sentinel fires while the join
// waits, and the reap finds nothing).
BOOST_AUTO_TEST_CASE(a_pending_async_join_of_a_lost_child_completes_with_255) {
  coproc_test::sigchld_ignored scope;
  test_pipe release;
  auto p = released_child(release, 3);
  p.start();
  asio::io_context ioc;
  three_pending_joins joins(p, ioc);
  release.close_write();
  run_guarded(ioc);
  joins.expect_completed_with(255);
  BOOST_TEST(no_throw("join()", [&] { return p.join(); }) == 255);
}

BOOST_AUTO_TEST_SUITE_END()
