// CPython's _TestPool (Lib/test/_test_multiprocessing.py) cases that need no pickling, ported
// to coproc::pool under every start method. Each case names the CPython test it ports. Not
// ported: the callbacks (coproc has none), unpicklable arguments, tracebacks, and the timing
// checks (test_async, test_async_timeout time their waits; here only the outcomes count).
#include <algorithm>
#include <numeric>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "helpers.hpp"
#include "pool_support.hpp"

using namespace std::chrono_literals;
using pool_test::all_methods;
using pool_test::contains;

namespace {

std::vector<int> range_of(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}
std::vector<int> squares(int n) {
  std::vector<int> v;
  for (int i = 0; i < n; ++i) v.push_back(i * i);
  return v;
}

// Python's exception_throwing_generator(total, when): the input itself throws when it reaches
// `when` (-1: at once).
struct say_when_error : std::invalid_argument {
  say_when_error() : std::invalid_argument("Somebody said when") {}
};
auto throwing_input(int total, int when) {
  return std::views::iota(0, total) | std::views::transform([when](int i) {
           if (i == when || when == -1) throw say_when_error();
           return i;
         });
}

// Reads an imap to its end; each failed chunk shows as -1 in the result.
template <class Imap>
std::vector<int> drain(Imap& it, std::vector<std::string>* errors = nullptr) {
  std::vector<int> got;
  for (;;) {
    try {
      auto v = it.next(60s);
      if (!v) return got;
      got.push_back(*v);
    } catch (const coproc::remote_error& e) {
      got.push_back(-1);
      if (errors) errors->push_back(e.message());
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(python_test_pool)

// test_apply (a keyword argument has no C++ form), test_async (without the timing).
BOOST_AUTO_TEST_CASE(apply) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 4, .method = m});
      BOOST_TEST(p.size() == 4);
      BOOST_TEST(p.apply(pool_tasks::sqr, 5) == 25);
      BOOST_TEST(p.apply(pool_tasks::mul, 3, 4) == 12);
      p.apply(pool_tasks::nothing);
      auto r = p.apply_async(pool_tasks::sqr, 7);
      BOOST_TEST(r.get() == 49);
      BOOST_TEST(r.get() == 49);  // repeatable
      BOOST_TEST(r.ready());
      BOOST_TEST(r.successful());
      auto st = r.status();
      BOOST_REQUIRE(st.has_value());
      BOOST_TEST(st->exitcode == 0);
      // test_wrapped_exception: the task's exception arrives as itself (its type and message).
      try {
        p.apply(pool_tasks::throws_runtime, 3);
        BOOST_ERROR("no remote_error");
      } catch (const coproc::remote_error& e) {
        BOOST_TEST(e.type_name() == "std::runtime_error");
        BOOST_TEST(e.message() == "boom 3");
      }
      auto bad = p.apply_async(pool_tasks::throws_runtime, 4);
      BOOST_CHECK_THROW(bad.get(), coproc::remote_error);
      BOOST_TEST(!bad.successful());
      BOOST_TEST(p.apply(pool_tasks::sqr, 6) == 36);  // the worker survived the exception
    }
  }
}

// test_async_timeout: get(timeout) gives up, the task keeps running, a later get() has it.
BOOST_AUTO_TEST_CASE(async_timeout) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 2, .method = m});
      pool_test::fifo gate;
      auto r = p.apply_async(pool_tasks::wait_fifo, gate.path(), 6);
      BOOST_REQUIRE(gate.wait_started());
      BOOST_CHECK_THROW(r.get(10ms), coproc::timeout_error);
      BOOST_TEST(!r.ready());
      BOOST_CHECK_THROW((void)r.successful(), std::logic_error);  // "result is not ready"
      gate.release();
      BOOST_TEST(r.get(60s) == 6);
    }
  }
}

