// Lifetimes around pending joins: the process object destroyed or moved, the io_context
// destroyed, and a child awaiting its parent's end.
#include <signal.h>
#include <unistd.h>

#include <future>
#include <memory>
#include <string>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/test/unit_test.hpp>

#include "async_support.hpp"

using namespace async_test;

namespace {

// Sets a flag when destroyed: tells whether a coroutine frame was destroyed.
struct on_destroy {
  bool* flag;
  ~on_destroy() { *flag = true; }
};

asio::awaitable<void> join_and_flag(coproc::process& p, join_result& out, bool& frame_gone) {
  on_destroy guard{&frame_gone};
  co_await join_into(p, out);
}

// Reaps detached children that have ended, until none is left as a zombie (a hang guard ends
// the wait after 30 s).
bool no_zombie_after_reaping(pid_t pid) {
  wait_until_ended(pid);
  coproc::active_children();  // reaps ended children whose objects are gone
  return !coproc_test::has_zombie_child();
}

std::string describe(const error_code& ec, std::optional<int> code) {
  if (ec) return "error " + ec.message();
  return code ? "code " + std::to_string(*code) : "nullopt";
}

asio::awaitable<void> await_parent(coproc::process& parent, std::string& out) {
  auto [ec, code] = co_await parent.async_join(asio::as_tuple(asio::use_awaitable));
  out = "untimed " + describe(ec, code);
}

asio::awaitable<void> await_parent_timed(coproc::process& parent, std::string& out) {
  auto [ec, code] = co_await parent.async_join(600s, asio::as_tuple(asio::use_awaitable));
  out = "timed " + describe(ec, code);
}

// a_grandchild_awaits_the_end_of_its_parent: the grandchild awaits its parent's end in a fresh
// io_context and reports both forms; the middle process starts it, then waits to be killed.
void grandchild_awaits_parent(coproc::connection report) {
  asio::io_context ioc;
  coproc::process* parent = coproc::parent_process();
  std::string untimed, timed;
  asio::co_spawn(ioc, await_parent(*parent, untimed), asio::detached);
  asio::co_spawn(ioc, await_parent_timed(*parent, timed), asio::detached);
  ioc.poll();  // both joins are pending now
  coproc_test::send_text(report, std::string(untimed.empty() && timed.empty() ? "waiting" : "early") + "\n");
  ioc.run_for(60s);  // a hang guard: the joins complete when the middle process dies
  coproc_test::send_text(report, untimed + "\n");
  coproc_test::send_text(report, timed + "\n");
}
COPROC_TARGET(grandchild_awaits_parent);

void middle_process(coproc::connection report) {
  coproc::process grandchild(grandchild_awaits_parent, coproc_test::dup_connection(report));
  grandchild.start();
  ::pause();
}
COPROC_TARGET(middle_process);

}  // namespace

BOOST_AUTO_TEST_SUITE(async_join_lifetime)

BOOST_AUTO_TEST_CASE(destroying_the_process_aborts_pending_joins_and_the_child_is_still_reaped) {
  conn_pipe release;
  auto p = std::make_unique<coproc::process>(released_child(release, 41));
  p->start();
  const pid_t pid = *p->pid();
  asio::io_context ioc;
  auto strand = asio::make_strand(ioc);
  join_result callback, timed, stranded, coroutine;
  bool frame_gone = false;
  p->async_join(asio::bind_executor(ioc, record{&callback}));
  p->async_join(600s, asio::bind_executor(ioc, record{&timed}));
  p->async_join(asio::bind_executor(strand, record{&stranded}));
  asio::co_spawn(ioc, join_and_flag(*p, coroutine, frame_gone), rethrow{});
  std::promise<error_code> own_thread;  // a plain callback: waits on coproc's own thread
  p->async_join([&](error_code ec, int) { own_thread.set_value(ec); });
  ioc.poll();
  BOOST_TEST(callback.calls + timed.calls + stranded.calls + coroutine.calls == 0);

  p.reset();

  run_guarded(ioc);  // out of work: every wait was withdrawn
  // ...at once, not when the child ended by itself.
  BOOST_TEST(still_running(pid));
  for (auto* r : {&callback, &timed, &stranded, &coroutine}) {
    BOOST_TEST(r->calls == 1);
    BOOST_TEST(r->ec == asio::error::operation_aborted);
  }
  BOOST_TEST(frame_gone);
  auto f = own_thread.get_future();
  BOOST_REQUIRE(f.wait_for(60s) == std::future_status::ready);
  BOOST_TEST(f.get() == asio::error::operation_aborted);

  // Neither killed nor reaped by the destruction: the child runs on, and once it ends it is
  // reaped without an object (no zombie).
  BOOST_TEST(still_running(pid));
  release.close_write();
  BOOST_TEST(no_zombie_after_reaping(pid));
}

