// Many children and many joiners: 1,000 children awaited at once on one thread, and an
// io_context run by 4 threads with many joiners of every kind per child (coroutines on
// strands, callbacks, sync join() from plain threads) that must all see the one exit code.
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <variant>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/test/unit_test.hpp>

#include "async_support.hpp"

using namespace async_test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

// Where joiners of several threads report what they saw: per child, every exit code seen.
class tally {
 public:
  void add(std::size_t child, error_code ec, std::optional<int> code) {
    std::lock_guard lock(mutex_);
    if (ec)
      errors_.push_back(ec);
    else
      seen_[child].push_back(code.value_or(-1000));
    ++count_;
    done_.notify_all();
  }
  // Waits until `n` reports have come in (a hang guard gives up after `guard`).
  bool wait_for(std::size_t n, std::chrono::seconds guard) {
    std::unique_lock lock(mutex_);
    return done_.wait_for(lock, guard, [&] { return count_ >= n; });
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return count_;
  }
  std::map<std::size_t, std::vector<int>> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  std::vector<error_code> errors() {
    std::lock_guard lock(mutex_);
    return errors_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::size_t count_ = 0;
  std::map<std::size_t, std::vector<int>> seen_;
  std::vector<error_code> errors_;
};

asio::awaitable<void> coroutine_joiner(coproc::process& p, std::size_t i, tally& t,
                                       std::atomic<int>& ready) {
  ready.fetch_add(1);
  auto [ec, code] = co_await p.async_join(asio::as_tuple(asio::use_awaitable));
  t.add(i, ec, code);
}

asio::awaitable<void> timed_coroutine_joiner(coproc::process& p, std::size_t i, tally& t,
                                             std::atomic<int>& ready) {
  ready.fetch_add(1);
  auto [ec, code] = co_await p.async_join(600s, asio::as_tuple(asio::use_awaitable));
  t.add(i, ec, code);
}

// The awaitable operators on a multi-threaded io_context: safe on a strand (asio#1348).
asio::awaitable<void> racing_joiner(coproc::process& p, std::size_t i, tally& t,
                                    std::atomic<int>& ready) {
  asio::steady_timer timer(co_await asio::this_coro::executor, 600s);
  ready.fetch_add(1);
  auto result = co_await (p.async_join(asio::use_awaitable) || timer.async_wait(asio::use_awaitable));
  if (result.index() == 0)
    t.add(i, {}, std::get<0>(result));
  else
    t.add(i, asio::error::timed_out, std::nullopt);
}

asio::awaitable<void> one_of_many(coproc::process& p, std::size_t i, std::vector<int>& codes,
                                  std::size_t& done) {
  codes[i] = co_await p.async_join(asio::use_awaitable);
  ++done;
}

asio::awaitable<void> one_of_many_timed(coproc::process& p, std::size_t i, std::vector<int>& codes,
                                        std::size_t& done) {
  auto code = co_await p.async_join(600s, asio::use_awaitable);
  codes[i] = code.value_or(-1000);
  ++done;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(async_join_scale)

BOOST_AUTO_TEST_CASE(a_thousand_children_awaited_at_once_on_one_thread) {
  constexpr std::size_t n = 1000;
  // Each child costs a sentinel (plus, in the pipe fallback, a keep-alive pipe end) and each
  // pending join a duplicate of it.
  const coproc_test::descriptor_limit_raised descriptors;  // declared first: it outlives the children
  BOOST_REQUIRE_MESSAGE(descriptors.limit() >= 4 * n + 64, "not enough descriptors");
  conn_pipe release;
  std::vector<coproc::process> children;
  children.reserve(n);
  // 251 is prime: neighbours (and children n apart) end with different codes, so a result
  // delivered to the wrong join shows.
  auto code_of = [](std::size_t i) { return static_cast<int>(i % 251); };
  for (std::size_t i = 0; i < n; ++i) {
    children.push_back(released_child(release, code_of(i)));
    children.back().start();
  }
  asio::io_context ioc(1);
  std::vector<int> codes(n, -2000);
  std::size_t done = 0;
  for (std::size_t i = 0; i < n; ++i) {
    switch (i % 3) {
      case 0:
        asio::co_spawn(ioc, one_of_many(children[i], i, codes, done), rethrow{});
        break;
      case 1:
        asio::co_spawn(ioc, one_of_many_timed(children[i], i, codes, done), rethrow{});
        break;
      default:
        children[i].async_join(asio::bind_executor(ioc, [&codes, &done, i](error_code ec, int code) {
          codes[i] = ec ? -3000 : code;
          ++done;
        }));
    }
  }
  ioc.poll();
  BOOST_TEST(done == 0u);
  release.close_write();  // all of them end at once
  run_until(ioc, [&] { return done == n; }, 300s);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i)
    if (codes[i] != code_of(i)) {
      if (++wrong <= 10) BOOST_TEST(codes[i] == code_of(i), "child " << i);
    }
  BOOST_TEST(wrong == 0u);
  BOOST_TEST(coproc::active_children().empty());
  BOOST_TEST(!coproc_test::has_zombie_child());
}

BOOST_AUTO_TEST_CASE(four_threads_and_many_joiners_per_child_see_one_exit_code) {
  constexpr std::size_t rounds = 3, n = 6;
  constexpr int coroutines = 4, timed = 2, racing = 2, callbacks = 4, own_thread = 3, sync = 2;
  constexpr int per_child = coroutines + timed + racing + 2 * callbacks + own_thread + sync + 1;
  for (std::size_t round = 0; round < rounds; ++round) {
    BOOST_TEST_CONTEXT("round " << round) {
      conn_pipe release;
      std::vector<coproc::process> children;
      std::vector<int> expected;
      for (std::size_t i = 0; i < n; ++i) {
        // Exits 60..63, then one killed (-9) and one terminated (-15).
        children.push_back(released_child(release, static_cast<int>(60 + i)));
        children.back().start();
        expected.push_back(i == n - 2 ? -9 : i == n - 1 ? -15 : static_cast<int>(60 + i));
      }
      asio::io_context ioc(4);
      auto work = asio::make_work_guard(ioc);
      tally t;
      std::atomic<int> ready{0};
      auto shared_strand = asio::make_strand(ioc);
      for (std::size_t i = 0; i < n; ++i) {
        auto& p = children[i];
        for (int k = 0; k < coroutines; ++k)
          asio::co_spawn(asio::make_strand(ioc), coroutine_joiner(p, i, t, ready), rethrow{});
        for (int k = 0; k < timed; ++k)
          asio::co_spawn(asio::make_strand(ioc), timed_coroutine_joiner(p, i, t, ready), rethrow{});
        for (int k = 0; k < racing; ++k)
          asio::co_spawn(shared_strand, racing_joiner(p, i, t, ready), rethrow{});
        for (int k = 0; k < callbacks; ++k) {
          // Callbacks on the io_context itself (any of its threads) and on a strand of it.
          p.async_join(asio::bind_executor(ioc, [&t, i](error_code ec, int code) { t.add(i, ec, code); }));
          p.async_join(asio::bind_executor(asio::make_strand(ioc),
                                           [&t, i](error_code ec, int code) { t.add(i, ec, code); }));
        }
        for (int k = 0; k < own_thread; ++k)  // plain callbacks: coproc's own I/O thread
          p.async_join([&t, i](error_code ec, int code) { t.add(i, ec, code); });
      }
      std::vector<std::thread> threads;
      for (int k = 0; k < 4; ++k) threads.emplace_back([&ioc] { ioc.run(); });
      std::vector<std::thread> joiners;
      for (std::size_t i = 0; i < n; ++i) {
        for (int k = 0; k < sync; ++k)
          joiners.emplace_back([&, i] {
            ready.fetch_add(1);
            t.add(i, {}, children[i].join());
          });
        joiners.emplace_back([&, i] {
          ready.fetch_add(1);
          t.add(i, {}, children[i].join(600s));
        });
      }
      // Every coroutine and joiner thread has reached its join (or is about to): now end the
      // children together. (The counter is polled, with a hang guard of 60 s.)
      const int waiters_total = static_cast<int>(n) * (coroutines + timed + racing + sync + 1);
      for (int spin = 0; ready.load() < waiters_total && spin < 60'000; ++spin)
        std::this_thread::sleep_for(1ms);
      BOOST_TEST(ready.load() == waiters_total);
      children[n - 2].kill();
      children[n - 1].terminate();
      release.close_write();

      const bool all = t.wait_for(n * per_child, 120s);
      BOOST_TEST(all, "only " << t.count() << " of " << n * per_child << " joins completed");
      for (auto& j : joiners) j.join();
      // (Whether the io_context is left without work is completion_test.cpp's business.)
      ioc.stop();
      for (auto& th : threads) th.join();
      BOOST_TEST(t.errors().empty());
      const auto seen = t.seen();
      for (std::size_t i = 0; i < n; ++i) {
        BOOST_TEST_CONTEXT("child " << i) {
          const auto it = seen.find(i);
          BOOST_REQUIRE(it != seen.end());
          BOOST_TEST(it->second.size() == static_cast<std::size_t>(per_child));
          for (int code : it->second) BOOST_TEST(code == expected[i]);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
