// The fork start method: Python's popen_fork, with a pidfd for a sentinel.
#include <unistd.h>

#include <string>
#include <vector>

#include "core/syscalls.hpp"
#include "process_access.hpp"
#include "runtime/runtime.hpp"
#include "start/bootstrap.hpp"
#include "start/fork_policy.hpp"
#include "start/launcher.hpp"
#include "start/own_child.hpp"

namespace coproc::detail {

namespace {

class fork_method final : public launcher {
 public:
  // Any callable, any arguments; in a multi-threaded program, the user's fork_thread_policy.
  void check(const process&) const override { check_fork_thread_policy(); }
  std::shared_ptr<child_state> launch(process& self) override;
};

std::shared_ptr<child_state> fork_method::launch(process& self) {
  const bool daemon = process_access::daemon(self);
  const bool by_pidfd = pidfd_sentinels();
  fallback_pipes pipes;
  if (!by_pidfd) {
    pipes.exit = make_private_pipe();
    pipes.alive = make_private_pipe();
  }
  // The child reads these from its copy of this frame, which it never leaves.
  const std::string parent_name = rt().current->name();
  std::vector<int> keep = {pipes.exit.write_end.get(), pipes.alive.read_end.get()};
  process_access::handed_descriptors(self, keep);
  const child_start start{&self, {self_pid(), parent_name, by_pidfd, pipes.alive.read_end.get()},
                          keep};

  pid_t pid;
  {
    exclusive_fork_lock lock;
    pid = ::fork();
    if (pid == 0) {
      lock.reset_in_child();
      run_child(start);
    }
  }
  if (pid < 0) throw_errno("fork");

  return watch_own_child(pid, by_pidfd, std::move(pipes), daemon);
}

}  // namespace

launcher& fork_launcher() {
  static fork_method method;
  return method;
}

}  // namespace coproc::detail
