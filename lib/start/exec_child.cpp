#include "start/exec_child.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "runtime/runtime.hpp"
#include "start/child_spec.hpp"
#include "start/forkserver/forkserver.hpp"

namespace coproc::detail {

namespace {
std::atomic<bool> initialised{false};
std::mutex name_mutex;
std::string argv0;
}  // namespace

void init_program(int argc, char** argv) {
  // Recorded first: a spawned child and a server's children start children of their own.
  {
    std::lock_guard lock(name_mutex);
    argv0 = argc >= 1 && argv[0] ? argv[0] : "";
  }
  initialised.store(true, std::memory_order_release);
  if (argc >= 2 && argv[1] == spawn_child_flag) spawned_child_main();
  if (argc >= 2 && argv[1] == forkserver_flag) forkserver_main();
  (void)rt();  // the module state exists before any thread is started
}

void require_init(std::string_view method) {
  if (!initialised.load(std::memory_order_acquire))
    throw std::logic_error("the " + std::string(method) +
                           " start method needs coproc::init(argc, argv) as the first statement "
                           "of main(): the child is this program started again");
}

std::string program_name() {
  std::lock_guard lock(name_mutex);
  return argv0.empty() ? std::string("coproc-child") : argv0;
}

void spawned_child_main() {
  child_spec spec;
  bytes args;
  try {
    read_spec(exec_child_first_fd, spec, args);
  } catch (const std::exception& e) {
    // The parent gave up (its start() failed after the exec) or sent something else.
    std::fprintf(stderr, "coproc: a spawned child could not read its start message: %s\n",
                 e.what());
    ::_exit(1);
  }
  ::close(exec_child_first_fd);
  int next = exec_child_first_fd + 1;
  int alive_fd = -1;
  int exit_fd = -1;
  if (!spec.by_pidfd) {
    exit_fd = next++;  // the exit pipe's write end: held, never touched, until the child ends
    alive_fd = next++;
  }
  std::vector<int> handed;
  for (int i = 0; i < spec.handed; ++i)
    handed.push_back(next++);
  run_exec_child(std::move(spec), std::move(args), std::move(handed), -1, exit_fd, alive_fd);
}

}  // namespace coproc::detail
