// The pool example (examples/pool_tour.cpp), run as the tour runs it, under each start method:
// every line checked here was computed, or caused, by a worker process.
#include <stdio.h>
#include <sys/wait.h>

#include <string>

#include <boost/test/unit_test.hpp>

#include "run_program.hpp"

#ifndef COPROC_POOL_TOUR
#error "COPROC_POOL_TOUR must name the example program (test/examples/meson.build)"
#endif

using example_test::has;
using example_test::run;
using example_test::run_result;

BOOST_AUTO_TEST_CASE(the_tour_runs_under_every_start_method) {
  for (const char* method : {"fork", "spawn", "forkserver"}) {
    BOOST_TEST_CONTEXT(method) {
      const run_result r = run(std::string("timeout 120 ") + COPROC_POOL_TOUR + " --method " + method);
      BOOST_TEST(WIFEXITED(r.status));
      BOOST_TEST(WEXITSTATUS(r.status) == 0, r.output);
      BOOST_TEST(has(r.output, std::string("start method ") + method), r.output);
      BOOST_TEST(has(r.output, "apply: 12*12 = 144 (from "), r.output);
      BOOST_TEST(has(r.output, "map: 1 4 9 16 25 36 49 64\n"), r.output);
      // sum over a million of (x % 1000)^2: 1000 times the sum of the squares below 1000
      BOOST_TEST(has(r.output, "imap: 1000000 results, sum 332833500000, at most 4 chunks in flight"), r.output);
      BOOST_TEST(has(r.output, "crash: the pool's worker exited with exit code -11 while running the task (it was replaced)"), r.output);
      BOOST_TEST(has(r.output, " was replaced by "), r.output);
      BOOST_TEST(has(r.output, "deadline: the task ran past its deadline of 100 ms: its worker was killed and replaced"), r.output);
      BOOST_TEST(has(r.output, "deadline: the pool goes on: 3*3 = 9"), r.output);
      BOOST_TEST(has(r.output, "raise: std::domain_error: math domain error"), r.output);
      BOOST_TEST(has(r.output, "status: 50M additions took "), r.output);
      BOOST_TEST(has(r.output, "closed and joined"), r.output);
    }
  }
}

BOOST_AUTO_TEST_CASE(an_unknown_method_is_refused) {
  const run_result r = run(std::string(COPROC_POOL_TOUR) + " --method vfork");
  BOOST_TEST(WEXITSTATUS(r.status) == 2);
  BOOST_TEST(has(r.output, "unknown start method 'vfork'"), r.output);
}
