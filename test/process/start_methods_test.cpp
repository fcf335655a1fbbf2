// The spawn and forkserver start methods (issue 9): what a registered target receives, what the
// child knows about itself, status fidelity, misuse, descriptors, and a forkserver that dies.
// The whole process API under every method is the other suites' job (their spawn and
// forkserver test setups); this suite covers what only these two methods have.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>
#include <coproc/testing.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace cp = coproc;

namespace sm_test {

struct point {
  int x = 0;
  std::string label;
  std::vector<double> values;
};
BOOST_DESCRIBE_STRUCT(point, (), (x, label, values))

// Sends back what it received, converted to the parameters' types.
void echo_arguments(cp::connection out, int i, std::string s, const point& p,
                    std::optional<std::vector<int>> v, bool flag) {
  out.send(std::make_tuple(i, s, p.x, p.label, p.values, v.value_or(std::vector<int>{-1}), flag));
}
COPROC_TARGET(echo_arguments);

// Sends back who the child is: its process object, its parent, its authkey.
void describe_self(cp::connection out) {
  auto& me = cp::current_process();
  cp::process* parent = cp::parent_process();
  std::vector<int> key;
  for (std::byte b : me.authkey())
    key.push_back(static_cast<int>(b));
  out.send(std::make_tuple(me.name(), me.daemon(), static_cast<long>(*me.pid()),
                           static_cast<long>(::getpid()), key,
                           parent ? parent->name() : std::string("none"),
                           parent ? static_cast<long>(*parent->pid()) : -1L,
                           parent ? parent->is_alive() : false));
}
COPROC_TARGET(describe_self);

// A grandchild names itself "Process-<identity>:1".
void child_name_of_grandchild(cp::connection out) {
  cp::process g;
  out.send(g.name());
}
COPROC_TARGET(child_name_of_grandchild);

void exit_with(int code) { cp::exit(code); }
COPROC_TARGET(exit_with);

void throw_runtime_error(std::string what) { throw std::runtime_error(what); }
COPROC_TARGET(throw_runtime_error);

void kill_self(int sig) { ::kill(::getpid(), sig); }
COPROC_TARGET(kill_self);

// Burns CPU and touches memory, so that status() has something to report.
void busy(int mib) {
  std::vector<char> block(static_cast<std::size_t>(mib) << 20);
  for (std::size_t i = 0; i < block.size(); i += 4096) block[i] = 1;
  volatile unsigned long sink = 0;
  const auto until = std::chrono::steady_clock::now() + 30ms;
  while (std::chrono::steady_clock::now() < until) sink = sink + 1;
}
COPROC_TARGET(busy);

// Waits until the parent sends something or closes its end.
void wait_then_exit(cp::connection in) {
  try {
    (void)in.recv_bytes();
  } catch (...) {
  }
}
COPROC_TARGET(wait_then_exit);

// Reports what the descriptors above 2 that the child holds are.
void list_descriptors(cp::connection out) {
  std::vector<std::string> fds;
  for (int fd = 3; fd < 1024; ++fd) {
    if (::fcntl(fd, F_GETFD) == -1 || fd == out.fileno()) continue;
    char target[256] = {};
    const auto n = ::readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), target, sizeof target - 1);
    fds.push_back(std::to_string(fd) + " " + (n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?"));
  }
  out.send(fds);
}
COPROC_TARGET(list_descriptors);

// Connections by reference: the same end given to several children (std::ref). Only writes:
// a small message is one atomic write, while readers sharing an end would split frames.
void send_index(cp::connection& out, int i) { out.send_bytes(cp::as_bytes("m" + std::to_string(i))); }
COPROC_TARGET(send_index);

void not_registered(int) {}

void take_point(const point& p) { cp::exit(p.x); }
COPROC_TARGET(take_point);

namespace other {
// The same name as sm_test::exit_with, in another namespace: found by its own key.
void exit_with(int code) { cp::exit(code + 100); }
COPROC_TARGET(exit_with);
}  // namespace other

const std::array<cp::start_method, 2> exec_methods = {cp::start_method::spawn,
                                                      cp::start_method::forkserver};

std::string method_name(cp::start_method m) { return std::string(cp::to_string(m)); }

}  // namespace sm_test

using namespace sm_test;

BOOST_AUTO_TEST_SUITE(start_methods)

