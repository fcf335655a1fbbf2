// Helpers shared by the async test suites: running an io_context with a hang guard, children
// that end when released, coroutines that join and record what they saw.
#pragma once

#include <sys/wait.h>

#include <chrono>
#include <exception>
#include <future>
#include <optional>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/system/error_code.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "helpers.hpp"

namespace async_test {

namespace asio = boost::asio;
using boost::system::error_code;
using namespace std::chrono_literals;
using coproc_test::test_pipe;
using coproc_test::wait_for_release;

// Runs `ioc` on this thread until it runs out of work. More than `guard` means a hang (a join
// that never completes): the test fails instead of waiting for meson's timeout.
inline void run_guarded(asio::io_context& ioc, std::chrono::seconds guard = 60s) {
  ioc.restart();
  ioc.run_for(guard);
  BOOST_REQUIRE_MESSAGE(ioc.stopped(), "the io_context still had work after " << guard.count()
                                                                              << " s: a hang");
}

// Runs `ioc` on this thread until `done()`; fails the test if the io_context runs out of work
// first (nothing left that could make it true) or after `guard` (a hang). Other threads may
// run the io_context at the same time (keep it busy with a work guard then).
template <class Pred>
void run_until(asio::io_context& ioc, Pred done, std::chrono::seconds guard = 60s) {
  if (ioc.stopped()) ioc.restart();
  const auto end = std::chrono::steady_clock::now() + guard;
  while (!done()) {
    BOOST_REQUIRE_MESSAGE(std::chrono::steady_clock::now() < end,
                          "no result after " << guard.count() << " s: a hang");
    ioc.run_one_for(100ms);
    BOOST_REQUIRE_MESSAGE(done() || !ioc.stopped(), "the io_context ran out of work first");
  }
}

// A co_spawn completion handler: an exception escaping the coroutine leaves io_context::run()
// and fails the test.
struct rethrow {
  void operator()(std::exception_ptr e) const {
    if (e) std::rethrow_exception(e);
  }
};

// A child that waits until `release`'s write end is closed (in the parent), then exits with
// `code`. It never ends on its own before that, so a join started before the release is truly
// pending, and a child that ends with `code` was not signalled.
inline coproc::process released_child(test_pipe& release, int code) {
  return coproc::process([&release, code] {
    wait_for_release(release);
    coproc::exit(code);
  });
}

// Waits (without reaping) until the child `pid` has ended.
inline void wait_until_ended(pid_t pid) {
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) == -1 && errno == EINTR) {
  }
}

// True while the child `pid` has not ended (it may be reaped or not; nothing is reaped here).
inline bool still_running(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == -1) return false;
  return info.si_pid == 0;
}

// What one join saw.
struct join_result {
  int calls = 0;
  error_code ec;
  std::optional<int> code;
  std::thread::id thread;
};

// co_awaits p.async_join and records the result (an error as an error code, not an exception).
inline asio::awaitable<void> join_into(coproc::process& p, join_result& out) {
  auto [ec, code] = co_await p.async_join(asio::as_tuple(asio::use_awaitable));
  ++out.calls;
  out.ec = ec;
  if (!ec) out.code = code;
  out.thread = std::this_thread::get_id();
}

// What a coroutine that co_awaits p.async_join saw, on an io_context of its own (new: nothing
// used on it before), run until the join completes (with a hang guard).
inline join_result awaited_join(coproc::process& p) {
  asio::io_context ioc;
  join_result r;
  asio::co_spawn(ioc, join_into(p, r), rethrow{});
  run_guarded(ioc);
  return r;
}

// The same with a timeout: out.code stays nullopt when the timeout passed first.
inline asio::awaitable<void> timed_join_into(coproc::process& p, std::chrono::milliseconds timeout,
                                             join_result& out) {
  auto [ec, code] = co_await p.async_join(timeout, asio::as_tuple(asio::use_awaitable));
  ++out.calls;
  out.ec = ec;
  out.code = code;
  out.thread = std::this_thread::get_id();
}

// A callback that records into `out`.
struct record {
  join_result* out;
  void operator()(error_code ec, int code) const {
    ++out->calls;
    out->ec = ec;
    if (!ec) out->code = code;
    out->thread = std::this_thread::get_id();
  }
  void operator()(error_code ec, std::optional<int> code) const {
    ++out->calls;
    out->ec = ec;
    out->code = code;
    out->thread = std::this_thread::get_id();
  }
};

// Three joins of one child, started together and all pending when the constructor returns (it
// checks): `plain` and `timed` (60 s) on `ioc`, recorded, and `future` (use_future: coproc's
// own I/O thread). Run `ioc` once the child can end, then expect_completed_with(its code).
struct three_pending_joins {
  join_result plain, timed;
  std::future<int> future;

  three_pending_joins(coproc::process& p, asio::io_context& ioc) {
    p.async_join(asio::bind_executor(ioc, record{&plain}));
    p.async_join(60s, asio::bind_executor(ioc, record{&timed}));
    future = p.async_join(asio::use_future);
    ioc.poll();  // what the initiations queued runs now
    BOOST_TEST_REQUIRE(plain.calls == 0, "the plain join did not wait for the child");
    BOOST_TEST_REQUIRE(timed.calls == 0, "the timed join did not wait for the child");
  }

  // Each join completed once, with no error and `code`.
  void expect_completed_with(int code) {
    BOOST_TEST(plain.calls == 1);
    BOOST_TEST(!plain.ec, "plain join: " << plain.ec.message());
    BOOST_TEST(plain.code == code);
    BOOST_TEST(timed.calls == 1);
    BOOST_TEST(!timed.ec, "timed join: " << timed.ec.message());
    BOOST_TEST(timed.code == code);
    BOOST_REQUIRE(future.wait_for(60s) == std::future_status::ready);
    try {
      BOOST_TEST(future.get() == code);
    } catch (const std::exception& e) {
      BOOST_ERROR("the use_future join failed: " << e.what());
    }
  }
};

}  // namespace async_test
