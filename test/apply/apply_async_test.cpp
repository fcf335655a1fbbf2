// apply_async(f, args...): Python's Pool.apply_async(...).get(timeout), with a child per call.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace asio = boost::asio;
using coproc_test::test_pipe;
using coproc_test::wait_for_release;

namespace {
int twice(int n) { return 2 * n; }
}  // namespace

namespace apply_exec {
// Registered: what spawn and forkserver children find by name.
std::map<std::string, int> count_words(const std::vector<std::string>& words) {
  std::map<std::string, int> m;
  for (const auto& w : words) ++m[w];
  return m;
}
COPROC_TARGET(count_words);
int fail_with(std::string what) { throw std::invalid_argument(what); }
COPROC_TARGET(fail_with);
void die_by(int sig) { ::kill(::getpid(), sig); }
COPROC_TARGET(die_by);
pid_t my_pid() { return ::getpid(); }
COPROC_TARGET(my_pid);
int unregistered(int n) { return n; }
}  // namespace apply_exec

BOOST_AUTO_TEST_SUITE(apply_async_results)

BOOST_AUTO_TEST_CASE(spawn_and_forkserver_call_registered_functions) {
  for (auto m : {coproc::start_method::spawn, coproc::start_method::forkserver}) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      coproc_test::start_method_scope restore;
      coproc::set_start_method(m);
      auto counts = coproc::apply_async(apply_exec::count_words,
                                        std::vector<std::string>{"a", "b", "a"});
      const auto got = counts.get();
      BOOST_TEST(got.at("a") == 2);
      BOOST_TEST(got.at("b") == 1);
      BOOST_TEST(coproc::apply_async(apply_exec::my_pid).get() != ::getpid());
      try {
        coproc::apply_async(apply_exec::fail_with, "bad").get();
        BOOST_ERROR("no remote_error");
      } catch (const coproc::remote_error& e) {
        BOOST_TEST(e.type_name() == "std::invalid_argument");
        BOOST_TEST(e.message() == "bad");
      }
      try {
        coproc::apply_async(apply_exec::die_by, SIGKILL).get();
        BOOST_ERROR("no process_error");
      } catch (const coproc::remote_error&) {
        BOOST_ERROR("a death is not a remote_error");
      } catch (const coproc::process_error& e) {
        BOOST_TEST(std::string(e.what()).find("-9") != std::string::npos);
      }
      coproc_test::expect_misuse([] { (void)coproc::apply_async(apply_exec::unregistered, 1); },
                                 "COPROC_TARGET");
      coproc_test::expect_misuse([] { (void)coproc::apply_async([] { return 1; }); },
                                 "COPROC_TARGET");
      BOOST_TEST(coproc::active_children().empty());
    }
  }
}

BOOST_AUTO_TEST_CASE(the_result_comes_back_as_it_was) {
  BOOST_TEST(coproc::apply_async(twice, 21).get() == 42);
  auto words = coproc::apply_async([](std::string s) { return s + " world"; }, std::string("hello"));
  BOOST_TEST(words.get() == "hello world");
  BOOST_TEST(words.get() == "hello world");  // repeatable
  auto counts = coproc::apply_async([] {
    return std::map<std::string, std::vector<int>>{{"a", {1, 2}}, {"b", {}}};
  });
  const auto m = counts.get();
  BOOST_TEST(m.size() == 2u);
  BOOST_TEST((m.at("a") == std::vector<int>{1, 2}));
  BOOST_TEST(counts.successful());
}

BOOST_AUTO_TEST_CASE(a_function_without_a_result) {
  test_pipe side;
  auto r = coproc::apply_async([w = side.write_fd()] { (void)!::write(w, "x", 1); });
  r.get();
  BOOST_TEST(side.read_all() == "x");
  BOOST_TEST(r.successful());
}

BOOST_AUTO_TEST_CASE(an_exception_arrives_as_remote_error) {
  auto r = coproc::apply_async([]() -> int { throw std::runtime_error("boom"); });
  try {
    (void)r.get();
    BOOST_FAIL("get() returned");
  } catch (const coproc::remote_error& e) {
    BOOST_TEST(e.type_name() == "std::runtime_error");
    BOOST_TEST(e.message() == "boom");
    BOOST_TEST(std::string(e.what()) == "std::runtime_error: boom");
  }
  BOOST_TEST(r.ready());
  BOOST_TEST(!r.successful());
  BOOST_CHECK_THROW((void)r.get(), coproc::remote_error);  // repeatable
}

