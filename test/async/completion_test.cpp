// How async_join completes: never inside the initiating call, the timed form's two outcomes,
// exit codes of signalled children, and misuse reported by the initiating call.
#include <signal.h>

#include <chrono>
#include <future>
#include <limits>
#include <thread>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/test/unit_test.hpp>

#include "async_support.hpp"

using namespace async_test;
using coproc_test::expect_misuse;
using coproc_test::test_pipe;

namespace {

// Starts `start(handler)` from inside a handler running on `ioc`'s thread, where an
// implementation that dispatches (instead of posting) would run the completion at once, and
// reports whether the completion ran inside the initiating call.
template <class Executor, class Start>
bool completes_inline(asio::io_context& ioc, const Executor& ex, Start start, join_result& out) {
  bool inside = false, ran_inside = false;
  asio::post(ex, [&] {
    inside = true;
    start(asio::bind_executor(ex, [&, rec = record{&out}](error_code ec, auto code) {
      ran_inside = inside;
      rec(ec, code);
    }));
    inside = false;
  });
  run_until(ioc, [&] { return out.calls > 0; });
  return ran_inside;
}

// A target that crashes (SIGSEGV).
void crash() {
  std::signal(SIGSEGV, SIG_DFL);  // a sanitizer's handler would turn the crash into exit(1)
  std::raise(SIGSEGV);
}
COPROC_TARGET(crash);

// A child that has ended and been reaped (joined) already.
coproc::process joined_child(int code) {
  coproc::process p(coproc_test::targets::exit_with, code);
  p.start();
  BOOST_REQUIRE(p.join() == code);
  return p;
}

// A child that has ended but has not been reaped.
coproc::process ended_child(int code) {
  coproc::process p(coproc_test::targets::exit_with, code);
  p.start();
  wait_until_ended(p);
  return p;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(no_inline_completion)

BOOST_AUTO_TEST_CASE(a_joined_child_completes_after_the_call_returns) {
  auto p = joined_child(11);
  asio::io_context ioc;
  join_result plain, timed, stranded;
  BOOST_TEST(!completes_inline(ioc, ioc.get_executor(), [&](auto h) { p.async_join(std::move(h)); }, plain));
  BOOST_TEST(!completes_inline(ioc, ioc.get_executor(), [&](auto h) { p.async_join(60s, std::move(h)); }, timed));
  auto strand = asio::make_strand(ioc);
  BOOST_TEST(!completes_inline(ioc, strand, [&](auto h) { p.async_join(std::move(h)); }, stranded));
  BOOST_TEST(plain.calls == 1);
  BOOST_TEST(plain.code == 11);
  BOOST_TEST(timed.calls == 1);
  BOOST_TEST(timed.code == 11);
  BOOST_TEST(stranded.calls == 1);
  BOOST_TEST(stranded.code == 11);
}

BOOST_AUTO_TEST_CASE(an_ended_unreaped_child_completes_after_the_call_returns) {
  auto p = ended_child(12);
  auto q = ended_child(13);
  asio::io_context ioc;
  join_result plain, timed;
  BOOST_TEST(!completes_inline(ioc, ioc.get_executor(), [&](auto h) { p.async_join(std::move(h)); }, plain));
  BOOST_TEST(!completes_inline(ioc, ioc.get_executor(), [&](auto h) { q.async_join(60s, std::move(h)); }, timed));
  BOOST_TEST(plain.code == 12);
  BOOST_TEST(timed.code == 13);
}

BOOST_AUTO_TEST_CASE(a_zero_or_negative_timeout_completes_after_the_call_returns) {
  conn_pipe release;
  auto running = released_child(release, 14);
  running.start();
  auto ended = ended_child(15);
  asio::io_context ioc;
  join_result zero_running, negative_running, zero_ended, negative_ended;
  BOOST_TEST(!completes_inline(ioc, ioc.get_executor(), [&](auto h) { running.async_join(0s, std::move(h)); }, zero_running));
  BOOST_TEST(!completes_inline(ioc, ioc.get_executor(), [&](auto h) { running.async_join(-5s, std::move(h)); }, negative_running));
  BOOST_TEST(!completes_inline(ioc, ioc.get_executor(), [&](auto h) { ended.async_join(0s, std::move(h)); }, zero_ended));
  BOOST_TEST(!completes_inline(ioc, ioc.get_executor(), [&](auto h) { ended.async_join(-5s, std::move(h)); }, negative_ended));
  BOOST_TEST(!zero_running.ec);
  BOOST_TEST(!zero_running.code);  // polled: still running
  BOOST_TEST(!negative_running.ec);
  BOOST_TEST(!negative_running.code);
  BOOST_TEST(zero_ended.code == 15);  // polled: ended, so reaped and reported
  BOOST_TEST(negative_ended.code == 15);
  release.close_write();
  BOOST_TEST(running.join() == 14);
}

BOOST_AUTO_TEST_CASE(a_plain_callback_for_a_joined_child_runs_on_another_thread) {
  auto p = joined_child(16);
  std::promise<std::thread::id> plain, timed;
  p.async_join([&](error_code, int) { plain.set_value(std::this_thread::get_id()); });
  p.async_join(0s, [&](error_code, std::optional<int>) { timed.set_value(std::this_thread::get_id()); });
  auto pf = plain.get_future();
  auto tf = timed.get_future();
  BOOST_REQUIRE(pf.wait_for(60s) == std::future_status::ready);
  BOOST_REQUIRE(tf.wait_for(60s) == std::future_status::ready);
  BOOST_TEST((pf.get() != std::this_thread::get_id()));
  BOOST_TEST((tf.get() != std::this_thread::get_id()));
}

BOOST_AUTO_TEST_CASE(a_coroutine_joining_a_joined_child_gets_its_code) {
  auto p = joined_child(17);
  asio::io_context ioc;
  join_result plain, timed;
  asio::co_spawn(ioc, join_into(p, plain), rethrow{});
  asio::co_spawn(ioc, timed_join_into(p, 60'000ms, timed), rethrow{});
  run_guarded(ioc);
  BOOST_TEST(plain.code == 17);
  BOOST_TEST(timed.code == 17);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(timed_join)

BOOST_AUTO_TEST_CASE(timeout_gives_nullopt_and_the_child_keeps_running) {
  conn_pipe release;
  auto p = released_child(release, 21);
  p.start();
  asio::io_context ioc;
  join_result r;
  const auto t0 = std::chrono::steady_clock::now();
  p.async_join(100ms, asio::bind_executor(ioc, record{&r}));
  run_guarded(ioc);
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  BOOST_TEST(r.calls == 1);
  BOOST_TEST(!r.ec);
  BOOST_TEST(!r.code);
  BOOST_TEST((elapsed >= 100ms), "completed after "
                                     << std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count() << " us");
  BOOST_TEST(p.is_alive());
  // Not signalled, not reaped: a later join sees the child's own exit.
  join_result later;
  p.async_join(asio::bind_executor(ioc, record{&later}));
  release.close_write();
  run_guarded(ioc);
  BOOST_TEST(later.code == 21);
}

BOOST_AUTO_TEST_CASE(a_child_ending_first_gives_its_exit_code) {
  conn_pipe release;
  auto p = released_child(release, 22);
  p.start();
  asio::io_context ioc;
  join_result r;
  p.async_join(600s, asio::bind_executor(ioc, record{&r}));
  ioc.poll();
  BOOST_TEST(r.calls == 0);
  release.close_write();
  const auto t0 = std::chrono::steady_clock::now();
  run_until(ioc, [&] { return r.calls > 0; });
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < 60s));
  BOOST_TEST(r.calls == 1);
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.code == 22);
}

BOOST_AUTO_TEST_CASE(the_handler_no_longer_finds_its_child_among_the_active_children) {
  // The registry is tidied after the handler is woken (it costs page faults on the way to the
  // waiter); what the handler sees of active_children() must not show it.
  // The child that stays starts first: the other one's release pipe must not be inherited by
  // it, or that child would not see its release while this one runs.
  conn_pipe release_second;
  auto second = released_child(release_second, 26);
  second.start();
  conn_pipe release_first;
  auto first = released_child(release_first, 25);
  first.start();
  asio::io_context ioc;
  std::vector<coproc::process*> seen;
  bool called = false;
  first.async_join(asio::bind_executor(ioc, [&](error_code ec, int code) {
    BOOST_TEST(!ec);
    BOOST_TEST(code == 25);
    seen = coproc::active_children();
    called = true;
  }));
  ioc.poll();
  release_first.close_write();
  run_until(ioc, [&] { return called; });
  BOOST_TEST(seen.size() == 1u);
  BOOST_TEST((!seen.empty() && seen.front() == &second));
  release_second.close_write();
  BOOST_TEST(second.join() == 26);
  BOOST_TEST(coproc::active_children().empty());
}

BOOST_AUTO_TEST_CASE(a_completed_timed_join_leaves_no_work_behind) {
  // Once the child's exit has been reported, the join's deadline must not keep the
  // io_context busy (or hold the operation and its descriptor) until the timeout.
  conn_pipe release;
  auto p = released_child(release, 23);
  p.start();
  asio::io_context ioc;
  join_result r;
  p.async_join(600s, asio::bind_executor(ioc, record{&r}));
  ioc.poll();
  release.close_write();
  run_guarded(ioc, 60s);
  BOOST_TEST(r.code == 23);
}

BOOST_AUTO_TEST_CASE(an_enormous_timeout_waits_like_an_untimed_join) {
  // Durations that overflow nanoseconds saturate; they must not wrap into a poll.
  conn_pipe release;
  auto p = released_child(release, 24);
  p.start();
  asio::io_context ioc;
  join_result hours, nanos, seconds;
  p.async_join(std::chrono::hours::max(), asio::bind_executor(ioc, record{&hours}));
  p.async_join(std::chrono::nanoseconds::max(), asio::bind_executor(ioc, record{&nanos}));
  p.async_join(std::chrono::seconds(std::numeric_limits<std::int64_t>::max() / 2),
               asio::bind_executor(ioc, record{&seconds}));
  ioc.poll();
  BOOST_TEST(hours.calls + nanos.calls + seconds.calls == 0);
  release.close_write();
  run_until(ioc, [&] { return hours.calls + nanos.calls + seconds.calls == 3; });
  BOOST_TEST(hours.code == 24);
  BOOST_TEST(nanos.code == 24);
  BOOST_TEST(seconds.code == 24);
}

BOOST_AUTO_TEST_CASE(a_timeout_does_not_disturb_other_joins_of_the_child) {
  conn_pipe release;
  auto p = released_child(release, 25);
  p.start();
  asio::io_context ioc;
  join_result untimed, short_timed, long_timed;
  p.async_join(asio::bind_executor(ioc, record{&untimed}));
  p.async_join(600s, asio::bind_executor(ioc, record{&long_timed}));
  p.async_join(20ms, asio::bind_executor(ioc, record{&short_timed}));
  run_until(ioc, [&] { return short_timed.calls > 0; });
  BOOST_TEST(!short_timed.code);
  BOOST_TEST(untimed.calls + long_timed.calls == 0);
  release.close_write();
  run_until(ioc, [&] { return untimed.calls + long_timed.calls == 2; });
  BOOST_TEST(untimed.code == 25);
  BOOST_TEST(long_timed.code == 25);
  BOOST_TEST(short_timed.calls == 1);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(signalled_children)

BOOST_AUTO_TEST_CASE(kill_during_a_join_gives_minus_nine) {
  conn_pipe release;
  auto p = released_child(release, 0);
  p.start();
  asio::io_context ioc;
  join_result plain, timed;
  p.async_join(asio::bind_executor(ioc, record{&plain}));
  p.async_join(600s, asio::bind_executor(ioc, record{&timed}));
  ioc.poll();
  BOOST_TEST(plain.calls + timed.calls == 0);
  p.kill();
  run_until(ioc, [&] { return plain.calls + timed.calls == 2; });
  BOOST_TEST(plain.code == -9);
  BOOST_TEST(timed.code == -9);
  BOOST_TEST(p.exitcode() == -9);
  BOOST_TEST(p.status()->signal == SIGKILL);
}

BOOST_AUTO_TEST_CASE(terminate_during_a_join_gives_minus_fifteen) {
  conn_pipe release;
  auto p = released_child(release, 0);
  p.start();
  asio::io_context ioc;
  join_result plain, timed;
  p.async_join(asio::bind_executor(ioc, record{&plain}));
  p.async_join(600s, asio::bind_executor(ioc, record{&timed}));
  ioc.poll();
  p.terminate();
  run_until(ioc, [&] { return plain.calls + timed.calls == 2; });
  BOOST_TEST(plain.code == -15);
  BOOST_TEST(timed.code == -15);
  BOOST_TEST(p.status()->signal == SIGTERM);
}

BOOST_AUTO_TEST_CASE(kill_before_the_join_gives_minus_nine) {
  conn_pipe release;
  auto p = released_child(release, 0);
  p.start();
  p.kill();
  BOOST_TEST(awaited_join(p).code == -9);
}

BOOST_AUTO_TEST_CASE(a_crash_gives_minus_the_signal) {
  coproc::process p(crash);
  p.start();
  BOOST_TEST(awaited_join(p).code == -SIGSEGV);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(async_join_misuse)


BOOST_AUTO_TEST_CASE(misuse_throws_from_the_call_and_never_calls_the_handler) {
  asio::io_context ioc;
  join_result r;
  coproc::process unstarted(coproc_test::targets::nothing);
  expect_misuse([&] { unstarted.async_join(asio::bind_executor(ioc, record{&r})); },
                "can only join a started process");
  expect_misuse([&] { unstarted.async_join(1s, asio::bind_executor(ioc, record{&r})); },
                "can only join a started process");
  auto closed = joined_child(0);
  closed.close();
  expect_misuse([&] { closed.async_join(asio::bind_executor(ioc, record{&r})); },
                "process object is closed");
  expect_misuse([&] { closed.async_join(1s, asio::bind_executor(ioc, record{&r})); },
                "process object is closed");
  ioc.run();
  BOOST_TEST(r.calls == 0);
}

BOOST_AUTO_TEST_CASE(joining_a_sibling_from_a_child_is_misuse) {
  conn_pipe release;
  test_pipe report;
  auto sibling = released_child(release, 0);
  sibling.start();
  // Fork only: the child calls the parent's own object for its sibling, which only a forked
  // child has (a copy of the parent's memory); a spawned child has no such object to misuse.
  coproc::process p({.method = coproc::start_method::fork}, [&] {
    asio::io_context ioc;  // a fresh one: the parent's belongs to the parent
    try {
      sibling.async_join(asio::bind_executor(ioc, [](error_code, int) {}));
      report.write("no error\n");
    } catch (const std::logic_error& e) {
      report.write(std::string(e.what()) + "\n");
    }
  });
  p.start();
  const std::string what = report.read_line();
  BOOST_TEST(what.find("can only join a child process") != std::string::npos, what);
  BOOST_TEST(p.join() == 0);
  release.close_write();
  BOOST_TEST(sibling.join() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
