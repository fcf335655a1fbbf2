// async_join with every kind of completion token, in both forms (untimed and timed): each one
// compiles, completes once with the child's exit code, and runs where its executor says.
#include <signal.h>

#include <atomic>
#include <future>
#include <thread>
#include <tuple>
#include <variant>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include "async_support.hpp"

using namespace async_test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

asio::awaitable<void> await_plain(coproc::process& p, std::optional<int>& out) {
  out = co_await p.async_join(asio::use_awaitable);
}

asio::awaitable<void> await_timed(coproc::process& p, std::optional<std::optional<int>>& out) {
  out = co_await p.async_join(60s, asio::use_awaitable);
}

asio::awaitable<void> await_deferred(coproc::process& p, std::optional<int>& out) {
  out = co_await p.async_join(asio::deferred);
}

asio::awaitable<void> await_timed_deferred(coproc::process& p, std::optional<std::optional<int>>& out) {
  out = co_await p.async_join(60s, asio::deferred);
}

asio::awaitable<void> join_or_timer(coproc::process& p, std::chrono::milliseconds after,
                                    std::variant<int, std::monostate>& out) {
  asio::steady_timer timer(co_await asio::this_coro::executor, after);
  out = co_await (p.async_join(asio::use_awaitable) || timer.async_wait(asio::use_awaitable));
}

asio::awaitable<void> timed_join_or_timer(coproc::process& p, std::chrono::milliseconds after,
                                          std::variant<std::optional<int>, std::monostate>& out) {
  asio::steady_timer timer(co_await asio::this_coro::executor, after);
  out = co_await (p.async_join(60s, asio::use_awaitable) || timer.async_wait(asio::use_awaitable));
}

