// Lifetime and hygiene: descriptors, zombies, detached children, the at-exit policy, stdio.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
using coproc_test::conn_pipe;
using coproc_test::run_scenario;
using coproc_test::send_text;
using coproc_test::wait_for_release;
using coproc_test::targets::exit_with;
using coproc_test::targets::nothing;
using coproc_test::targets::pause_forever;
using coproc_test::targets::released;

namespace {

// The pids that this process's descriptors refer to as pidfds (from /proc/self/fdinfo).
std::vector<pid_t> pidfd_targets() {
  std::vector<pid_t> pids;
  DIR* d = ::opendir("/proc/self/fdinfo");
  while (dirent* e = d ? ::readdir(d) : nullptr) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/fdinfo/") + e->d_name);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("Pid:", 0) == 0) pids.push_back(std::stoi(line.substr(4)));
  }
  if (d) ::closedir(d);
  return pids;
}

// The inodes of the pipes this process holds.
std::vector<std::string> pipe_links() {
  std::vector<std::string> out;
  DIR* d = ::opendir("/proc/self/fd");
  while (dirent* e = d ? ::readdir(d) : nullptr) {
    if (e->d_name[0] == '.') continue;
    char buf[128] = {};
    const auto path = std::string("/proc/self/fd/") + e->d_name;
    if (::readlink(path.c_str(), buf, sizeof buf - 1) > 0 && std::string(buf).starts_with("pipe:"))
      out.push_back(buf);
  }
  if (d) ::closedir(d);
  return out;
}

// The targets of these tests: registered, so that they run under every start method.

void released_then_report(coproc::connection release, coproc::connection done) {
  wait_for_release(release);
  send_text(done, "finished normally\n");
}
COPROC_TARGET(released_then_report);

// The probe of children_do_not_inherit_each_others_sentinels: reports the pidfds it holds and
// which of `coproc_pipes` (the parent's fallback sentinel pipes) it holds.
void report_inherited(coproc::connection report, std::vector<std::string> coproc_pipes) {
  std::ostringstream s;
  for (pid_t pid : pidfd_targets()) s << "pidfd " << pid << "\n";
  for (auto& link : pipe_links())
    if (std::find(coproc_pipes.begin(), coproc_pipes.end(), link) != coproc_pipes.end())
      s << "coproc pipe " << link << "\n";
  send_text(report, s.str());
}
COPROC_TARGET(report_inherited);

void print_child() { std::printf("child;"); }
COPROC_TARGET(print_child);

void read_stdin() {
  char buf[16];
  const auto n = ::read(0, buf, sizeof buf);
  std::printf("child read %zd\n", n);
}
COPROC_TARGET(read_stdin);
}  // namespace

void child_of_a_dying_main(coproc::connection main_returned, int parent, std::string what);
void ignore_sigterm_forever(coproc::connection ready);
void child_with_a_grandchild();

BOOST_AUTO_TEST_SUITE(hygiene)

BOOST_AUTO_TEST_CASE(many_cycles_leak_neither_descriptors_nor_zombies) {
  coproc_test::warm_up_start_method();  // a forkserver's own descriptors are not a leak
  const int before = coproc_test::fd_count();
  for (int i = 0; i < 200; ++i) {
    coproc::process p(exit_with, i % 7);
    p.start();
    switch (i % 4) {
      case 0: BOOST_TEST(p.join() == i % 7); break;
      case 1: BOOST_TEST(p.join(30s) == i % 7); break;
      case 2: while (p.is_alive()) std::this_thread::sleep_for(100us); break;
      default: p.join(); p.close(); break;
    }
  }
  BOOST_TEST(coproc_test::fd_count() == before);
  BOOST_TEST(!coproc_test::has_zombie_child());
  BOOST_TEST(coproc::active_children().empty());
}

