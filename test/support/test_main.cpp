// The main() of every coproc test binary.
//
// - Boost.Test must not catch signals: forked children inherit its handlers, and a child that
//   crashes on purpose would jump back into the test framework instead of dying.
// - COPROC_TEST_FORCE_PIPE_SENTINEL=1 (the `no-pidfd` test setup) runs the whole binary on the
//   pipe sentinel, as on a kernel that refuses pidfd.
// - COPROC_TEST_START_METHOD=fork|spawn|forkserver (the `spawn`, `forkserver` and `*_nopidfd`
//   test setups) makes that start method the default of the whole binary, scenarios included
//   (they inherit the environment). coproc_test::method_under_test() says which.
// - `<binary> --scenario <name> [args...]` runs a registered scenario instead of the tests:
//   a whole program whose exit behaviour a test observes from outside (at-exit policy,
//   flushing, stdin).
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>
#include <coproc/testing.hpp>

#include "helpers.hpp"

namespace coproc_test {
std::map<std::string, scenario_fn>& scenarios() {
  static std::map<std::string, scenario_fn> all;
  return all;
}
scenario_registrar::scenario_registrar(const char* name, scenario_fn fn) {
  scenarios()[name] = fn;
}
std::string self_exe;

namespace {
coproc::start_method library_default = coproc::start_method::fork;
coproc::start_method under_test = coproc::start_method::fork;
}  // namespace
coproc::start_method method_under_test() { return under_test; }
coproc::start_method library_default_method() { return library_default; }
}  // namespace coproc_test

namespace {
bool init_tests() { return true; }
}  // namespace

namespace {
// The settings of the test environment, applied to this process. Before coproc::init: a spawned
// child runs its target inside init and never returns, and it inherits the environment, so
// this way its own children get the settings of the binary under test too (both only set
// flags that start() reads). False for a bad value.
bool apply_test_environment() {
  coproc_test::library_default = coproc::get_start_method();
  coproc_test::under_test = coproc_test::library_default;
  if (const char* v = std::getenv("COPROC_TEST_START_METHOD"); v && *v) {
    const std::string name = v;
    if (name == "fork")
      coproc_test::under_test = coproc::start_method::fork;
    else if (name == "spawn")
      coproc_test::under_test = coproc::start_method::spawn;
    else if (name == "forkserver")
      coproc_test::under_test = coproc::start_method::forkserver;
    else {
      std::cerr << "COPROC_TEST_START_METHOD=" << name << ": not fork, spawn or forkserver\n";
      return false;
    }
    coproc::set_start_method(coproc_test::under_test);
  }
  if (const char* v = std::getenv("COPROC_TEST_FORCE_PIPE_SENTINEL"); v && *v && *v != '0')
    coproc::testing::force_pipe_sentinel(true);
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  if (!apply_test_environment()) return 2;
  coproc::init(argc, argv);
  coproc_test::self_exe = "/proc/self/exe";

  if (argc >= 3 && std::strcmp(argv[1], "--scenario") == 0) {
    auto& all = coproc_test::scenarios();
    auto it = all.find(argv[2]);
    if (it == all.end()) {
      std::cerr << "unknown scenario " << argv[2] << "\n";
      return 99;
    }
    return it->second(argc - 3, argv + 3);
  }

  std::vector<char*> args(argv, argv + argc);
  std::string no_catch = "--catch_system_errors=no";
  args.push_back(no_catch.data());
  args.push_back(nullptr);
  return boost::unit_test::unit_test_main(&init_tests, static_cast<int>(args.size()) - 1,
                                          args.data());
}
