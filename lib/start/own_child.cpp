#include "start/own_child.hpp"

#include <signal.h>
#include <sys/wait.h>

#include "core/syscalls.hpp"

namespace coproc::detail {

// While the child is ours and unreaped (waitid with WNOWAIT finds it), its pid is safe to
// signal and wait for.
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

std::shared_ptr<child_state> watch_own_child(pid_t pid, bool by_pidfd, fallback_pipes pipes,
                                             bool daemon) {
  bool ours = true;  // false once the pid may be somebody else's
  try {
    if (!by_pidfd) {
      pipes.exit.write_end.reset();
      pipes.alive.read_end.reset();
      return std::make_shared<child_state>(
          pid, sentinel(sentinel::pipe{std::move(pipes.exit.read_end), std::move(pipes.alive.write_end)}),
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

}  // namespace coproc::detail
