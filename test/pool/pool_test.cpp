// coproc::pool: Python's multiprocessing.Pool (the _TestPool cases that need no pickling) and
// what coproc adds: a worker that dies fails only its task and is replaced, deadlines, bounded
// imap, awaitable twins. Every case runs under each start method.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;

namespace pool_tasks {
int sqr(int x) { return x * x; }
COPROC_TARGET(sqr);
int add(int a, int b) { return a + b; }
COPROC_TARGET(add);
int raise_value(int x) {
  if (x == 5) throw std::invalid_argument("five");
  return x;
}
COPROC_TARGET(raise_value);
int die_with(int sig) {
  ::kill(::getpid(), sig);
  return 0;
}
COPROC_TARGET(die_with);
int sleep_ms(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return ms;
}
COPROC_TARGET(sleep_ms);
pid_t worker_pid() { return ::getpid(); }
COPROC_TARGET(worker_pid);
double not_a_number(int) { return std::nan(""); }
COPROC_TARGET(not_a_number);
int calls = 0;
void count_call() { ++calls; }
COPROC_TARGET(count_call);
int calls_so_far() { return calls; }
COPROC_TARGET(calls_so_far);
}  // namespace pool_tasks

namespace {
const coproc::start_method all_methods[] = {coproc::start_method::fork, coproc::start_method::spawn,
                                            coproc::start_method::forkserver};
}

BOOST_AUTO_TEST_SUITE(pool_basics)

BOOST_AUTO_TEST_CASE(apply_map_imap_under_every_method) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 2, .method = m});
      BOOST_TEST(p.apply(pool_tasks::sqr, 5) == 25);
      BOOST_TEST(p.apply_async(pool_tasks::add, 2, 3).get() == 5);
      std::vector<int> in;
      for (int i = 0; i < 100; ++i) in.push_back(i);
      auto out = p.map(pool_tasks::sqr, in);
      BOOST_TEST(out.size() == 100u);
      for (int i = 0; i < 100; ++i) BOOST_TEST(out[i] == i * i);
      std::vector<int> got;
      for (int v : p.imap(pool_tasks::sqr, in)) got.push_back(v);
      BOOST_TEST(got == out);
      p.close();
      p.join();
    }
  }
}

BOOST_AUTO_TEST_CASE(a_dead_worker_fails_its_task_and_is_replaced) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 1, .method = m});
      const pid_t first = p.apply(pool_tasks::worker_pid);
      try {
        p.apply(pool_tasks::die_with, SIGKILL);
        BOOST_FAIL("no exception");
      } catch (const coproc::process_error& e) {
        BOOST_TEST(std::string(e.what()).find("exit code -9") != std::string::npos, e.what());
      }
      const pid_t second = p.apply(pool_tasks::worker_pid);
      BOOST_TEST(first != second);
      BOOST_TEST(p.apply(pool_tasks::sqr, 3) == 9);
    }
  }
}

BOOST_AUTO_TEST_CASE(a_task_past_its_deadline_fails_and_its_worker_is_replaced) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 1, .method = m, .task_timeout = 200ms});
      BOOST_CHECK_THROW(p.apply(pool_tasks::sleep_ms, 100000), coproc::timeout_error);
      auto r = p.apply_async(pool_tasks::sleep_ms, 100000);
      BOOST_CHECK_THROW(r.get(), coproc::timeout_error);
      BOOST_TEST(p.apply(pool_tasks::sqr, 4) == 16);
      // A task's own deadline replaces the pool's.
      BOOST_TEST(p.apply_within(10s, pool_tasks::sleep_ms, 300) == 300);
      BOOST_CHECK_THROW(p.apply_async_within(100ms, pool_tasks::sleep_ms, 100000).get(),
                        coproc::timeout_error);
    }
  }
}

// A task whose arguments or result do not convert fails alone, with the typed messages' error:
// an argument the worker cannot read as the parameter, a result JSON cannot say; an argument
// that cannot even be sent throws from the call, and nothing is sent.
BOOST_AUTO_TEST_CASE(a_task_whose_values_do_not_convert_fails_alone) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 1, .method = m});
      const pid_t worker = p.apply(pool_tasks::worker_pid);
      try {
        p.apply(pool_tasks::sqr, std::string("seven"));
        BOOST_FAIL("no exception");
      } catch (const coproc::remote_error& e) {
        BOOST_TEST(e.type_name() == "coproc::message_error", e.what());
        BOOST_TEST(e.message().find("int") != std::string::npos, e.what());
      }
      try {
        p.apply(pool_tasks::not_a_number, 1);
        BOOST_FAIL("no exception");
      } catch (const coproc::remote_error& e) {
        BOOST_TEST(e.message().find("NaN") != std::string::npos, e.what());
      }
      BOOST_CHECK_THROW(p.map(pool_tasks::not_a_number, std::vector<int>{1, 2}), coproc::remote_error);
      BOOST_CHECK_THROW(p.apply(pool_tasks::add, std::nan(""), 1), coproc::message_error);
      // None of it cost the worker its life.
      BOOST_TEST(p.apply(pool_tasks::worker_pid) == worker);
      BOOST_TEST(p.apply(pool_tasks::sqr, 7) == 49);
    }
  }
}

// A function returning void: apply returns nothing, async_apply completes with the error code
// alone (its signature must not name void(error_code, void)).
BOOST_AUTO_TEST_CASE(void_functions_apply_and_async_apply) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc::pool p({.processes = 1, .method = m});
      p.apply(pool_tasks::count_call);
      p.apply_async(pool_tasks::count_call).get();
      boost::asio::io_context io;
      std::optional<boost::system::error_code> got;
      p.async_apply(pool_tasks::count_call, std::tuple<>{},
                    boost::asio::bind_executor(io, [&](boost::system::error_code ec) { got = ec; }));
      io.run();
      BOOST_REQUIRE(got.has_value());
      BOOST_TEST(!*got);
      BOOST_TEST(p.apply(pool_tasks::calls_so_far) == 3);  // one worker ran all three
      const auto v = p.map(pool_tasks::sqr, std::vector<int>{});
      BOOST_TEST(v.empty());
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
