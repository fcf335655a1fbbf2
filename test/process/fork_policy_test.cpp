// The fork start method in a program that runs other threads: fork_thread_policy (allow, warn,
// refuse), detected from the thread count (docs/fork-policy.md).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <future>
#include <latch>
#include <string>
#include <system_error>
#include <thread>

#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "helpers.hpp"

using coproc::fork_thread_policy;
using coproc_test::expect_misuse;
using coproc_test::run_scenario;

namespace {

// A second thread of this process, parked until the end of the scope. It exists once the
// constructor returns (std::thread's constructor returns after the thread is created); the
// latch only releases it, so nothing here sleeps.
class parked_thread {
 public:
  parked_thread() : thread_([this] { release_.wait(); }) {}
  ~parked_thread() {
    release_.count_down();
    thread_.join();
  }
  parked_thread(const parked_thread&) = delete;
  parked_thread& operator=(const parked_thread&) = delete;

 private:
  std::latch release_{1};
  std::thread thread_;
};

// The policy, restored at the end of the scope.
class policy_scope {
 public:
  explicit policy_scope(fork_thread_policy p) { coproc::set_fork_thread_policy(p); }
  ~policy_scope() { coproc::set_fork_thread_policy(old_); }
  policy_scope(const policy_scope&) = delete;
  policy_scope& operator=(const policy_scope&) = delete;

