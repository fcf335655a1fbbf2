// Per-operation cancellation of async_join: terminal, partial and total, through
// bind_cancellation_slot + cancellation_signal::emit, counted by completions. A join has no
// side effects, so each type stops it: exactly one completion, with operation_aborted; the
// child is not signalled, and a later join still works.
#include <array>
#include <string>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/test/unit_test.hpp>

#include "async_support.hpp"

using namespace async_test;

namespace {

struct named_type {
  asio::cancellation_type type;
  const char* name;
};

constexpr std::array<named_type, 3> all_types = {{
    {asio::cancellation_type::terminal, "terminal"},
    {asio::cancellation_type::partial, "partial"},
    {asio::cancellation_type::total, "total"},
}};

// A coroutine that lets every type of cancellation through (co_spawn passes only terminal by
// default) and records its join.
asio::awaitable<void> cancellable_join(coproc::process& p, join_result& out) {
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  co_await join_into(p, out);
}

asio::awaitable<void> cancellable_timed_join(coproc::process& p, join_result& out) {
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  co_await timed_join_into(p, 600'000ms, out);
}

// After a cancelled join: the child was not signalled (it still runs, and ends with its own
// code once released), and a new join works.
void expect_child_untouched(asio::io_context& ioc, coproc::process& p, conn_pipe& release, int code) {
  BOOST_TEST(still_running(*p.pid()));  // the cancellation did not wait for the child's end
  join_result later;
  p.async_join(asio::bind_executor(ioc, record{&later}));
  ioc.restart();
  ioc.poll();
  BOOST_TEST(later.calls == 0);
  release.close_write();
  run_guarded(ioc);
  BOOST_TEST(later.calls == 1);
  BOOST_TEST(later.code == code);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(async_join_cancellation)

BOOST_AUTO_TEST_CASE(each_type_cancels_a_callback_join_once) {
  for (const auto& [type, name] : all_types) {
    BOOST_TEST_CONTEXT("cancellation " << name) {
      conn_pipe release;
      auto p = released_child(release, 31);
      p.start();
      asio::io_context ioc;
      asio::cancellation_signal signal;
      join_result r;
      p.async_join(asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ioc, record{&r})));
      ioc.poll();
      BOOST_TEST(r.calls == 0);
      asio::post(ioc, [&, t = type] { signal.emit(t); });
      run_guarded(ioc);  // out of work: the wait on the sentinel was withdrawn
      BOOST_TEST(r.calls == 1);
      BOOST_TEST(r.ec == asio::error::operation_aborted);
      expect_child_untouched(ioc, p, release, 31);
      BOOST_TEST(r.calls == 1);  // still once, after the child's exit
      signal.emit(type);         // a late emit reaches nothing
      ioc.restart();
      ioc.poll();
      BOOST_TEST(r.calls == 1);
    }
  }
}

BOOST_AUTO_TEST_CASE(each_type_cancels_a_timed_join_once) {
  for (const auto& [type, name] : all_types) {
    BOOST_TEST_CONTEXT("cancellation " << name) {
      conn_pipe release;
      auto p = released_child(release, 32);
      p.start();
      asio::io_context ioc;
      asio::cancellation_signal signal;
      join_result r;
      p.async_join(600s, asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ioc, record{&r})));
      ioc.poll();
      asio::post(ioc, [&, t = type] { signal.emit(t); });
      // Out of work: the sentinel's wait and the deadline were both withdrawn.
      run_guarded(ioc);
      BOOST_TEST(r.calls == 1);
      BOOST_TEST(r.ec == asio::error::operation_aborted);
      BOOST_TEST(!r.code);
      expect_child_untouched(ioc, p, release, 32);
      BOOST_TEST(r.calls == 1);
    }
  }
}

BOOST_AUTO_TEST_CASE(each_type_reaches_a_join_awaited_in_a_coroutine) {
  for (const auto& [type, name] : all_types) {
    BOOST_TEST_CONTEXT("cancellation " << name) {
      conn_pipe release;
      auto p = released_child(release, 33);
      p.start();
      asio::io_context ioc;
      asio::cancellation_signal plain_signal, timed_signal;
      join_result plain, timed;
      int plain_ends = 0, timed_ends = 0;
      asio::co_spawn(ioc, cancellable_join(p, plain),
                     asio::bind_cancellation_slot(plain_signal.slot(), [&](std::exception_ptr e) {
                       ++plain_ends;
                       if (e) std::rethrow_exception(e);
                     }));
      asio::co_spawn(ioc, cancellable_timed_join(p, timed),
                     asio::bind_cancellation_slot(timed_signal.slot(), [&](std::exception_ptr e) {
                       ++timed_ends;
                       if (e) std::rethrow_exception(e);
                     }));
      ioc.poll();  // both coroutines now wait in async_join
      BOOST_TEST(plain.calls + timed.calls == 0);
      asio::post(ioc, [&, t = type] {
        plain_signal.emit(t);
        timed_signal.emit(t);
      });
      run_guarded(ioc);
      BOOST_TEST(plain_ends == 1);
      BOOST_TEST(timed_ends == 1);
      BOOST_TEST(plain.calls == 1);
      BOOST_TEST(plain.ec == asio::error::operation_aborted);
      BOOST_TEST(timed.calls == 1);
      BOOST_TEST(timed.ec == asio::error::operation_aborted);
      expect_child_untouched(ioc, p, release, 33);
    }
  }
}