// test_map, test_map_async, test_map_chunksize (an empty input with chunksize 1 does not stall).
BOOST_AUTO_TEST_CASE(map) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 4, .method = m});
      BOOST_TEST(p.map(pool_tasks::sqr, range_of(10)) == squares(10));
      BOOST_TEST(p.map(pool_tasks::sqr, range_of(100), 20) == squares(100));
      BOOST_TEST(p.map(pool_tasks::sqr, range_of(100), 1) == squares(100));
      BOOST_TEST(p.map(pool_tasks::sqr, range_of(100), 1000) == squares(100));
      BOOST_TEST(p.map_async(pool_tasks::sqr, range_of(10)).get() == squares(10));
      BOOST_TEST(p.map_async(pool_tasks::sqr, std::vector<int>{}, 1).get(60s).empty());
      // An input without a size (Python's map makes a list of it).
      auto odd = std::views::iota(0, 50) | std::views::filter([](int i) { return i % 2; });
      std::vector<int> want;
      for (int i : odd) want.push_back(i * i);
      BOOST_TEST(p.map(pool_tasks::sqr, odd) == want);
      // A void function.
      BOOST_TEST(p.map(pool_tasks::nothing_one, range_of(5)).size() == 5u);
    }
  }
}

// test_starmap, test_starmap_async.
BOOST_AUTO_TEST_CASE(starmap) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 4, .method = m});
      auto tuples = [](int n) {
        std::vector<std::tuple<int, int>> t;
        for (int i = 0; i < n; ++i) t.emplace_back(i, n - 1 - i);
        return t;
      };
      auto products = [](int n) {
        std::vector<int> v;
        for (int i = 0; i < n; ++i) v.push_back(i * (n - 1 - i));
        return v;
      };
      BOOST_TEST(p.starmap(pool_tasks::mul, tuples(10)) == products(10));
      BOOST_TEST(p.starmap(pool_tasks::mul, tuples(100), 20) == products(100));
      BOOST_TEST(p.starmap_async(pool_tasks::mul, tuples(100)).get() == products(100));
      std::vector<std::pair<int, int>> pairs{{2, 3}, {4, 5}};
      BOOST_TEST(p.starmap(pool_tasks::mul, pairs) == (std::vector<int>{6, 20}));
    }
  }
}

// test_map_async_callbacks' error half, and what map does with a failing task: the first failed
// chunk's exception; the pool goes on.
BOOST_AUTO_TEST_CASE(map_with_a_failing_task) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 2, .method = m});
      for (std::size_t chunksize : {1u, 3u, 0u}) {
        try {
          p.map(pool_tasks::sqr_unless_7_or_13, range_of(20), chunksize);
          BOOST_ERROR("no remote_error");
        } catch (const coproc::remote_error& e) {
          BOOST_TEST(e.type_name() == "std::invalid_argument");
          BOOST_TEST(contains(e.message(), "unlucky"));
        }
        auto r = p.map_async(pool_tasks::sqr_unless_7_or_13, range_of(20), chunksize);
        r.wait();
        BOOST_TEST(!r.successful());
      }
      BOOST_TEST(p.map(pool_tasks::sqr, range_of(10)) == squares(10));
    }
  }
}

// test_map_handle_iterable_exception: the input's own exception comes out of map, again and
// again (re-entrant), and the pool goes on.
BOOST_AUTO_TEST_CASE(map_handle_iterable_exception) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 2, .method = m});
      BOOST_CHECK_THROW(p.map(pool_tasks::sqr, throwing_input(1, -1), 1), say_when_error);
      BOOST_CHECK_THROW(p.map(pool_tasks::sqr, throwing_input(1, -1), 1), say_when_error);
      BOOST_CHECK_THROW(p.map(pool_tasks::sqr, throwing_input(10, 3), 1), say_when_error);
      BOOST_CHECK_THROW(p.map(pool_tasks::sqr, throwing_input(10, 3), 4), say_when_error);
      BOOST_TEST(p.map(pool_tasks::sqr, range_of(10)) == squares(10));
    }
  }
}

// test_imap.
BOOST_AUTO_TEST_CASE(imap) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 4, .method = m});
      std::vector<int> got;
      for (int v : p.imap(pool_tasks::sqr, range_of(10))) got.push_back(v);
      BOOST_TEST(got == squares(10));

      auto it = p.imap(pool_tasks::sqr, range_of(10));
      for (int i = 0; i < 10; ++i) BOOST_TEST(it.next() == std::optional<int>(i * i));
      BOOST_TEST(!it.next().has_value());  // StopIteration
      BOOST_TEST(!it.next().has_value());  // and again

      auto big = p.imap(pool_tasks::sqr, range_of(1000), 100);
      for (int i = 0; i < 1000; ++i) BOOST_TEST(big.next() == std::optional<int>(i * i));
      BOOST_TEST(!big.next().has_value());

      // A lazy input, read as results are taken.
      got.clear();
      for (int v : p.imap(pool_tasks::sqr, std::views::iota(0, 300), 7)) got.push_back(v);
      BOOST_TEST(got == squares(300));
    }
  }
}