 private:
  fork_thread_policy old_ = coproc::get_fork_thread_policy();
};

// The threads of this process as the kernel counts them (whoever made them).
int kernel_thread_count() {
  struct stat st {};
  BOOST_REQUIRE(::stat("/proc/self/task", &st) == 0);
  return static_cast<int>(st.st_nlink) - 2;
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

void do_nothing() {}
COPROC_TARGET(do_nothing);

}  // namespace

// The policy is about fork: every child here is forked, whatever the default method of the
// binary (the spawn and forkserver test setups run this suite too).
const coproc::process_options fork_method{.method = coproc::start_method::fork};

// `--scenario fork_policy <policy> <threads> <starts>`: policy is default (not set), allow,
// warn or refuse; threads is "alone" or "parked" (a second thread waits while the children
// start). Prints this process's pid; exits 3 if a start was refused (its what() to stdout).
COPROC_TEST_SCENARIO(fork_policy) {
  if (argc != 3) return 2;
  const std::string policy = argv[0];
  if (policy == "allow") coproc::set_fork_thread_policy(fork_thread_policy::allow);
  if (policy == "warn") coproc::set_fork_thread_policy(fork_thread_policy::warn);
  if (policy == "refuse") coproc::set_fork_thread_policy(fork_thread_policy::refuse);
  std::optional<parked_thread> parked;
  if (std::strcmp(argv[1], "parked") == 0) parked.emplace();
  std::printf("%d\n", static_cast<int>(::getpid()));
  std::fflush(stdout);
  for (int i = 0, n = std::atoi(argv[2]); i < n; ++i) {
    coproc::process p(fork_method, [] {});
    try {
      p.start();
    } catch (const std::logic_error& e) {
      std::printf("%s\n", e.what());
      return 3;
    }
    if (p.join() != 0) return 4;
  }
  return 0;
}

// `--scenario fork_policy_in_child`: a single-threaded program starts a child that parks a
// thread of its own and starts a grandchild. Prints its pid, then the child's.
COPROC_TEST_SCENARIO(fork_policy_in_child) {
  std::printf("%d\n", static_cast<int>(::getpid()));
  std::fflush(stdout);
  coproc::process p(fork_method, [] {
    parked_thread parked;
    coproc::process grandchild(fork_method, [] {});
    grandchild.start();
    coproc::exit(grandchild.join());
  });
  p.start();
  std::printf("%d\n", static_cast<int>(*p.pid()));
  std::fflush(stdout);
  return p.join();
}

namespace {
const std::string python_words = ") is multi-threaded";
std::string warning_of(const std::string& pid) { return "This process (pid=" + pid + python_words; }
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
}  // namespace

BOOST_AUTO_TEST_SUITE(fork_policy)

BOOST_AUTO_TEST_CASE(test_default_is_warn_and_names) {
  // A fresh program: nothing has set the policy there.
  auto r = run_scenario("fork_policy", {"default", "alone", "0"});
  BOOST_TEST(r.exit_code == 0);
  BOOST_TEST(coproc::to_string(fork_thread_policy::allow) == "allow");
  BOOST_TEST(coproc::to_string(fork_thread_policy::warn) == "warn");
  BOOST_TEST(coproc::to_string(fork_thread_policy::refuse) == "refuse");
  policy_scope scope(fork_thread_policy::refuse);
  BOOST_TEST((coproc::get_fork_thread_policy() == fork_thread_policy::refuse));
  coproc::set_fork_thread_policy(fork_thread_policy::allow);
  BOOST_TEST((coproc::get_fork_thread_policy() == fork_thread_policy::allow));
}

BOOST_AUTO_TEST_CASE(test_default_warns_once_per_process) {
  // Three starts with a second thread parked: the warning once, with Python's words, the pid
  // and the advice; nothing from the children (they share the scenario's stderr).
  auto r = run_scenario("fork_policy", {"default", "parked", "3"});
  BOOST_TEST(r.exit_code == 0, r.err);
  const std::string pid = first_line(r.out);
  BOOST_TEST(occurrences(r.err, python_words) == 1u, r.err);
  BOOST_TEST(occurrences(r.err, warning_of(pid)) == 1u, r.err);
  BOOST_TEST(r.err.find("use of fork() may lead to deadlocks in the child") != std::string::npos);
  BOOST_TEST(r.err.find("spawn or forkserver") != std::string::npos);
  BOOST_TEST(r.err.find("set_fork_thread_policy") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(test_warn_set_explicitly_warns_once) {
  auto r = run_scenario("fork_policy", {"warn", "parked", "2"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(occurrences(r.err, warning_of(first_line(r.out))) == 1u, r.err);
}

BOOST_AUTO_TEST_CASE(test_single_thread_never_warns) {
  auto r = run_scenario("fork_policy", {"warn", "alone", "2"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(occurrences(r.err, python_words) == 0u, r.err);
}

BOOST_AUTO_TEST_CASE(test_allow_is_silent) {
  auto r = run_scenario("fork_policy", {"allow", "parked", "2"});
  BOOST_TEST(r.exit_code == 0, r.err);
  BOOST_TEST(occurrences(r.err, python_words) == 0u, r.err);
}

BOOST_AUTO_TEST_CASE(test_refuse_in_a_fresh_program) {
  auto r = run_scenario("fork_policy", {"refuse", "parked", "1"});
  BOOST_TEST(r.exit_code == 3, r.out << r.err);
  BOOST_TEST(occurrences(r.err, python_words) == 0u, r.err);  // an error, not also a warning
}

BOOST_AUTO_TEST_CASE(test_a_child_warns_for_its_own_threads) {
  // The parent is single-threaded (no warning of its own); the child is a process of its own
  // that runs a second thread when it forks: it warns, once, with its own pid.
  if (coproc_test::sanitized) return;  // the child allocates while its other thread exists
  auto r = run_scenario("fork_policy_in_child");
  BOOST_TEST(r.exit_code == 0, r.err);
  const std::string parent = first_line(r.out);
  const std::string child = first_line(r.out.substr(r.out.find('\n') + 1));
  BOOST_TEST(occurrences(r.err, warning_of(child)) == 1u, r.err);
  BOOST_TEST(occurrences(r.err, warning_of(parent)) == 0u, r.err);
}

BOOST_AUTO_TEST_CASE(test_refuse_names_the_count_and_leaves_the_object_startable) {
  policy_scope scope(fork_thread_policy::refuse);
  coproc::process p(fork_method, [] {});
  {
    parked_thread parked;
    expect_misuse([&] { p.start(); }, "multi-threaded");
    try {
      p.start();
      BOOST_ERROR("start() did not refuse");
    } catch (const std::logic_error& e) {
      const std::string what = e.what();
      BOOST_TEST(what.find(" threads)") != std::string::npos, what);
      BOOST_TEST(what.find("pid=" + std::to_string(::getpid())) != std::string::npos, what);
      BOOST_TEST(what.find("spawn or forkserver") != std::string::npos, what);
      BOOST_TEST(what.find("set_fork_thread_policy") != std::string::npos, what);
    }
    BOOST_TEST(!p.pid().has_value());
    BOOST_TEST(!p.is_alive());
    BOOST_TEST(!p.exitcode().has_value());
    BOOST_TEST(coproc::active_children().empty());
    coproc::set_fork_thread_policy(fork_thread_policy::allow);
    p.start();  // the same object, once the policy allows it
  }
  BOOST_TEST(p.join() == 0);
}

BOOST_AUTO_TEST_CASE(test_refuse_lets_a_single_threaded_program_fork) {
  policy_scope scope(fork_thread_policy::refuse);
  coproc::process p(fork_method, [] {});
  p.start();
  BOOST_TEST(p.join() == 0);
  // The parked thread has ended: the program is single-threaded again.
  { parked_thread parked; }
  coproc::process q(fork_method, [] {});
  q.start();
  BOOST_TEST(q.join() == 0);
}

BOOST_AUTO_TEST_CASE(test_coproc_own_io_thread_does_not_count) {
  policy_scope scope(fork_thread_policy::refuse);
  coproc::process p(fork_method, [] {});
  p.start();
  // A join with use_future has no executor to run on: coproc waits on its own I/O thread.
  BOOST_TEST(p.async_join(boost::asio::use_future).get() == 0);
  BOOST_TEST(kernel_thread_count() >= 2);  // the I/O thread is there, and still runs
  coproc::process q(fork_method, [] {});
  q.start();
  BOOST_TEST(q.join() == 0);
}

BOOST_AUTO_TEST_CASE(test_only_the_fork_method_is_checked) {
  // spawn children are never copies of this program: refuse does not apply to them.
  coproc_test::start_method_scope method;
  policy_scope scope(fork_thread_policy::refuse);
  parked_thread parked;
  coproc::process p(coproc::process_options{.method = coproc::start_method::spawn}, do_nothing);
  try {
    p.start();
  } catch (const std::system_error& e) {
    BOOST_TEST(e.code().value() == ENOSYS);  // spawn not built in this version
    return;
  } catch (const std::logic_error& e) {
    BOOST_ERROR("spawn refused: " << e.what());
    return;
  }
  BOOST_TEST(p.join() == 0);
}

BOOST_AUTO_TEST_SUITE_END()
