// Helpers shared by the async test suites: running an io_context with a hang guard, children
// that end when released, coroutines that join and record what they saw.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

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
using coproc_test::conn_pipe;
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
// pending, and a child that ends with `code` was not signalled. Started with the default method.
inline coproc::process released_child(conn_pipe& release, int code) {
  return coproc::process(coproc_test::targets::released_exit, release.reader(), code);
}

// The same with a plain test_pipe, for the suites that are not run under every method
// (regress): fork only, since the child's closure holds the pipe itself.
inline coproc::process released_child(test_pipe& release, int code) {
  return coproc::process({.method = coproc::start_method::fork}, [&release, code] {
    wait_for_release(release);
    coproc::exit(code);
  });
}

// The state letter of process `pid` in /proc ('Z': ended, not reaped), or '\0' if it is gone.
inline char proc_state(pid_t pid) {
  char path[64], buf[512];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int f = ::open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return '\0';
  const auto n = ::read(f, buf, sizeof buf - 1);
  ::close(f);
  if (n <= 0) return '\0';
  buf[n] = '\0';
  const char* name_end = std::strrchr(buf, ')');
  return name_end && name_end[1] == ' ' ? name_end[2] : '\0';
}

// Waits (without reaping) until the child `pid` has ended. A child of a forkserver is not this
// process's to wait for: then until /proc shows it ended (a zombie, or gone), with a hang guard
// of 60 s.
inline void wait_until_ended(pid_t pid) {
  siginfo_t info{};
  int r;
  while ((r = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT)) == -1 && errno == EINTR) {
  }
  if (r == -1 && errno == ECHILD)
    coproc_test::wait_until([pid] { const char s = proc_state(pid); return s == '\0' || s == 'Z'; },
                            std::chrono::seconds(60));
}

// Waits (without reaping) until `p`'s child has ended, as `p` can tell: its sentinel is ready
// (under forkserver without pidfd, once the server's report is there), and where the child is
// this process's own, also a zombie (a pipe sentinel is ready a moment before). Hang guard: 60 s.
inline void wait_until_ended(coproc::process& p) {
  if (!coproc_test::wait_readable(p.sentinel(), std::chrono::seconds(60))) return;
  wait_until_ended(*p.pid());
}

// True while the child `pid` has not ended (it may be reaped or not; nothing is reaped here).
// A forkserver's child is looked up in /proc.
inline bool still_running(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == -1) {
    if (errno != ECHILD) return false;
    const char s = proc_state(pid);
    return s != '\0' && s != 'Z';
  }
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
