// Issue 7, regression: what async_join costs in descriptors, and what it does when there are
// none left.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <boost/test/unit_test.hpp>

#include "../async/async_support.hpp"

using namespace async_test;

BOOST_AUTO_TEST_SUITE(issue_7)

// Defect (a): every async_join registers the child's sentinel with the reactor of its I/O
// executor; epoll refuses the same descriptor twice, so each further join of the same child
// on the same io_context registered a dup() of the sentinel: 1,000 pending joiners of one
// child cost about 1,000 descriptors (and EMFILE long before the limit of a real server).
// Expected: 1,000 pending joins of one child on one io_context raise the descriptor count by
// a small constant at most (4: the reactor's own epoll, eventfd and timerfd included), and all
// 1,000 complete with the child's exit code once it is released.
BOOST_AUTO_TEST_CASE(many_joiners_of_one_child_on_one_io_context_cost_no_descriptor_each) {
  constexpr int joiners = 1000;
  // Room for the old behaviour too: it must fail on the count, not on EMFILE.
  const coproc_test::descriptor_limit_raised descriptors;
  test_pipe release;
  auto p = released_child(release, 5);
  p.start();

  asio::io_context ioc;
  const int before = coproc_test::fd_count();
  std::vector<join_result> results(joiners);
  for (auto& r : results) p.async_join(asio::bind_executor(ioc, record{&r}));
  const int after_initiation = coproc_test::fd_count();
  ioc.poll();  // whatever the initiations queued runs now; the joins stay pending
  const int while_pending = coproc_test::fd_count();
  const int most = std::max(after_initiation, while_pending);
  BOOST_TEST(most - before <= 4,
             "1,000 pending joins of one child cost " << most - before << " descriptors");
  const bool all_pending = std::all_of(results.begin(), results.end(),
                                       [](const join_result& r) { return r.calls == 0; });
  BOOST_TEST_REQUIRE(all_pending, "a join completed before the child was released");

  release.close_write();
  run_guarded(ioc);
  int good = 0;
  for (const auto& r : results)
    if (r.calls == 1 && !r.ec && r.code == 5) ++good;
  BOOST_TEST(good == joiners);
  BOOST_TEST(p.join() == 5);
}

// Defect (b): an async_join that cannot get its descriptors (EMFILE: the reactor of a fresh
// io_context cannot even be created, or the dup of the sentinel fails) threw from the
// initiating call. Under use_awaitable the initiation runs inside the coroutine machinery, so
// the exception escaped io_context::run() and the coroutine was destroyed without ever being
// resumed: its try/catch around the co_await never ran, and its owner saw run() throw.
// Expected: run() returns normally, the coroutine is resumed with the error (EMFILE) and
// catches it, its co_spawn completion runs; with descriptors free again, a new async_join (on
// a new io_context) completes with the child's exit code.
BOOST_AUTO_TEST_CASE(descriptor_exhaustion_resumes_the_awaiting_coroutine_with_emfile) {
  test_pipe release;
  auto p = released_child(release, 6);
  p.start();
  {
    // The same path once with descriptors to spare, so that the sanitizers' type caches (the
    // vptr check needs a descriptor on a cache miss) have seen coproc's operation types.
    test_pipe warm_release;
    auto warm = released_child(warm_release, 0);
    warm.start();
    warm_release.close_write();
    BOOST_TEST_REQUIRE(awaited_join(warm).code == 0);
  }

  asio::io_context ioc;  // fresh: no I/O object used on it yet, so it has no reactor yet
  bool resumed = false, caught = false, completed = false, run_threw = false;
  boost::system::error_code caught_code;
  std::exception_ptr spawn_error;
  std::string run_what;
  int fill_errno = 0;
  std::size_t hogged = 0;
  {
    coproc_test::rlimit_scope limit(RLIMIT_NOFILE);
    limit.set_soft(static_cast<rlim_t>(coproc_test::fd_count() + 64));
    coproc_test::descriptor_hogs hogs;
    fill_errno = hogs.fill();  // not a single descriptor left
    hogged = hogs.size();
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
          try {
            co_await p.async_join(asio::use_awaitable);
          } catch (const boost::system::system_error& e) {
            caught = true;
            caught_code = e.code();
          }
          resumed = true;
        },
        [&](std::exception_ptr e) {
          completed = true;
          spawn_error = e;
        });
    try {
      ioc.run_for(60s);  // a hang guard: nothing here waits for the child
    } catch (const std::exception& e) {
      run_threw = true;
      run_what = e.what();
    }
  }  // descriptors and the limit are back

  BOOST_TEST_REQUIRE(fill_errno == EMFILE, "the descriptor table was not filled");
  BOOST_TEST(hogged > 0u);
  BOOST_TEST(!run_threw, "io_context::run() threw: " << run_what);
  BOOST_TEST(resumed, "the coroutine was never resumed");
  BOOST_TEST(caught, "the coroutine did not see an error");
  BOOST_TEST((caught_code.value() == EMFILE || caught_code.value() == ENFILE),
             "error: " << caught_code.message());
  BOOST_TEST(completed, "co_spawn's completion handler never ran");
  BOOST_TEST(!spawn_error);
  BOOST_TEST(ioc.stopped());

  // With descriptors again, the same child is still joinable asynchronously.
  release.close_write();
  const join_result r = awaited_join(p);  // on a new io_context
  BOOST_TEST(r.calls == 1);
  BOOST_TEST(!r.ec);
  BOOST_TEST(r.code == 6);
}

BOOST_AUTO_TEST_SUITE_END()
