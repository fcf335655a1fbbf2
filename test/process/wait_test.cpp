// coproc::wait and coproc::async_wait (Python's connection.wait, TestWait's cases).
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
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
using coproc_test::conn_pipe;
using coproc_test::test_pipe;
using coproc_test::targets::released;
using coproc_test::targets::released_exit;
namespace asio = boost::asio;

namespace {
int as_fd(const coproc::waitable& w) { return std::get<int>(w); }
coproc::process* as_process(const coproc::waitable& w) { return std::get<coproc::process*>(w); }
}  // namespace

BOOST_AUTO_TEST_SUITE(wait_sync)

BOOST_AUTO_TEST_CASE(test_neg_timeout_polls_once) {
  test_pipe a;
  const auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST(coproc::wait({a.read_fd()}, -1s).empty());
  BOOST_TEST(coproc::wait({a.read_fd()}, 0s).empty());
  BOOST_TEST((std::chrono::steady_clock::now() - t0 < 1s));
}

BOOST_AUTO_TEST_CASE(test_wait_timeout_waits_at_least_the_timeout) {
  test_pipe a, b;
  const auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST(coproc::wait({a.read_fd(), b.read_fd()}, 200ms).empty());
  BOOST_TEST((std::chrono::steady_clock::now() - t0 >= 200ms));
  b.write("x");
  auto ready = coproc::wait({a.read_fd(), b.read_fd()}, 5s);
  BOOST_REQUIRE(ready.size() == 1u);
  BOOST_TEST(as_fd(ready[0]) == b.read_fd());
}

BOOST_AUTO_TEST_CASE(test_wait_integer_mixes_sentinels_and_descriptors) {
  test_pipe a, b;
  conn_pipe release;
  coproc::process p(released, release.reader());
  p.start();
  BOOST_TEST(coproc::wait({a.read_fd(), &p, b.read_fd()}, 0s).empty());
  release.close_write();
  auto ready = coproc::wait({a.read_fd(), &p, b.read_fd()}, 30s);
  BOOST_REQUIRE(ready.size() == 1u);
  BOOST_TEST(as_process(ready[0]) == &p);
  // Nothing was reaped by wait: the object still reports the end itself.
  a.write("x");
  b.write("y");
  ready = coproc::wait({a.read_fd(), &p, b.read_fd()});
  BOOST_REQUIRE(ready.size() == 3u);  // in the order given
  BOOST_TEST(as_fd(ready[0]) == a.read_fd());
  BOOST_TEST(as_process(ready[1]) == &p);
  BOOST_TEST(as_fd(ready[2]) == b.read_fd());
  BOOST_TEST(p.join() == 0);
}

BOOST_AUTO_TEST_CASE(first_of_several_children) {
  // Neither child inherits the other's release pipe (coproc's connections are handed only to
  // the child whose target takes them), so each one waits for its own only.
  conn_pipe r1, r2;
  coproc::process slow(released, r1.reader());
  coproc::process fast(released_exit, r2.reader(), 2);
  slow.start();
  fast.start();
  r2.close_write();
  auto ready = coproc::wait({&slow, &fast}, 30s);
  BOOST_REQUIRE(ready.size() == 1u);
  BOOST_TEST(as_process(ready[0]) == &fast);
  BOOST_TEST(fast.join() == 2);
  BOOST_TEST(slow.is_alive());
  r1.close_write();
  BOOST_TEST(slow.join() == 0);
}