// What coproc's imap promises where Python's imap raises a task's exception: a failed chunk
// raises once, in its place, and the results after it still come (chunksize 1 and more).
BOOST_AUTO_TEST_CASE(imap_with_failing_items) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 3, .method = m});
      {
        auto it = p.imap(pool_tasks::sqr_unless_7_or_13, range_of(20), 1);
        std::vector<std::string> errors;
        const auto got = drain(it, &errors);
        std::vector<int> want;
        for (int i = 0; i < 20; ++i) want.push_back(i == 7 || i == 13 ? -1 : i * i);
        BOOST_TEST(got == want);
        BOOST_TEST((errors == std::vector<std::string>{"unlucky 7", "unlucky 13"}));
      }
      {
        // Chunks [0,4) [4,8) [8,12) [12,16) [16,20): the second and the fourth fail.
        auto it = p.imap(pool_tasks::sqr_unless_7_or_13, range_of(20), 4);
        const auto got = drain(it);
        std::vector<int> want{0, 1, 4, 9, -1, 64, 81, 100, 121, -1, 256, 289, 324, 361};
        BOOST_TEST(got == want);
      }
      {
        // The range-for form throws in place too; the loop can go on afterwards with next().
        auto it = p.imap(pool_tasks::sqr_unless_7_or_13, range_of(10), 2);
        std::vector<int> got;
        try {
          for (int v : it) got.push_back(v);
          BOOST_ERROR("no remote_error");
        } catch (const coproc::remote_error&) {
        }
        BOOST_TEST(got == (std::vector<int>{0, 1, 4, 9, 16, 25}));
        BOOST_TEST(drain(it) == (std::vector<int>{64, 81}));
      }
    }
  }
}

// test_imap_unordered (and with a failing task: each failed chunk raises once).
BOOST_AUTO_TEST_CASE(imap_unordered) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 4, .method = m});
      for (std::size_t chunksize : {1u, 53u}) {
        std::vector<int> got;
        for (int v : p.imap_unordered(pool_tasks::sqr, range_of(1000), chunksize)) got.push_back(v);
        std::sort(got.begin(), got.end());
        BOOST_TEST(got == squares(1000));
      }
      for (std::size_t chunksize : {1u, 4u}) {
        auto it = p.imap_unordered(pool_tasks::sqr_unless_7_or_13, range_of(20), chunksize);
        auto got = drain(it);
        BOOST_TEST(std::count(got.begin(), got.end(), -1) == 2);
        std::erase(got, -1);
        std::sort(got.begin(), got.end());
        std::vector<int> want;
        for (int i = 0; i < 20; ++i)
          if (chunksize == 1 ? (i != 7 && i != 13) : (i / 4 != 1 && i / 4 != 3)) want.push_back(i * i);
        BOOST_TEST(got == want);
      }
    }
  }
}

// test_imap_handle_iterable_exception, test_imap_unordered_handle_iterable_exception: the
// input's own exception comes out of the iterator (re-entrant), and the pool goes on.
BOOST_AUTO_TEST_CASE(imap_handle_iterable_exception) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 2, .method = m});
      for (bool ordered : {true, false}) {
        BOOST_TEST_CONTEXT((ordered ? "imap" : "imap_unordered")) {
          auto first = [&](int total, int when, std::size_t chunksize) {
            return ordered ? p.imap(pool_tasks::sqr, throwing_input(total, when), chunksize)
                           : p.imap_unordered(pool_tasks::sqr, throwing_input(total, when), chunksize);
          };
          {
            auto it = first(1, -1, 1);
            BOOST_CHECK_THROW(it.next(), say_when_error);
          }
          {
            auto it = first(1, -1, 1);  // again
            BOOST_CHECK_THROW(it.next(), say_when_error);
          }
          // Python: the results of the chunks before the failing one, then the exception, then
          // the end.
          for (auto [total, when, chunksize] : {std::tuple{10, 3, 1u}, std::tuple{20, 7, 2u},
                                               std::tuple{20, 7, 4u}}) {
            BOOST_TEST_CONTEXT("total " << total << " when " << when << " chunksize " << chunksize) {
              auto it = first(total, when, chunksize);
              std::vector<int> got;
              bool raised = false;
              for (int guard = 0; guard < 100; ++guard) {
                try {
                  auto v = it.next(60s);
                  if (!v) break;
                  got.push_back(*v);
                } catch (const say_when_error&) {
                  raised = true;
                  break;
                }
              }
              BOOST_TEST(raised);
              std::sort(got.begin(), got.end());
              const int full_chunks = when / static_cast<int>(chunksize) * static_cast<int>(chunksize);
              BOOST_TEST(got == squares(full_chunks));
              BOOST_TEST(!it.next().has_value());
            }
          }
        }
      }
      BOOST_TEST(p.map(pool_tasks::sqr, range_of(10)) == squares(10));
    }
  }
}