BOOST_AUTO_TEST_CASE(destroying_a_running_process_neither_kills_nor_blocks) {
  coproc_test::warm_up_start_method();  // a forkserver's own descriptors are not a leak
  conn_pipe release, done;
  const int before = coproc_test::fd_count() - 4;  // the two test pipes
  pid_t pid;
  {
    coproc::process p(released_then_report, release.reader(), done.writer());
    p.start();
    pid = *p.pid();
    const auto t0 = std::chrono::steady_clock::now();
    // The destructor runs here, with the child still waiting.
    (void)t0;
  }
  BOOST_TEST(::kill(pid, 0) == 0);  // still running
  BOOST_TEST(coproc::active_children().empty());  // no object to list
  release.close_write();
  BOOST_TEST(done.read_all() == "finished normally\n");
  // Reaped by active_children() once it has ended; no zombie is left behind. Wait (without
  // reaping) until it has ended, so that there is a zombie to reap.
  if (coproc_test::children_are_ours()) {
    siginfo_t info{};
    BOOST_REQUIRE(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) == 0);
    BOOST_TEST(coproc_test::has_zombie_child());
    coproc::active_children();
    BOOST_TEST(!coproc_test::has_zombie_child());
  } else {
    // The server reaps it: wait until it is gone, then let active_children() tidy up as above.
    BOOST_TEST_MESSAGE("the zombie checks skipped under forkserver: the server reaps the child");
    const auto stat = "/proc/" + std::to_string(pid) + "/stat";
    BOOST_REQUIRE(coproc_test::wait_until([&] { return ::access(stat.c_str(), F_OK) != 0; }));
    coproc::active_children();
  }
  done.close_read();
  release.close_read();
  BOOST_TEST(coproc_test::fd_count() == before);
}

BOOST_AUTO_TEST_CASE(a_detached_child_is_reaped_by_the_next_start) {
  if (!coproc_test::children_are_ours()) {
    BOOST_TEST_MESSAGE("skipped under forkserver: the server reaps the child, it is never a "
                       "zombie of this process");
    return;
  }
  conn_pipe release;
  pid_t pid;
  {
    coproc::process p(released, release.reader());
    p.start();
    pid = *p.pid();
  }
  release.close_write();
  // Wait (without reaping) until it is a zombie.
  siginfo_t info{};
  BOOST_REQUIRE(::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) == 0);
  BOOST_TEST(coproc_test::has_zombie_child());
  coproc::process q(nothing);
  q.start();
  q.join();
  BOOST_TEST(!coproc_test::has_zombie_child());
}

BOOST_AUTO_TEST_CASE(active_children_lists_running_children_only) {
  conn_pipe release;
  coproc::process p(released, release.reader());
  BOOST_TEST(coproc::active_children().empty());
  p.start();
  auto kids = coproc::active_children();
  BOOST_TEST(kids.size() == 1u);
  BOOST_TEST((kids.size() == 1 && kids[0] == &p));
  coproc::process moved = std::move(p);
  kids = coproc::active_children();
  BOOST_TEST((kids.size() == 1 && kids[0] == &moved));
  release.close_write();
  moved.join();
  BOOST_TEST(coproc::active_children().empty());
}

BOOST_AUTO_TEST_CASE(children_do_not_inherit_each_others_sentinels) {
  conn_pipe release;
  const auto pipes_before = pipe_links();  // stdio, the test's pipes: inherited, as in Python
  std::vector<coproc::process> running;
  for (int i = 0; i < 3; ++i) {
    running.emplace_back(released, release.reader());
    running.back().start();
  }
  std::vector<std::string> coproc_pipes;  // the fallback sentinel's pipes, if any
  for (auto& link : pipe_links())
    if (std::find(pipes_before.begin(), pipes_before.end(), link) == pipes_before.end())
      coproc_pipes.push_back(link);
  conn_pipe report;  // handed to the probe only
  coproc::process probe(report_inherited, report.writer(), coproc_pipes);
  probe.start();
  const std::string text = report.read_all();
  BOOST_TEST(probe.join() == 0);
  // The probe may hold the test's own pipes (inherited, as in Python) and a pidfd of its
  // parent; nothing that belongs to its siblings.
  for (auto& p : running)
    BOOST_TEST(text.find("pidfd " + std::to_string(*p.pid()) + "\n") == std::string::npos, text);
  BOOST_TEST(text.find("coproc pipe") == std::string::npos, text);
  release.close_write();
  for (auto& p : running) BOOST_TEST(p.join() == 0);
}

