// The default start method, and init().
#include <atomic>

#include <coproc/start_method.hpp>

#include "start/exec_child.hpp"

namespace coproc {

namespace {
std::atomic<start_method> default_method{start_method::fork};
}

void set_start_method(start_method method) { default_method = method; }
start_method get_start_method() { return default_method; }

std::string_view to_string(start_method method) {
  switch (method) {
    case start_method::fork:
      return "fork";
    case start_method::spawn:
      return "spawn";
    case start_method::forkserver:
      return "forkserver";
  }
  return "unknown";
}

void init(int argc, char** argv) { detail::init_program(argc, argv); }

}  // namespace coproc