BOOST_AUTO_TEST_CASE(arguments_arrive_converted_to_the_parameter_types) {
  for (auto m : exec_methods) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      auto [r, w] = cp::pipe(false);
      point pt{7, "seven", {0.1, 1e300}};
      cp::process p({.method = m}, echo_arguments, std::move(w), 42, "text", pt,
                    std::optional<std::vector<int>>(std::vector<int>{1, 2, 3}), true);
      p.start();
      auto got = r.recv<std::tuple<int, std::string, int, std::string, std::vector<double>,
                                   std::vector<int>, bool>>();
      BOOST_TEST(p.join() == 0);
      BOOST_TEST(std::get<0>(got) == 42);
      BOOST_TEST(std::get<1>(got) == "text");
      BOOST_TEST(std::get<2>(got) == 7);
      BOOST_TEST(std::get<3>(got) == "seven");
      BOOST_TEST((std::get<4>(got) == std::vector<double>{0.1, 1e300}));
      BOOST_TEST((std::get<5>(got) == std::vector<int>{1, 2, 3}));
      BOOST_TEST(std::get<6>(got));
    }
  }
}

BOOST_AUTO_TEST_CASE(the_child_knows_its_name_daemon_flag_authkey_and_parent) {
  for (auto m : exec_methods) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      auto [r, w] = cp::pipe(false);
      cp::process p({.name = "worker-" + method_name(m), .daemon = true, .method = m}, describe_self,
                    std::move(w));
      std::vector<std::byte> key(32);
      for (std::size_t i = 0; i < key.size(); ++i) key[i] = std::byte(i * 7);
      p.authkey(key);
      p.start();
      auto got = r.recv<std::tuple<std::string, bool, long, long, std::vector<int>, std::string,
                                   long, bool>>();
      BOOST_TEST(p.join() == 0);
      BOOST_TEST(std::get<0>(got) == "worker-" + method_name(m));
      BOOST_TEST(std::get<1>(got));
      BOOST_TEST(std::get<2>(got) == std::get<3>(got));  // pid() is getpid()
      BOOST_TEST(std::get<3>(got) == *p.pid());
      std::vector<int> expected;
      for (auto b : key) expected.push_back(static_cast<int>(b));
      BOOST_TEST(std::get<4>(got) == expected);
      BOOST_TEST(std::get<5>(got) == "MainProcess");
      BOOST_TEST(std::get<6>(got) == ::getpid());
      BOOST_TEST(std::get<7>(got));  // the parent is alive while it waits
    }
  }
}

BOOST_AUTO_TEST_CASE(a_grandchild_is_named_after_the_childs_identity) {
  for (auto m : exec_methods) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      auto [r, w] = cp::pipe(false);
      cp::process p({.method = m}, child_name_of_grandchild, std::move(w));
      const std::string mine = p.name();  // "Process-N"
      p.start();
      BOOST_TEST(r.recv<std::string>() == mine + ":1");
      BOOST_TEST(p.join() == 0);
    }
  }
}

BOOST_AUTO_TEST_CASE(exit_codes_exceptions_and_signals_read_as_under_fork) {
  for (auto m : exec_methods) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      cp::process a({.method = m}, exit_with, 7);
      cp::process b({.method = m}, throw_runtime_error, "boom");
      cp::process c({.method = m}, kill_self, SIGKILL);
      cp::process d({.method = m}, other::exit_with, 7);
      a.start();
      b.start();
      c.start();
      d.start();
      BOOST_TEST(a.join() == 7);
      BOOST_TEST(b.join() == 1);
      BOOST_TEST(c.join() == -SIGKILL);
      BOOST_TEST(d.join() == 107);  // the same name in another namespace is another target
      auto st = c.status();
      BOOST_REQUIRE(st);
      BOOST_TEST(st->signal.value_or(0) == SIGKILL);
      BOOST_TEST(!st->lost);
    }
  }
}

BOOST_AUTO_TEST_CASE(status_reports_cpu_time_and_peak_memory_of_the_child) {
  for (auto m : exec_methods) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      cp::process p({.method = m}, busy, 64);
      p.start();
      BOOST_TEST(p.join() == 0);
      auto st = p.status();
      BOOST_REQUIRE(st);
      BOOST_TEST(st->max_rss_kib >= 64u * 1024);
      BOOST_TEST((st->user_time + st->system_time).count() > 0);
      BOOST_TEST(!st->lost);
    }
  }
}

BOOST_AUTO_TEST_CASE(terminate_kill_and_the_sentinel_work_on_a_running_child) {
  for (auto m : exec_methods) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      auto [r, w] = cp::pipe(false);
      cp::process p({.method = m}, wait_then_exit, std::move(r));
      p.start();
      BOOST_TEST(p.is_alive());
      BOOST_TEST(!p.join(0ms));
      p.terminate();
      BOOST_TEST(coproc_test::wait_readable(p.sentinel(), std::chrono::seconds(30)));
      BOOST_TEST(p.join() == -SIGTERM);
      BOOST_TEST(!p.is_alive());
      BOOST_TEST(*p.exitcode() == -SIGTERM);
    }
  }
}

