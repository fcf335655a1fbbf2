// The fork start method: Python's popen_fork, with a pidfd for a sentinel.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "core/syscalls.hpp"
#include "process_access.hpp"
#include "runtime/runtime.hpp"
#include "runtime/std_streams.hpp"
#include "start/bootstrap.hpp"
#include "start/fork_policy.hpp"
#include "start/launcher.hpp"

namespace coproc::detail {

namespace {

class fork_method final : public launcher {
 public:
  // Any callable, any arguments; in a multi-threaded program, the user's fork_thread_policy.
  void check(const process&) const override { check_fork_thread_policy(); }
  std::shared_ptr<child_state> launch(process& self) override;
};

// A failed start leaves no child behind. While the child is ours and unreaped (waitid with
// WNOWAIT finds it), its pid is safe to signal and wait for.
void kill_unreaped(pid_t pid) noexcept {
  siginfo_t info{};
  if (retry_eintr([&] {
        return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
      }) != 0)
    return;
  ::kill(pid, SIGKILL);
  int status = 0;
  retry_eintr([&] { return ::waitpid(pid, &status, 0); });
}

std::shared_ptr<child_state> fork_method::launch(process& self) {
  const bool daemon = process_access::daemon(self);
  const bool by_pidfd = pidfd_sentinels();
  private_pipe exit_pipe, alive_pipe;  // the fallback: child-ended and parent-gone pipes
  if (!by_pidfd) {
    exit_pipe = make_private_pipe();
    alive_pipe = make_private_pipe();
  }
  // The child reads these from its copy of this frame, which it never leaves.
  const std::string parent_name = rt().current->name();
  std::vector<int> keep = {exit_pipe.write_end.get(), alive_pipe.read_end.get()};
  process_access::handed_descriptors(self, keep);
  const child_start start{&self, {self_pid(), parent_name, by_pidfd, alive_pipe.read_end.get()},
                          keep};
  flush_std_streams();

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

  bool ours = true;  // false once the pid may be somebody else's
  try {
    if (!by_pidfd) {
      exit_pipe.write_end.reset();
      alive_pipe.read_end.reset();
      return std::make_shared<child_state>(
          pid, sentinel(sentinel::pipe{std::move(exit_pipe.read_end), std::move(alive_pipe.write_end)}),
          reaped_by_waitid(pid, -1), daemon);
    }
    private_fd fd = private_fd::create([&] { return sys_pidfd_open(pid); });
    if (fd) {
      const int pidfd = fd.get();
      return std::make_shared<child_state>(pid, sentinel(sentinel::pidfd{std::move(fd)}),
                                           reaped_by_waitid(pid, pidfd), daemon);
    }
    if (errno != ESRCH) throw_errno("pidfd_open");
    // Our child, already gone before pidfd_open: only a reap by somebody else removes a child
    // of ours (SIGCHLD ignored, so the kernel reaps it; or a waitpid(-1) elsewhere). It
    // started; its status is lost, as it would be a moment later. Its pid is never signalled
    // or waited for again: it may be somebody else's by now.
    ours = false;
    return std::make_shared<child_state>(pid, sentinel::already_ended(), lost_before_watched(),
                                         daemon);
  } catch (...) {
    if (ours) kill_unreaped(pid);
    throw;
  }
}

}  // namespace

launcher& fork_launcher() {
  static fork_method method;
  return method;
}

}  // namespace coproc::detail
