// The example tests' one helper: run an example as the tour does, its stdout and stderr read
// together, its wait status kept.
#pragma once

#include <stdio.h>
#include <sys/wait.h>

#include <string>

#include <boost/test/unit_test.hpp>

namespace example_test {

struct run_result {
  int status = -1;
  std::string output;
};

inline run_result run(const std::string& command) {
  run_result r;
  FILE* f = ::popen((command + " 2>&1").c_str(), "r");
  BOOST_REQUIRE(f != nullptr);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) r.output.append(buf, n);
  r.status = ::pclose(f);
  return r;
}

inline bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace example_test