BOOST_AUTO_TEST_CASE(connections_by_reference_reach_several_children) {
  for (auto m : {cp::start_method::fork, cp::start_method::spawn, cp::start_method::forkserver}) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      auto [out_r, out_w] = cp::pipe(false);
      std::vector<cp::process> children;
      for (int i = 0; i < 3; ++i)
        children.emplace_back(cp::process_options{.method = m}, send_index, std::ref(out_w), i);
      for (auto& c : children) c.start();
      std::multiset<std::string> got;
      for (int i = 0; i < 3; ++i) {
        const auto b = out_r.recv_bytes();
        got.insert(std::string(reinterpret_cast<const char*>(b.data()), b.size()));
      }
      for (auto& c : children) BOOST_TEST(c.join() == 0);
      BOOST_TEST((got == std::multiset<std::string>{"m0", "m1", "m2"}));
    }
  }
}

BOOST_AUTO_TEST_CASE(a_child_holds_only_the_connections_it_was_given) {
  for (auto m : exec_methods) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      auto [keep_r, keep_w] = cp::pipe(false);  // not given: must not reach the child
      auto [r, w] = cp::pipe(false);
      cp::process p({.method = m}, list_descriptors, std::move(w));
      p.start();
      const auto held = r.recv<std::vector<std::string>>();
      std::vector<std::string> unexpected;
      for (const auto& h : held)
        // A forkserver child watches its parent (not its real parent) by a pidfd opened at its
        // start, while the parent is certainly alive: coproc's own, for parent_process().
        if (!(m == cp::start_method::forkserver && h.find("[pidfd]") != std::string::npos) &&
            // Without pidfds a child holds the fallback's pipe ends (spawn: both, as under fork;
            // forkserver: the alive pipe, its status socket being the server's).
            !(!cp::testing::pidfd_sentinels() && h.find("pipe:[") != std::string::npos))
          unexpected.push_back(h);
      for (const auto& h : unexpected) BOOST_TEST_MESSAGE("held: " << h);
      BOOST_TEST(unexpected.empty());
      BOOST_TEST(p.join() == 0);
    }
  }
}

BOOST_AUTO_TEST_CASE(targets_that_cannot_travel_are_misuse_and_leave_the_object_unstarted) {
  struct subclass : cp::process {
    using cp::process::process;
    void run() override {}
  };
  struct unsendable : point {};  // callable with, but not described: no JSON form
  const int fds_before = coproc_test::fd_count();
  for (auto m : exec_methods) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      cp::process lambda({.method = m}, [] {});
      coproc_test::expect_misuse([&] { lambda.start(); }, "not a function");
      cp::process unregistered({.method = m}, not_registered, 1);
      coproc_test::expect_misuse([&] { unregistered.start(); }, "COPROC_TARGET");
      cp::process bad_arg({.method = m}, take_point, unsendable{});
      coproc_test::expect_misuse([&] { bad_arg.start(); }, "cannot be sent");
      subclass sub({.method = m});
      coproc_test::expect_misuse([&] { sub.start(); }, "subclass");
      for (cp::process* p : {&lambda, &unregistered, &bad_arg, static_cast<cp::process*>(&sub)}) {
        BOOST_TEST(!p->pid());
        BOOST_TEST(!p->is_alive());
      }
      // Unstarted means startable: the same object with the fork method.
      cp::process again({.method = m}, exit_with, 3);
      again.start();
      BOOST_TEST(again.join() == 3);
    }
  }
  BOOST_TEST(cp::active_children().empty());
  BOOST_TEST(!coproc_test::has_zombie_child());
  // The forkserver started above keeps its control socket; nothing else stays open.
  BOOST_TEST(coproc_test::fd_count() <= fds_before + 1);
}

BOOST_AUTO_TEST_CASE(no_descriptor_is_left_behind_by_many_children) {
  for (auto m : exec_methods) {
    BOOST_TEST_CONTEXT(method_name(m)) {
      {  // the forkserver's control socket exists before counting
        cp::process warm({.method = m}, exit_with, 0);
        warm.start();
        warm.join();
      }
      const int before = coproc_test::fd_count();
      for (int i = 0; i < 20; ++i) {
        cp::process p({.method = m}, exit_with, i);
        p.start();
        BOOST_TEST(p.join() == i);
        p.close();
      }
      BOOST_TEST(coproc_test::fd_count() == before);
      BOOST_TEST(!coproc_test::has_zombie_child());
    }
  }
}