BOOST_AUTO_TEST_CASE(destroying_the_process_from_a_handler_aborts_the_other_joins) {
  // The handler of one join destroys the object while another join of the same child is
  // pending on the same io_context: no deadlock, one abort.
  conn_pipe release;
  auto p = std::make_unique<coproc::process>(released_child(release, 42));
  p->start();
  const pid_t pid = *p->pid();
  asio::io_context ioc;
  join_result pending, first;
  p->async_join(asio::bind_executor(ioc, record{&pending}));
  p->async_join(10ms, asio::bind_executor(ioc, [&](error_code ec, std::optional<int> code) {
    record{&first}(ec, code);
    p.reset();
  }));
  run_guarded(ioc);
  BOOST_TEST(still_running(pid));  // the abort did not wait for the child's end
  BOOST_TEST(first.calls == 1);
  BOOST_TEST(!first.code);
  BOOST_TEST(pending.calls == 1);
  BOOST_TEST(pending.ec == asio::error::operation_aborted);
  release.close_write();
  BOOST_TEST(no_zombie_after_reaping(pid));
}

BOOST_AUTO_TEST_CASE(moving_the_process_keeps_pending_joins) {
  conn_pipe release;
  auto p = released_child(release, 43);
  p.start();
  asio::io_context ioc;
  join_result callback, coroutine, timed;
  p.async_join(asio::bind_executor(ioc, record{&callback}));
  p.async_join(600s, asio::bind_executor(ioc, record{&timed}));
  asio::co_spawn(ioc, join_into(p, coroutine), rethrow{});
  ioc.poll();
  std::optional<coproc::process> moved(std::move(p));
  {
    coproc::process gone = std::move(p);  // the moved-from object, moved again and destroyed
  }
  ioc.poll();
  BOOST_TEST(callback.calls + coroutine.calls + timed.calls == 0);
  release.close_write();
  run_until(ioc, [&] { return callback.calls + coroutine.calls + timed.calls == 3; });
  BOOST_TEST(callback.code == 43);
  BOOST_TEST(coroutine.code == 43);
  BOOST_TEST(timed.code == 43);
  BOOST_TEST(moved->exitcode() == 43);
}

BOOST_AUTO_TEST_CASE(destroying_the_io_context_leaves_the_process_usable) {
  conn_pipe release;
  auto p = released_child(release, 44);
  p.start();
  const int fds_before = coproc_test::fd_count();
  join_result callback, timed, coroutine;
  bool frame_gone = false;
  {
    asio::io_context ioc;
    p.async_join(asio::bind_executor(ioc, record{&callback}));
    p.async_join(600s, asio::bind_executor(ioc, record{&timed}));
    asio::co_spawn(ioc, join_and_flag(p, coroutine, frame_gone), rethrow{});
    ioc.poll();
  }  // destroyed with three joins pending: their handlers are destroyed, never called
  BOOST_TEST(callback.calls + timed.calls + coroutine.calls == 0);
  BOOST_TEST(frame_gone);
  BOOST_TEST(coproc_test::fd_count() == fds_before);  // the joins' descriptors are closed

  BOOST_TEST(p.is_alive());
  asio::io_context fresh;
  join_result later;
  p.async_join(asio::bind_executor(fresh, record{&later}));
  release.close_write();
  run_guarded(fresh);
  BOOST_TEST(later.code == 44);
  BOOST_TEST(p.join() == 44);
}

BOOST_AUTO_TEST_CASE(destroying_a_stopped_io_context_after_the_child_ended_leaves_the_process_usable) {
  // The child ends while the io_context is stopped: the completion is ready but never runs.
  conn_pipe release;
  auto p = released_child(release, 45);
  p.start();
  join_result r;
  {
    asio::io_context ioc;
    p.async_join(asio::bind_executor(ioc, record{&r}));
    ioc.poll();
    release.close_write();
    wait_until_ended(p);
  }
  BOOST_TEST(r.calls == 0);
  BOOST_TEST(p.join() == 45);
  BOOST_TEST(p.exitcode() == 45);
  BOOST_TEST(!coproc_test::has_zombie_child());
}

BOOST_AUTO_TEST_CASE(a_grandchild_awaits_the_end_of_its_parent) {
  // The middle process starts a grandchild and then waits to be killed. The grandchild awaits
  // its parent's end in a fresh io_context; both forms complete once the middle is killed
  // (untimed: 255, the parent's status is not the grandchild's to know; timed: nullopt).
  conn_pipe report;
  coproc::process middle(middle_process, report.writer());
  middle.start();
  BOOST_TEST(report.read_line() == "waiting");
  middle.kill();
  BOOST_TEST(middle.join() == -9);
  BOOST_TEST(report.read_line() == "untimed code 255");
  BOOST_TEST(report.read_line() == "timed nullopt");
}

BOOST_AUTO_TEST_SUITE_END()