BOOST_AUTO_TEST_CASE(cancelling_one_join_leaves_the_others_waiting) {
  for (const auto& [type, name] : all_types) {
    BOOST_TEST_CONTEXT("cancellation " << name) {
      conn_pipe release;
      auto p = released_child(release, 34);
      p.start();
      asio::io_context ioc;
      asio::cancellation_signal signal, other_signal;
      join_result cancelled, other, timed;
      p.async_join(asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ioc, record{&cancelled})));
      p.async_join(asio::bind_cancellation_slot(other_signal.slot(), asio::bind_executor(ioc, record{&other})));
      p.async_join(600s, asio::bind_executor(ioc, record{&timed}));
      ioc.poll();
      asio::post(ioc, [&, t = type] { signal.emit(t); });
      run_until(ioc, [&] { return cancelled.calls > 0; });
      ioc.poll();
      BOOST_TEST(cancelled.ec == asio::error::operation_aborted);
      BOOST_TEST(other.calls + timed.calls == 0);
      release.close_write();
      run_until(ioc, [&] { return other.calls + timed.calls == 2; });
      BOOST_TEST(other.code == 34);
      BOOST_TEST(timed.code == 34);
      BOOST_TEST(cancelled.calls == 1);
    }
  }
}

BOOST_AUTO_TEST_CASE(an_emit_after_completion_reaches_nothing) {
  for (const auto& [type, name] : all_types) {
    BOOST_TEST_CONTEXT("cancellation " << name) {
      conn_pipe release;
      auto p = released_child(release, 35);
      p.start();
      asio::io_context ioc;
      asio::cancellation_signal signal;
      join_result r;
      p.async_join(asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ioc, record{&r})));
      release.close_write();
      run_guarded(ioc);
      BOOST_TEST(r.code == 35);
      signal.emit(type);  // the operation is gone: nothing to cancel, nothing to call
      ioc.restart();
      ioc.poll();
      BOOST_TEST(r.calls == 1);
      BOOST_TEST(r.code == 35);
    }
  }
}

BOOST_AUTO_TEST_CASE(an_emit_between_the_result_and_the_handler_completes_once) {
  // The child has already been joined, so the result is known when the operation starts; its
  // completion is posted. A cancellation emitted before it runs may turn it into
  // operation_aborted or not, but there is exactly one completion.
  for (const auto& [type, name] : all_types) {
    BOOST_TEST_CONTEXT("cancellation " << name) {
      coproc::process p(coproc_test::targets::exit_with, 36);
      p.start();
      BOOST_REQUIRE(p.join() == 36);
      asio::io_context ioc;
      asio::cancellation_signal signal, timed_signal;
      join_result r, timed;
      p.async_join(asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ioc, record{&r})));
      p.async_join(0s, asio::bind_cancellation_slot(timed_signal.slot(), asio::bind_executor(ioc, record{&timed})));
      signal.emit(type);
      timed_signal.emit(type);
      run_guarded(ioc);
      BOOST_TEST(r.calls == 1);
      BOOST_TEST((r.ec == asio::error::operation_aborted || r.code == 36));
      BOOST_TEST(timed.calls == 1);
      BOOST_TEST((timed.ec == asio::error::operation_aborted || timed.code == 36));
    }
  }
}

BOOST_AUTO_TEST_CASE(the_same_slot_serves_one_join_after_another) {
  // A coroutine reuses its cancellation slot for each operation it awaits; so may a caller.
  conn_pipe release;
  auto p = released_child(release, 37);
  p.start();
  asio::io_context ioc;
  asio::cancellation_signal signal;
  for (int round = 0; round < 3; ++round) {
    join_result r;
    p.async_join(asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ioc, record{&r})));
    asio::post(ioc, [&] { signal.emit(asio::cancellation_type::terminal); });
    run_guarded(ioc);
    BOOST_TEST(r.calls == 1);
    BOOST_TEST(r.ec == asio::error::operation_aborted);
  }
  join_result last;
  p.async_join(asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(ioc, record{&last})));
  release.close_write();
  run_guarded(ioc);
  BOOST_TEST(last.code == 37);
}

BOOST_AUTO_TEST_SUITE_END()