// test_make_pool.
BOOST_AUTO_TEST_CASE(make_pool) {
  for (int bad : {-1, 0}) {
    try {
      coproc::pool p({.processes = bad});
      BOOST_ERROR("no exception for " << bad);
    } catch (const std::invalid_argument& e) {
      BOOST_TEST(std::string(e.what()) == "Number of processes must be at least 1");
    }
  }
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 3, .method = m});
      BOOST_TEST(p.size() == 3);
      p.close();
      p.join();
    }
  }
  coproc::pool defaults;
  BOOST_TEST(defaults.size() == coproc::cpu_count());
  BOOST_TEST(defaults.window() == 2u * static_cast<std::size_t>(coproc::cpu_count()));
}

// test_terminate: terminate with 10,000 queued tasks; join does not wait for them.
BOOST_AUTO_TEST_CASE(terminate) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 4, .method = m});
      std::vector<int> naps(10000, 100);
      auto result = p.map_async(pool_tasks::sleep_ms, naps, 1);
      p.terminate();
      p.join();  // the test's time limit is the guard
      try {
        result.get();
        BOOST_ERROR("the map succeeded");
      } catch (const coproc::process_error& e) {
        BOOST_TEST(contains(e.what(), "terminated"), e.what());
      }
    }
  }
}

// test_empty_iterable.
BOOST_AUTO_TEST_CASE(empty_iterable) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 1, .method = m});
      const std::vector<int> none;
      BOOST_TEST(p.map(pool_tasks::sqr, none).empty());
      BOOST_TEST(p.starmap(pool_tasks::mul, std::vector<std::tuple<int, int>>{}).empty());
      int n = 0;
      for ([[maybe_unused]] int v : p.imap(pool_tasks::sqr, none)) ++n;
      for ([[maybe_unused]] int v : p.imap_unordered(pool_tasks::sqr, none)) ++n;
      BOOST_TEST(n == 0);
      BOOST_TEST(p.map_async(pool_tasks::sqr, none).get().empty());
      p.close();
      p.join();
    }
  }
}

// test_context: Python's `with Pool(2) as p:` is a scope here; leaving it terminates the pool,
// and (test_map_no_failfast) a map whose task failed still lets close/join end.
BOOST_AUTO_TEST_CASE(context) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      std::optional<coproc::async_result<std::vector<int>>> r;
      {
        coproc::pool p({.processes = 2, .method = m});
        r.emplace(p.map_async(pool_tasks::sqr, range_of(10)));
        BOOST_TEST(r->get() == squares(10));
      }
      BOOST_TEST(r->get() == squares(10));  // a finished result outlives its pool
      {
        coproc::pool p({.processes = 2, .method = m});
        BOOST_CHECK_THROW(p.map(pool_tasks::throws_runtime, range_of(2)), coproc::remote_error);
        p.close();
        p.join();
        coproc_test::expect_misuse([&] { (void)p.map_async(pool_tasks::sqr, range_of(3)); },
                                   "Pool not running");
      }
    }
  }
}

// test_release_task_refs, adapted: the input and what it holds are released once an imap has
// read it to its end (a shared_ptr owned by the input range).
BOOST_AUTO_TEST_CASE(release_task_refs) {
  coproc::pool p({.processes = 2, .method = coproc::start_method::fork});
  auto token = std::make_shared<int>(0);
  std::weak_ptr<int> watch = token;
  {
    auto it = p.imap(pool_tasks::identity,
                     std::views::iota(0, 20) | std::views::transform([t = std::move(token)](int i) {
                       return i + *t;
                     }),
                     3);
    int n = 0;
    while (it.next()) ++n;
    BOOST_TEST(n == 20);
    BOOST_TEST(watch.expired());  // released at the end of the input, before the iterator goes
  }
}

BOOST_AUTO_TEST_SUITE_END()