BOOST_AUTO_TEST_CASE(start_does_not_reap_or_touch_other_running_children) {
  // Python's start() polls every child (_cleanup); coproc's does not need to. What can be
  // observed: a child ended but not joined stays a zombie until something asks about it.
  if (!coproc_test::children_are_ours()) {
    BOOST_TEST_MESSAGE("skipped under forkserver: the server reaps the children, they are never "
                       "zombies of this process");
    return;
  }
  coproc::process a(nothing);
  a.start();
  siginfo_t info{};
  BOOST_REQUIRE(::waitid(P_PID, static_cast<id_t>(*a.pid()), &info, WEXITED | WNOWAIT) == 0);
  coproc::process b(nothing);
  b.start();
  b.join();
  BOOST_TEST(coproc_test::has_zombie_child());
  BOOST_TEST(a.exitcode() == 0);
  BOOST_TEST(!coproc_test::has_zombie_child());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Whole programs, run as scenarios of this binary.

COPROC_TEST_SCENARIO(print_then_fork) {
  // Unflushed output before start() must appear once, not once per process.
  std::printf("printf-before;");
  std::cout << "cout-before;";
  coproc::process p(print_child);
  p.start();
  p.join();
  std::printf("after\n");
  return 0;
}

COPROC_TEST_SCENARIO(child_stdin) {
  coproc::process p(read_stdin);
  p.start();
  p.join();
  char buf[16];
  const auto n = ::read(0, buf, sizeof buf);
  std::printf("parent read %zd\n", n);
  return 0;
}

namespace {
// For the scenarios whose child must still work when main ends (no sleep that makes it likely):
// the child waits until an atexit handler closes `main_returned`. The handler is registered
// after the first start(), where coproc registers its at-exit policy, so it runs first: once
// main has returned (or called exit), before the policy joins.
conn_pipe* main_returned = nullptr;  // never freed: the exit still needs it
void make_main_returned() { main_returned = new conn_pipe; }  // the child gets its reader()
void close_main_returned_at_exit() {
  std::atexit([] { main_returned->close_write(); });
}
}  // namespace

// In the child: waits until main has returned, then a while longer (a parent whose exit did not
// wait would be gone by then), and prints `what`, and if the parent was gone. The parent is the
// program that started it (parent_process()), under every method: under forkserver the kernel's
// parent (getppid) is the server.
void child_of_a_dying_main(coproc::connection main_returned, int parent, std::string what) {
  wait_for_release(main_returned);
  std::this_thread::sleep_for(300ms);
  auto* program = coproc::parent_process();
  const bool waited = program && program->pid() == parent && program->is_alive();
  const char* orphaned = waited ? "" : " (orphaned: exit did not wait)";
  std::printf("%s%s\n", what.c_str(), orphaned);
}
COPROC_TARGET(child_of_a_dying_main);

COPROC_TEST_SCENARIO(exit_joins_non_daemonic_children) {
  // Returns from main while a non-daemonic child still works: exit must wait for it.
  make_main_returned();
  static coproc::process* p = new coproc::process(child_of_a_dying_main, main_returned->reader(),
                                                  static_cast<int>(::getpid()), "child done");
  p->start();
  close_main_returned_at_exit();
  std::printf("main returns\n");
  std::fflush(stdout);
  return 0;
}

COPROC_TEST_SCENARIO(exit_joins_destroyed_children) {
  make_main_returned();
  {
    coproc::process p(child_of_a_dying_main, main_returned->reader(), static_cast<int>(::getpid()),
                      "detached child done");
    p.start();
  }
  close_main_returned_at_exit();
  std::printf("main returns\n");
  std::fflush(stdout);
  return 0;
}

COPROC_TEST_SCENARIO(exit_terminates_daemonic_children) {
  static coproc::process* p = new coproc::process({.daemon = true}, pause_forever);
  p->start();
  std::printf("%d\n", *p->pid());
  return 0;
}

void ignore_sigterm_forever(coproc::connection ready) {
  ::signal(SIGTERM, SIG_IGN);
  send_text(ready, "x");
  for (;;) ::pause();
}
COPROC_TARGET(ignore_sigterm_forever);

COPROC_TEST_SCENARIO(exit_kills_daemons_that_ignore_sigterm) {
  conn_pipe ready;
  static coproc::process* p = new coproc::process({.daemon = true}, ignore_sigterm_forever,
                                                  ready.writer());
  p->start();
  ready.close_write();
  char c;
  (void)::read(ready.read_fd(), &c, 1);  // SIGTERM is ignored from here on
  std::printf("%d\n", *p->pid());
  return 0;
}

COPROC_TEST_SCENARIO(coproc_exit_in_main_runs_the_policy) {
  make_main_returned();
  static coproc::process* p = new coproc::process(child_of_a_dying_main, main_returned->reader(),
                                                  static_cast<int>(::getpid()), "child done");
  p->start();
  close_main_returned_at_exit();
  coproc::exit(3);
}

namespace {
void grandchild_after_release(coproc::connection release) {
  wait_for_release(release);
  std::this_thread::sleep_for(200ms);
  std::printf("grandchild done\n");
}
COPROC_TARGET(grandchild_after_release);
}  // namespace

void child_with_a_grandchild() {
  // The grandchild works until the child's target has returned (the child closes `release`
  // as its last act), then a while longer: a child that did not join it would have ended, and
  // the parent printed, by then.
  static conn_pipe* release = new conn_pipe;
  static coproc::process* g = new coproc::process(grandchild_after_release, release->reader());
  g->start();
  std::printf("child returns\n");
  std::fflush(stdout);
  release->close_write();
}
COPROC_TARGET(child_with_a_grandchild);

COPROC_TEST_SCENARIO(child_joins_its_own_children) {
  coproc::process p(child_with_a_grandchild);
  p.start();
  p.join();
  std::printf("parent joined child\n");
  return 0;
}

namespace {
bool process_gone(pid_t pid) {
  // Orphans are adopted and reaped by init (or a subreaper); a zombie still counts as alive
  // for kill(0), so look at /proc.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  return close != std::string::npos && line.size() > close + 2 && line[close + 2] == 'Z';
}
}  // namespace

BOOST_AUTO_TEST_SUITE(whole_programs)

BOOST_AUTO_TEST_CASE(output_buffered_before_start_is_printed_once) {
  auto r = run_scenario("print_then_fork");
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out == "printf-before;cout-before;child;after\n");
}