BOOST_AUTO_TEST_CASE(a_descriptor_that_is_not_open_counts_as_ready) {
  // As poll(2) reports POLLNVAL and Python's selectors turn that into "ready".
  const int closed_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ::close(closed_fd);
  auto ready = coproc::wait({closed_fd}, 0s);
  BOOST_TEST(ready.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_process_that_is_not_started_is_misuse) {
  coproc::process p;
  BOOST_CHECK_THROW(coproc::wait({&p}, 0s), std::logic_error);
  BOOST_CHECK_THROW(coproc::async_wait({&p}, [](auto, auto) {}), std::logic_error);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(wait_async)

BOOST_AUTO_TEST_CASE(completes_with_the_first_child_to_end) {
  conn_pipe r1, r2;
  coproc::process slow(released, r1.reader());
  coproc::process fast(released, r2.reader());
  slow.start();
  fast.start();
  // A plain callback has no executor: it completes on coproc's own I/O thread.
  auto result = std::make_shared<
      std::promise<std::pair<boost::system::error_code, std::vector<coproc::waitable>>>>();
  auto completions = std::make_shared<std::atomic<int>>(0);
  auto future = result->get_future();
  coproc::async_wait({&slow, &fast}, [result, completions](boost::system::error_code ec, auto ready) {
    ++*completions;
    result->set_value({ec, std::move(ready)});
  });
  BOOST_TEST(completions->load() == 0);  // never inside the initiating call
  r2.close_write();
  BOOST_REQUIRE(future.wait_for(30s) == std::future_status::ready);
  auto [ec, got] = future.get();
  BOOST_TEST(!ec);
  BOOST_TEST(completions->load() == 1);
  BOOST_REQUIRE(got.size() == 1u);
  BOOST_TEST(as_process(got[0]) == &fast);
  r1.close_write();
  slow.join();
  fast.join();
}

BOOST_AUTO_TEST_CASE(in_a_coroutine_with_timeout) {
  asio::io_context io;
  test_pipe a;
  conn_pipe release;
  coproc::process p(released, release.reader());
  p.start();
  std::vector<std::size_t> sizes;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        // GCC 12 miscompiles braced temporaries inside a co_await expression ("array used as
        // initializer"): the objects go in a named local first.
        const std::vector<coproc::waitable> objects{a.read_fd(), &p};
        auto first = co_await coproc::async_wait(objects, 50ms, asio::use_awaitable);
        sizes.push_back(first.size());
        release.close_write();
        auto second = co_await coproc::async_wait(objects, asio::use_awaitable);
        sizes.push_back(second.size());
        if (second.size() == 1) sizes.push_back(as_process(second[0]) == &p ? 1 : 0);
      },
      asio::detached);
  io.run();
  BOOST_TEST(sizes == (std::vector<std::size_t>{0, 1, 1}), boost::test_tools::per_element());
  BOOST_TEST(p.join() == 0);
}

BOOST_AUTO_TEST_CASE(cancellation_completes_once_with_operation_aborted) {
  for (auto type : {asio::cancellation_type::terminal, asio::cancellation_type::partial,
                    asio::cancellation_type::total}) {
    asio::io_context io;
    test_pipe a;
    asio::cancellation_signal signal;
    int completions = 0;
    boost::system::error_code got;
    coproc::async_wait({a.read_fd()},
                       asio::bind_cancellation_slot(
                           signal.slot(), asio::bind_executor(io, [&](auto ec, auto ready) {
                             ++completions;
                             got = ec;
                             BOOST_TEST(ready.empty());
                           })));
    io.poll();
    BOOST_TEST(completions == 0);
    signal.emit(type);
    io.run();
    BOOST_TEST(completions == 1);
    BOOST_TEST(got == asio::error::operation_aborted);
  }
}

BOOST_AUTO_TEST_CASE(zero_timeout_polls_without_completing_inline) {
  asio::io_context io;
  test_pipe a;
  a.write("x");
  int completions = 0;
  std::size_t n = 0;
  coproc::async_wait({a.read_fd()}, 0s, asio::bind_executor(io, [&](auto ec, auto ready) {
                       BOOST_TEST(!ec);
                       n = ready.size();
                       ++completions;
                     }));
  BOOST_TEST(completions == 0);
  io.run();
  BOOST_TEST(completions == 1);
  BOOST_TEST(n == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
