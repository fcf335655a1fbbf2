// The two-language example (examples/two_languages.cpp with two_languages.py), run as the tour
// runs it: a real Python worker authenticates to the C++ listener, reads the typed messages
// with json.loads and answers in JSON; a second worker with a wrong key is refused on both
// sides. Every line checked here comes from a value that crossed the connection.
#include <stdio.h>
#include <sys/wait.h>

#include <string>

#include <boost/test/unit_test.hpp>

#include "run_program.hpp"

#ifndef COPROC_TWO_LANGUAGES
#error "COPROC_TWO_LANGUAGES must name the example program (test/examples/meson.build)"
#endif

using example_test::has;
using example_test::run;
using example_test::run_result;

BOOST_AUTO_TEST_CASE(a_python_worker_answers_and_a_wrong_key_is_refused_on_both_sides) {
  const run_result r = run(std::string("timeout 120 ") + COPROC_TWO_LANGUAGES);
  BOOST_TEST_MESSAGE(r.output);
  BOOST_TEST(WIFEXITED(r.status));
  BOOST_TEST(WEXITSTATUS(r.status) == 0, r.output);
  BOOST_TEST(has(r.output, "c++: the worker answered the challenge and checked ours"), r.output);
  // Python counted the words of the text C++ sent, found the longest, and sent its version.
  BOOST_TEST(has(r.output, "c++: job 0: 4 words, longest 'quick' (Python 3."), r.output);
  BOOST_TEST(has(r.output, "c++: job 1: 0 words, longest none (Python 3."), r.output);
  BOOST_TEST(has(r.output, "c++: job 2: 4 words, longest 'multiprocessing' (Python 3."),
             r.output);
  BOOST_TEST(has(r.output, "c++: the worker exited with 0"), r.output);
  // The wrong key: Python's AuthenticationError text on its side, coproc's error on ours.
  BOOST_TEST(has(r.output, "python: the C++ listener refused my key: digest sent was rejected"),
             r.output);
  BOOST_TEST(has(r.output, "c++: refused a worker: authentication failed"), r.output);
  BOOST_TEST(has(r.output, "c++: that worker exited with 3"), r.output);
}