BOOST_AUTO_TEST_CASE(the_childs_stdin_is_dev_null) {
  auto r = run_scenario("child_stdin", {}, "parent data");
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out == "child read 0\nparent read 11\n");
}

BOOST_AUTO_TEST_CASE(exit_joins_non_daemonic_children) {
  auto r = run_scenario("exit_joins_non_daemonic_children");
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out == "main returns\nchild done\n");
}

BOOST_AUTO_TEST_CASE(exit_joins_children_whose_objects_were_destroyed) {
  auto r = run_scenario("exit_joins_destroyed_children");
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out == "main returns\ndetached child done\n");
}

BOOST_AUTO_TEST_CASE(exit_terminates_daemonic_children) {
  auto r = run_scenario("exit_terminates_daemonic_children");
  BOOST_TEST(r.exit_code == 0);
  const pid_t child = std::stoi(r.out);
  BOOST_TEST(process_gone(child));
}

BOOST_AUTO_TEST_CASE(exit_kills_daemons_that_ignore_sigterm_after_a_grace_period) {
  // Python hangs here for as long as the daemon lives; coproc escalates to SIGKILL.
  auto r = run_scenario("exit_kills_daemons_that_ignore_sigterm", {}, {}, 20s);
  BOOST_TEST(r.exit_code == 0);
  const pid_t child = std::stoi(r.out);
  BOOST_TEST(process_gone(child));
}

BOOST_AUTO_TEST_CASE(coproc_exit_in_main_exits_with_the_code_after_the_policy) {
  auto r = run_scenario("coproc_exit_in_main_runs_the_policy");
  BOOST_TEST(r.exit_code == 3);
  BOOST_TEST(r.out == "child done\n");
}

BOOST_AUTO_TEST_CASE(a_child_joins_its_own_children_when_its_target_ends) {
  auto r = run_scenario("child_joins_its_own_children");
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(r.out == "child returns\ngrandchild done\nparent joined child\n");
}

BOOST_AUTO_TEST_SUITE_END()
