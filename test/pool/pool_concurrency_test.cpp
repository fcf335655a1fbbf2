// One pool shared by blocking threads and by coroutines on an io_context run by two threads
// (async_apply, map_async(...).async_get, imap_result::async_next): every task is accounted
// for. Per-operation cancellation ends a wait, never the task or its worker. Boost.Test is
// asserted on the main thread only (TSan): the other threads record what they saw.
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "helpers.hpp"
#include "pool_support.hpp"

using namespace std::chrono_literals;
namespace asio = boost::asio;
using pool_test::all_methods;

namespace {

// What the other threads saw, checked on the main thread.
struct ledger {
  std::atomic<long> ok{0}, wrong{0};
  std::mutex mutex;
  std::vector<std::string> errors;
  void fail(std::string what) {
    ++wrong;
    std::lock_guard l(mutex);
    errors.push_back(std::move(what));
  }
  void check(bool good, const char* what) {
    if (good)
      ++ok;
    else
      fail(what);
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(pool_concurrency)

BOOST_AUTO_TEST_CASE(threads_and_coroutines_share_one_pool) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      const int rounds = pool_test::sanitized ? 5 : 25;
      coproc::pool p({.processes = 3, .method = m});
      ledger book;
      // Four blocking threads.
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
          try {
            for (int i = 0; i < rounds; ++i) {
              const int x = t * 1000 + i;
              book.check(p.apply(pool_tasks::sqr, x) == x * x, "apply");
              book.check(p.apply_async(pool_tasks::mul, x, 2).get() == 2 * x, "apply_async");
              std::vector<int> in{x, x + 1, x + 2, x + 3};
              book.check(p.map(pool_tasks::identity, in, 1) == in, "map");
              long sum = 0;
              for (int v : p.imap_unordered(pool_tasks::identity, in, 2)) sum += v;
              book.check(sum == 4L * x + 6, "imap_unordered");
              try {
                p.apply(pool_tasks::throws_runtime, x);
                book.fail("no remote_error");
              } catch (const coproc::remote_error&) {
                ++book.ok;
              }
            }
          } catch (const std::exception& e) {
            book.fail(std::string("thread: ") + e.what());
          }
        });
      }
      // Coroutines on an io_context run by two threads.
      asio::io_context io;
      std::atomic<int> coroutines_done{0};
      const int coroutines = 6;
      for (int c = 0; c < coroutines; ++c) {
        asio::co_spawn(
            io,
            [&, c]() -> asio::awaitable<void> {
              for (int i = 0; i < rounds; ++i) {
                const int x = 100000 + c * 1000 + i;
                auto [ec, v] = co_await p.async_apply(pool_tasks::sqr, std::tuple{x % 40000},
                                                      asio::as_tuple(asio::use_awaitable));
                book.check(!ec && v == (x % 40000) * (x % 40000), "async_apply");
                // (async_apply of a void function does not compile: async_result<void>'s
                // async_get spells void(error_code, void); see the report.)
                auto [ec2, n2] = co_await p.async_apply(pool_tasks::mul, std::tuple{x % 1000, 3},
                                                        asio::as_tuple(asio::use_awaitable));
                book.check(!ec2 && n2 == (x % 1000) * 3, "async_apply of two");
                auto [ec3, e3] = co_await p.async_apply(pool_tasks::throws_runtime, std::tuple{1},
                                                        asio::as_tuple(asio::use_awaitable));
                book.check(ec3 == coproc::errc::remote_error, "async_apply remote_error");
                std::vector<int> in{x, x + 1, x + 2};
                auto [ec4, out] = co_await p.map_async(pool_tasks::identity, in, 1)
                                      .async_get(asio::as_tuple(asio::use_awaitable));
                book.check(!ec4 && out == in, "map_async");
                auto [ec5, out5] = co_await p.async_map(pool_tasks::identity, in, 2,
                                                        asio::as_tuple(asio::use_awaitable));
                book.check(!ec5 && out5 == in, "async_map");
                auto it = p.imap(pool_tasks::identity, in, 1);
                std::vector<int> got;
                for (;;) {
                  auto [ec6, item] = co_await it.async_next(asio::as_tuple(asio::use_awaitable));
                  if (ec6) {
                    book.fail("async_next: " + ec6.message());
                    break;
                  }
                  if (!item) break;
                  got.push_back(*item);
                }
                book.check(got == in, "imap async_next");
                auto bad = p.imap_unordered(pool_tasks::sqr_unless_7_or_13, std::vector<int>{6, 7, 8}, 1);
                int values = 0, errors = 0;
                for (;;) {
                  auto [ec7, item] = co_await bad.async_next(asio::as_tuple(asio::use_awaitable));
                  if (ec7 == coproc::errc::remote_error) {
                    ++errors;
                    continue;
                  }
                  if (ec7 || !item) break;
                  ++values;
                }
                book.check(values == 2 && errors == 1, "imap_unordered async_next with a failure");
              }
              ++coroutines_done;
            },
            [&](std::exception_ptr e) {
              if (e) book.fail("a coroutine threw");
            });
      }
      std::thread io1([&] { io.run(); }), io2([&] { io.run(); });
      for (auto& t : threads) t.join();
      io1.join();
      io2.join();
      {
        std::lock_guard l(book.mutex);
        for (const auto& e : book.errors) BOOST_ERROR(e);
      }
      BOOST_TEST(book.wrong.load() == 0);
      BOOST_TEST(coroutines_done.load() == coroutines);
      BOOST_TEST(book.ok.load() == 4L * rounds * 5 + long(coroutines) * rounds * 7);
      p.close();
      p.join();
    }
  }
}