BOOST_AUTO_TEST_CASE(a_child_that_dies_arrives_as_process_error_naming_its_exit_code) {
  auto killed = coproc::apply_async([]() -> int {
    ::raise(SIGKILL);
    return 0;
  });
  try {
    (void)killed.get();
    BOOST_FAIL("get() returned");
  } catch (const coproc::remote_error&) {
    BOOST_FAIL("a death is not a remote exception");
  } catch (const coproc::process_error& e) {
    BOOST_TEST(std::string(e.what()) == "child process exited with exit code -9");
  }
  auto exited = coproc::apply_async([]() -> int { coproc::exit(3); });
  BOOST_CHECK_EXCEPTION((void)exited.get(), coproc::process_error, [](const auto& e) {
    return std::string(e.what()) == "child process exited with exit code 3";
  });
}

BOOST_AUTO_TEST_CASE(get_with_a_timeout_leaves_the_child_running) {
  test_pipe release;
  auto r = coproc::apply_async(
      [&release] {
        wait_for_release(release);
        return 7;
      });
  BOOST_CHECK_THROW((void)r.get(50ms), coproc::timeout_error);
  BOOST_TEST(!r.ready());
  coproc_test::expect_misuse([&] { (void)r.successful(); }, "result is not ready");
  r.wait(0ms);
  BOOST_TEST(!r.ready());
  release.close_write();
  BOOST_TEST(r.get() == 7);
  BOOST_TEST(r.get(0ms) == 7);
}

BOOST_AUTO_TEST_CASE(threads_waiting_on_one_result_all_get_it) {
  test_pipe release;
  auto r = coproc::apply_async([&release] {
    wait_for_release(release);
    return 5;
  });
  std::vector<int> seen(4, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) threads.emplace_back([&, i] { seen[i] = r.get(); });
  release.close_write();
  for (auto& t : threads) t.join();
  for (int s : seen) BOOST_TEST(s == 5);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(apply_async_awaited)

BOOST_AUTO_TEST_CASE(async_get_in_a_coroutine) {
  asio::io_context io;
  int value = 0;
  boost::system::error_code failure;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        value = co_await coproc::apply_async(twice, 4).async_get(asio::use_awaitable);
        auto bad = coproc::apply_async([]() -> int { throw std::logic_error("no"); });
        auto [ec, v] = co_await bad.async_get(asio::as_tuple(asio::use_awaitable));
        failure = ec;
        BOOST_TEST(v == 0);
        BOOST_CHECK_THROW((void)bad.get(), coproc::remote_error);  // the details
      },
      asio::detached);
  io.run();
  BOOST_TEST(value == 8);
  BOOST_TEST((failure == make_error_code(coproc::errc::remote_error)));
}

BOOST_AUTO_TEST_CASE(async_get_with_a_timeout_and_with_cancellation) {
  test_pipe release;
  auto r = coproc::apply_async([&release] {
    wait_for_release(release);
    return 9;
  });
  // Plain callbacks: they complete on coproc's own I/O thread.
  std::promise<boost::system::error_code> timed, cancelled;
  r.async_get(20ms, [&](boost::system::error_code ec, int) { timed.set_value(ec); });
  asio::cancellation_signal signal;
  r.async_get(asio::bind_cancellation_slot(
      signal.slot(), [&](boost::system::error_code ec, int) { cancelled.set_value(ec); }));
  auto timed_f = timed.get_future();
  BOOST_TEST_REQUIRE((timed_f.wait_for(30s) == std::future_status::ready));
  BOOST_TEST(timed_f.get() == asio::error::timed_out);
  signal.emit(asio::cancellation_type::terminal);
  auto cancelled_f = cancelled.get_future();
  BOOST_TEST_REQUIRE((cancelled_f.wait_for(30s) == std::future_status::ready));
  BOOST_TEST(cancelled_f.get() == asio::error::operation_aborted);
  release.close_write();
  BOOST_TEST(r.get() == 9);  // the child kept running
}

BOOST_AUTO_TEST_SUITE_END()