BOOST_AUTO_TEST_CASE(a_failed_exec_reaches_start_as_system_error_and_leaves_no_child) {
  struct restore {
    ~restore() { cp::testing::spawn_program({}); }
  } guard;
  cp::testing::spawn_program("/nonexistent/coproc-test-program");
  const int fds_before = coproc_test::fd_count();
  cp::process p({.method = cp::start_method::spawn}, exit_with, 0);
  try {
    p.start();
    BOOST_ERROR("start() succeeded without a program to execute");
  } catch (const std::system_error& e) {
    BOOST_TEST(e.code().value() == ENOENT);
    BOOST_TEST(std::string(e.what()).find("posix_spawn") != std::string::npos);
  }
  BOOST_TEST(!p.pid());
  BOOST_TEST(cp::active_children().empty());
  BOOST_TEST(!coproc_test::has_zombie_child());
  BOOST_TEST(coproc_test::fd_count() == fds_before);
  cp::testing::spawn_program({});
  p.start();  // unstarted: startable
  BOOST_TEST(p.join() == 0);
}

BOOST_AUTO_TEST_CASE(the_registry_has_no_limit_and_keys_tell_same_names_apart) {
  // 3,000 entries on top of the program's own: beyond any fixed table.
  static std::vector<cp::detail::registered_target> many(3000);
  static std::vector<int> anchors(3000);
  for (std::size_t i = 0; i < many.size(); ++i) {
    many[i].name = "bulk";
    many[i].address = &anchors[i];
    cp::detail::register_target(many[i]);
  }
  for (std::size_t i = 0; i < many.size(); i += 499) {
    const auto* e = cp::detail::find_target(static_cast<const void*>(&anchors[i]));
    BOOST_REQUIRE(e == &many[i]);
    const std::string key = cp::detail::target_key(*e);
    BOOST_TEST(cp::detail::find_target(std::string_view(key)) == e);
  }
  const auto* a = cp::detail::find_target(reinterpret_cast<const void*>(&sm_test::exit_with));
  const auto* b = cp::detail::find_target(reinterpret_cast<const void*>(&other::exit_with));
  BOOST_REQUIRE(a);
  BOOST_REQUIRE(b);
  BOOST_TEST(cp::detail::target_key(*a) != cp::detail::target_key(*b));
  BOOST_TEST(cp::detail::find_target(std::string_view("exit_with#9")) == nullptr);
}

BOOST_AUTO_TEST_CASE(a_dead_forkserver_is_replaced_and_its_children_read_255_or_their_own_status) {
  auto [r, w] = cp::pipe(false);
  cp::process in_flight({.method = cp::start_method::forkserver}, wait_then_exit, std::move(r));
  in_flight.start();
  const auto server = cp::testing::forkserver_pid();
  BOOST_REQUIRE(server);
  BOOST_REQUIRE(::kill(*server, SIGKILL) == 0);
  // The server is our child: it is reaped, never left a zombie, once a start() notices.
  cp::process next({.method = cp::start_method::forkserver}, exit_with, 5);
  next.start();
  BOOST_TEST(next.join() == 5);
  const auto replacement = cp::testing::forkserver_pid();
  BOOST_REQUIRE(replacement);
  BOOST_TEST(*replacement != *server);
  if (cp::testing::pidfd_sentinels()) {
    // The child in flight still runs, and its pidfd keeps it ours to signal and wait for.
    BOOST_TEST(in_flight.is_alive());
    in_flight.kill();
  }
  // Without a pidfd the status socket was the only watch: Python's rule, it has ended for us.
  BOOST_TEST(in_flight.join() == 255);  // its status went with the server
  BOOST_TEST(in_flight.status()->lost);
  w.close();  // (without a pidfd the child still waits for this)
  BOOST_TEST(!coproc_test::has_zombie_child());
}

BOOST_AUTO_TEST_CASE(a_subreaper_gets_the_orphans_own_status_when_the_server_dies) {
  if (!cp::testing::pidfd_sentinels()) {
    BOOST_TEST_MESSAGE("skipped: without a pidfd nothing can wait for an orphan of the server");
    return;
  }
  // Run in a child of its own (fork): PR_SET_CHILD_SUBREAPER must not outlive the test.
  cp::process runner({.method = cp::start_method::fork}, [] {
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) cp::exit(2);
    cp::set_start_method(cp::start_method::forkserver);
    auto [r, w] = cp::pipe(false);
    cp::process in_flight(wait_then_exit, std::move(r));
    in_flight.start();
    const auto server = cp::testing::forkserver_pid();
    if (!server || ::kill(*server, SIGKILL) != 0) cp::exit(3);
    int st = 0;
    ::waitpid(*server, &st, 0);  // the orphan is ours from here
    in_flight.kill();
    const int code = in_flight.join();
    cp::exit(code == -SIGKILL && !in_flight.status()->lost ? 0 : 4);
  });
  runner.start();
  BOOST_TEST(runner.join() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