// Cancelling the wait of async_apply (a cancellation slot, or `||` with a timer) completes it
// with operation_aborted; the task still completes on the same worker.
BOOST_AUTO_TEST_CASE(cancelling_a_wait_leaves_the_task_running) {
  using namespace asio::experimental::awaitable_operators;
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 1, .method = m});
      const int pid = p.apply(pool_tasks::worker_pid);
      asio::io_context io;

      // A cancellation slot: emitted once the wait has begun (posted after the coroutine, on
      // the same single thread).
      pool_test::fifo gate;
      auto r = p.apply_async(pool_tasks::wait_fifo, gate.path(), 11);
      asio::cancellation_signal signal;
      boost::system::error_code cancelled_ec;
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            auto [ec, v] = co_await r.async_get(
                asio::bind_cancellation_slot(signal.slot(), asio::as_tuple(asio::use_awaitable)));
            cancelled_ec = ec;
          },
          asio::detached);
      asio::post(io, [&] { signal.emit(asio::cancellation_type::terminal); });
      io.run();
      BOOST_TEST(cancelled_ec == asio::error::operation_aborted);
      BOOST_TEST(!r.ready());
      // A wait with a timeout gives up the same way (timed_out); the task runs on.
      io.restart();
      boost::system::error_code timed_ec;
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            auto [ec, v] = co_await r.async_get(10ms, asio::as_tuple(asio::use_awaitable));
            timed_ec = ec;
          },
          asio::detached);
      io.run();
      BOOST_TEST(timed_ec == asio::error::timed_out);
      BOOST_TEST(!r.ready());
      BOOST_REQUIRE(gate.wait_started());
      gate.release();
      BOOST_TEST(r.get(60s) == 11);

      // async_apply itself, raced with a timer by `||`: the timer wins (the task cannot end
      // before the gate opens), the wait is cancelled, the task is not.
      pool_test::fifo gate2;
      io.restart();
      std::optional<std::size_t> winner;
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            asio::steady_timer t(co_await asio::this_coro::executor, 20ms);
            auto v = co_await (p.async_apply(pool_tasks::wait_fifo, std::tuple{gate2.path(), 12},
                                             asio::use_awaitable) ||
                               t.async_wait(asio::use_awaitable));
            winner = v.index();
          },
          asio::detached);
      io.run();
      BOOST_TEST(winner == std::optional<std::size_t>(1));
      BOOST_REQUIRE(gate2.wait_started());  // the task runs on after its wait was cancelled
      gate2.release();
      BOOST_TEST(p.apply(pool_tasks::worker_pid) == pid);  // the same worker: nothing killed

      // async_next of an imap, cancelled: the chunk's result still comes to next().
      pool_test::fifo gate3;
      auto it = p.imap(pool_tasks::wait_fifo_13, std::vector<std::string>{gate3.path()}, 1);
      io.restart();
      boost::system::error_code next_ec;
      asio::cancellation_signal signal3;
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            auto [ec, v] = co_await it.async_next(
                asio::bind_cancellation_slot(signal3.slot(), asio::as_tuple(asio::use_awaitable)));
            next_ec = ec;
          },
          asio::detached);
      asio::post(io, [&] { signal3.emit(asio::cancellation_type::terminal); });
      io.run();
      BOOST_TEST(next_ec == asio::error::operation_aborted);
      BOOST_REQUIRE(gate3.wait_started());
      gate3.release();
      BOOST_TEST(it.next(60s) == std::optional<int>(13));
      BOOST_TEST(!it.next(60s).has_value());
      BOOST_TEST(p.apply(pool_tasks::worker_pid) == pid);
      p.close();
      p.join();
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
