#include "child/status_source.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>

#include "core/syscalls.hpp"

namespace coproc::detail {

exit_status lost_status() noexcept {
  exit_status s{};
  s.exitcode = 255;
  s.lost = true;
  return s;
}

namespace {

exit_status to_status(const siginfo_t& info, const rusage& usage) {
  using namespace std::chrono;
  exit_status s{};
  switch (info.si_code) {
    case CLD_EXITED:
      s.exitcode = info.si_status;
      break;
    case CLD_DUMPED:
      s.core_dumped = true;
      [[fallthrough]];
    case CLD_KILLED:
      s.exitcode = -info.si_status;
      s.signal = info.si_status;
      break;
    default:  // WEXITED reports nothing else; keep the raw value visible if it ever does
      s.exitcode = info.si_status;
  }
  s.user_time = seconds(usage.ru_utime.tv_sec) + microseconds(usage.ru_utime.tv_usec);
  s.system_time = seconds(usage.ru_stime.tv_sec) + microseconds(usage.ru_stime.tv_usec);
  s.max_rss_kib = static_cast<std::size_t>(usage.ru_maxrss);
  return s;
}

// waitid(P_PIDFD) arrived in Linux 5.4, one release after pidfd_open: on 5.3 the pid is used
// instead, which is safe because nobody but us reaps the (still unreaped) child.
std::atomic<bool> waitid_pidfd_works{true};

}  // namespace

std::optional<exit_status> reaped_by_waitid::collect() {
  siginfo_t info{};
  rusage usage{};
  int r;
  for (;;) {
    const bool by_pidfd = pidfd_ >= 0 && waitid_pidfd_works.load(std::memory_order_relaxed);
    r = retry_eintr([&] {
      return by_pidfd ? sys_waitid(P_PIDFD, static_cast<id_t>(pidfd_), &info, WEXITED | WNOHANG,
                                   &usage)
                      : sys_waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG,
                                   &usage);
    });
    if (r == -1 && by_pidfd && errno == EINVAL) {
      waitid_pidfd_works = false;
      continue;
    }
    break;
  }
  if (r == -1) {
    // Somebody else took the status: a waitpid(-1) elsewhere, or SIGCHLD set to SIG_IGN (the
    // kernel then reaps by itself). Say so; never report "still running".
    if (errno == ECHILD) return lost_status();
    throw_errno("waitid");
  }
  if (info.si_pid == 0) return std::nullopt;  // WNOHANG: not yet
  return to_status(info, usage);
}

bool reaped_by_waitid::wait_for_exit() {
  // With a pidfd, polling it is exact. Without, the pipe's EOF can be delayed by a grandchild
  // that inherited the write end: waitid(WNOWAIT) waits for the exit itself without reaping,
  // so concurrent waiters cannot steal the status from each other.
  if (pidfd_ >= 0) return false;
  siginfo_t info{};
  if (retry_eintr([&] {
        return sys_waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT, nullptr);
      }) == -1 &&
      errno != ECHILD)
    throw_errno("waitid");
  return true;
}

void reaped_by_waitid::signal_by_pid(int sig) {
  // Safe: we are the only reaper and the child is not reaped (the caller's contract).
  if (::kill(pid_, sig) == -1 && errno != ESRCH) throw_errno("kill");
}

std::optional<exit_status> watched_only::collect() {
  if (wait_readable(fd_, std::chrono::steady_clock::now())) return lost_status();
  return std::nullopt;
}

void watched_only::signal_by_pid(int) {
  throw_errno(EPERM, "signal a process that is not our child");
}

}  // namespace coproc::detail