asio::awaitable<void> join_both(coproc::process& p, coproc::process& q, std::tuple<int, int>& out) {
  out = co_await (p.async_join(asio::use_awaitable) && q.async_join(asio::use_awaitable));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(async_tokens)

// Each case starts the join while the child still waits for its release, so the wait on the
// sentinel is what completes it (the already-ended path has its own cases in
// completion_test.cpp).

BOOST_AUTO_TEST_CASE(use_awaitable_gives_the_exit_code) {
  conn_pipe release;
  auto p = released_child(release, 42);
  p.start();
  asio::io_context ioc;
  std::optional<int> got;
  asio::co_spawn(ioc, await_plain(p, got), rethrow{});
  ioc.poll();  // the coroutine now waits on the join
  BOOST_TEST(!got);
  release.close_write();
  run_guarded(ioc);
  BOOST_TEST(got == 42);
}

BOOST_AUTO_TEST_CASE(use_awaitable_timed_gives_the_exit_code) {
  conn_pipe release;
  auto p = released_child(release, 43);
  p.start();
  asio::io_context ioc;
  std::optional<std::optional<int>> got;
  asio::co_spawn(ioc, await_timed(p, got), rethrow{});
  ioc.poll();
  BOOST_TEST(!got);
  release.close_write();
  run_until(ioc, [&] { return got.has_value(); });
  BOOST_REQUIRE(got);
  BOOST_TEST(*got == 43);
}

BOOST_AUTO_TEST_CASE(as_tuple_use_awaitable_gives_error_code_and_exit_code) {
  conn_pipe release;
  auto p = released_child(release, 44);
  p.start();
  asio::io_context ioc;
  join_result plain, timed;
  asio::co_spawn(ioc, join_into(p, plain), rethrow{});
  asio::co_spawn(ioc, timed_join_into(p, 60'000ms, timed), rethrow{});
  ioc.poll();
  BOOST_TEST(plain.calls + timed.calls == 0);
  release.close_write();
  run_until(ioc, [&] { return plain.calls + timed.calls == 2; });
  BOOST_TEST(plain.calls == 1);
  BOOST_TEST(!plain.ec);
  BOOST_TEST(plain.code == 44);
  BOOST_TEST(timed.calls == 1);
  BOOST_TEST(!timed.ec);
  BOOST_TEST(timed.code == 44);
}

BOOST_AUTO_TEST_CASE(callback_bound_to_a_strand_runs_on_the_strand) {
  conn_pipe release;
  auto p = released_child(release, 45);
  p.start();
  asio::io_context ioc;
  auto strand = asio::make_strand(ioc);
  join_result plain, timed;  // written on the strand; read here once both threads are done
  bool plain_on_strand = false, timed_on_strand = false;
  std::atomic<int> completed{0};
  p.async_join(asio::bind_executor(strand, [&](error_code ec, int code) {
    plain_on_strand = strand.running_in_this_thread();
    record{&plain}(ec, code);
    completed.fetch_add(1);
  }));
  p.async_join(60s, asio::bind_executor(strand, [&](error_code ec, std::optional<int> code) {
    timed_on_strand = strand.running_in_this_thread();
    record{&timed}(ec, code);
    completed.fetch_add(1);
  }));
  ioc.poll();
  BOOST_TEST(completed.load() == 0);
  release.close_write();
  // Two threads: a handler posted to the io_context instead of the strand would not be "in"
  // the strand, whichever thread runs it.
  auto work = asio::make_work_guard(ioc);
  std::thread other([&] { ioc.run(); });
  run_until(ioc, [&] { return completed.load() == 2; });
  ioc.stop();
  other.join();
  BOOST_TEST(plain.calls == 1);
  BOOST_TEST(plain.code == 45);
  BOOST_TEST(plain_on_strand);
  BOOST_TEST(timed.calls == 1);
  BOOST_TEST(timed.code == 45);
  BOOST_TEST(timed_on_strand);
}

BOOST_AUTO_TEST_CASE(callback_bound_to_a_thread_pool_runs_in_the_pool) {
  conn_pipe release;
  auto p = released_child(release, 46);
  p.start();
  asio::thread_pool pool(2);
  std::promise<std::pair<int, bool>> plain;
  std::promise<std::pair<std::optional<int>, bool>> timed;
  p.async_join(asio::bind_executor(pool, [&](error_code ec, int code) {
    plain.set_value({ec ? -1000 : code, pool.get_executor().running_in_this_thread()});
  }));
  p.async_join(60s, asio::bind_executor(pool, [&](error_code ec, std::optional<int> code) {
    timed.set_value({ec ? std::optional(-1000) : code, pool.get_executor().running_in_this_thread()});
  }));
  release.close_write();
  auto pf = plain.get_future();
  auto tf = timed.get_future();
  BOOST_REQUIRE(pf.wait_for(60s) == std::future_status::ready);
  BOOST_REQUIRE(tf.wait_for(60s) == std::future_status::ready);
  const auto [code, in_pool] = pf.get();
  BOOST_TEST(code == 46);
  BOOST_TEST(in_pool);
  const auto [tcode, tin_pool] = tf.get();
  BOOST_TEST(tcode == 46);
  BOOST_TEST(tin_pool);
  pool.stop();
  pool.join();
}

BOOST_AUTO_TEST_CASE(plain_callback_completes_on_another_thread) {
  // No associated executor: the system executor, and coproc's own I/O thread does the wait.
  // The caller's thread is blocked in the future below, so a completion on it could only be
  // an inline one.
  conn_pipe release;
  auto p = released_child(release, 47);
  p.start();
  std::promise<std::thread::id> plain, timed;
  int plain_code = -1000;
  std::optional<int> timed_code;
  p.async_join([&](error_code ec, int code) {
    plain_code = ec ? -1 : code;
    plain.set_value(std::this_thread::get_id());
  });
  p.async_join(60s, [&](error_code ec, std::optional<int> code) {
    timed_code = ec ? std::optional(-1) : code;
    timed.set_value(std::this_thread::get_id());
  });
  release.close_write();
  auto pf = plain.get_future();
  auto tf = timed.get_future();
  BOOST_REQUIRE(pf.wait_for(60s) == std::future_status::ready);
  BOOST_REQUIRE(tf.wait_for(60s) == std::future_status::ready);
  BOOST_TEST((pf.get() != std::this_thread::get_id()));
  BOOST_TEST((tf.get() != std::this_thread::get_id()));
  BOOST_TEST(plain_code == 47);
  BOOST_TEST(timed_code == 47);
}

BOOST_AUTO_TEST_CASE(use_future_gives_the_exit_code) {
  conn_pipe release;
  auto p = released_child(release, 48);
  p.start();
  std::future<int> plain = p.async_join(asio::use_future);
  std::future<std::optional<int>> timed = p.async_join(60s, asio::use_future);
  BOOST_TEST((plain.wait_for(0s) == std::future_status::timeout));
  release.close_write();
  BOOST_REQUIRE(plain.wait_for(60s) == std::future_status::ready);
  BOOST_REQUIRE(timed.wait_for(60s) == std::future_status::ready);
  BOOST_TEST(plain.get() == 48);
  BOOST_TEST(timed.get() == 48);
}

BOOST_AUTO_TEST_CASE(use_future_completes_on_coprocs_thread_not_the_callers) {
  // use_future has no executor of its own: the promise is fulfilled on coproc's I/O thread.
  conn_pipe release;
  auto p = released_child(release, 49);
  p.start();
  auto where = [](error_code ec, int code) { return std::pair(ec ? -1 : code, std::this_thread::get_id()); };
  auto where_timed = [](error_code ec, std::optional<int> code) {
    return std::pair(ec ? std::optional(-1) : code, std::this_thread::get_id());
  };
  auto plain = p.async_join(asio::use_future(where));
  auto timed = p.async_join(60s, asio::use_future(where_timed));
  release.close_write();
  BOOST_REQUIRE(plain.wait_for(60s) == std::future_status::ready);
  BOOST_REQUIRE(timed.wait_for(60s) == std::future_status::ready);
  const auto [code, thread] = plain.get();
  const auto [tcode, tthread] = timed.get();
  BOOST_TEST(code == 49);
  BOOST_TEST(tcode == 49);
  BOOST_TEST((thread != std::this_thread::get_id()));
  BOOST_TEST((tthread != std::this_thread::get_id()));
}

BOOST_AUTO_TEST_CASE(deferred_starts_only_when_launched) {
  conn_pipe release;
  auto p = released_child(release, 50);
  p.start();
  asio::io_context ioc;
  auto plain_op = p.async_join(asio::deferred);
  auto timed_op = p.async_join(60s, asio::deferred);
  join_result plain, timed;
  release.close_write();
  BOOST_TEST(p.join() == 50);  // reaped before either operation is launched
  std::move(plain_op)(asio::bind_executor(ioc, record{&plain}));
  std::move(timed_op)(asio::bind_executor(ioc, record{&timed}));
  BOOST_TEST(plain.calls + timed.calls == 0);
  run_guarded(ioc);
  BOOST_TEST(plain.calls == 1);
  BOOST_TEST(plain.code == 50);
  BOOST_TEST(timed.calls == 1);
  BOOST_TEST(timed.code == 50);
}

BOOST_AUTO_TEST_CASE(deferred_can_be_co_awaited) {
  conn_pipe release;
  auto p = released_child(release, 51);
  p.start();
  asio::io_context ioc;
  std::optional<int> plain;
  std::optional<std::optional<int>> timed;
  asio::co_spawn(ioc, await_deferred(p, plain), rethrow{});
  asio::co_spawn(ioc, await_timed_deferred(p, timed), rethrow{});
  ioc.poll();
  release.close_write();
  run_until(ioc, [&] { return plain && timed; });
  BOOST_TEST(plain == 51);
  BOOST_REQUIRE(timed);
  BOOST_TEST(*timed == 51);
}

BOOST_AUTO_TEST_CASE(awaitable_or_timer_gives_the_join_when_the_child_ends_first) {
  conn_pipe release;
  auto p = released_child(release, 52);
  p.start();
  asio::io_context ioc;
  std::variant<int, std::monostate> got{std::monostate{}};
  asio::co_spawn(ioc, join_or_timer(p, 600s, got), rethrow{});
  ioc.poll();
  release.close_write();
  // The io_context runs out of work only once the losing timer was cancelled: long before
  // its 600 s.
  run_guarded(ioc);
  BOOST_REQUIRE(got.index() == 0u);
  BOOST_TEST(std::get<0>(got) == 52);
}

BOOST_AUTO_TEST_CASE(awaitable_or_timer_gives_the_timed_join_when_the_child_ends_first) {
  conn_pipe release;
  auto p = released_child(release, 52);
  p.start();
  asio::io_context ioc;
  std::variant<std::optional<int>, std::monostate> got{std::monostate{}};
  bool done = false;
  asio::co_spawn(ioc, timed_join_or_timer(p, 600s, got), [&](std::exception_ptr e) {
    done = true;
    if (e) std::rethrow_exception(e);
  });
  ioc.poll();
  release.close_write();
  run_until(ioc, [&] { return done; });
  BOOST_REQUIRE(got.index() == 0u);
  BOOST_TEST(std::get<0>(got) == 52);
}

BOOST_AUTO_TEST_CASE(awaitable_or_timer_cancels_the_join_when_the_timer_fires_first) {
  conn_pipe release;
  auto p = released_child(release, 53);
  p.start();
  asio::io_context ioc;
  std::variant<int, std::monostate> plain{0};
  std::variant<std::optional<int>, std::monostate> timed{std::optional<int>{}};
  asio::co_spawn(ioc, join_or_timer(p, 20ms, plain), rethrow{});
  asio::co_spawn(ioc, timed_join_or_timer(p, 20ms, timed), rethrow{});
  // The io_context runs out of work only if the losing joins were cancelled (the child still
  // waits for its release).
  run_guarded(ioc);
  BOOST_TEST(plain.index() == 1u);
  BOOST_TEST(timed.index() == 1u);
  // Cancelling never signals the child: it still runs, and ends with its own code.
  BOOST_TEST(p.is_alive());
  join_result later;
  asio::co_spawn(ioc, join_into(p, later), rethrow{});
  ioc.restart();
  ioc.poll();
  release.close_write();
  run_guarded(ioc);
  BOOST_TEST(later.code == 53);
  BOOST_TEST(p.exitcode() == 53);
}

BOOST_AUTO_TEST_CASE(awaitable_and_gives_both_exit_codes) {
  conn_pipe release;
  auto p = released_child(release, 54);
  auto q = released_child(release, 55);
  p.start();
  q.start();
  asio::io_context ioc;
  std::tuple<int, int> both{-1, -1};
  asio::co_spawn(ioc, join_both(p, q, both), rethrow{});
  ioc.poll();
  release.close_write();
  run_guarded(ioc);
  BOOST_TEST(std::get<0>(both) == 54);
  BOOST_TEST(std::get<1>(both) == 55);
}

BOOST_AUTO_TEST_SUITE_END()
