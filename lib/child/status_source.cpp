#include "child/status_source.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>

#include "core/syscalls.hpp"
#include "start/forkserver/wire.hpp"

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

// One report from the server: a status (returned), an acknowledged signal (*delivered), or the
// end of the stream (server_gone_). Non-blocking unless `wait`.
std::optional<exit_status> reported_by_server::read_report(bool wait, bool* delivered) {
  forkserver_wire::report st;
  const ssize_t n = retry_eintr([&] {
    return ::recv(status_.get(), &st, sizeof st, MSG_WAITALL | (wait ? 0 : MSG_DONTWAIT));
  });
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return std::nullopt;
  if (n != static_cast<ssize_t>(sizeof st)) {
    server_gone_ = true;  // end of stream (or a torn record): the status went with the server
    return std::nullopt;
  }
  if (st.kind == forkserver_wire::report::delivered) {
    if (delivered) *delivered = true;
    return std::nullopt;
  }
  siginfo_t info{};
  info.si_code = st.code;
  info.si_status = st.value;
  rusage usage{};
  usage.ru_utime.tv_sec = st.user_us / 1'000'000;
  usage.ru_utime.tv_usec = st.user_us % 1'000'000;
  usage.ru_stime.tv_sec = st.system_us / 1'000'000;
  usage.ru_stime.tv_usec = st.system_us % 1'000'000;
  usage.ru_maxrss = st.max_rss_kib;
  return to_status(info, usage);
}

std::optional<exit_status> reported_by_server::collect() {
  auto s = collect_once();
  // Ended: the socket stays readable from now on (without pidfds it is the sentinel, which
  // Python keeps ready after the reap), whenever the server gets round to closing its end.
  if (s) ::shutdown(status_.get(), SHUT_RD);
  return s;
}

std::optional<exit_status> reported_by_server::collect_once() {
  if (stashed_) return stashed_;
  if (!server_gone_) {
    if (auto s = read_report(false, nullptr)) return s;
    // Ended (its pidfd says so) but not reported yet: the server's report follows at once, and
    // a child that has ended must not read as running (join(0), is_alive()). A hang guard only.
    if (!server_gone_ && pidfd_ >= 0 && wait_readable(pidfd_, std::chrono::steady_clock::now()) &&
        wait_readable(status_.get(), std::chrono::steady_clock::now() + std::chrono::seconds(5)))
      if (auto s = read_report(false, nullptr)) return s;
    if (!server_gone_) return std::nullopt;
  }
  if (pidfd_ < 0) return lost_status();  // the status socket was the only way to tell
  if (!wait_readable(pidfd_, std::chrono::steady_clock::now())) return std::nullopt;  // runs on
  // Ended. An orphan is adopted by the nearest child subreaper: if that is us, its status is ours.
  siginfo_t info{};
  rusage usage{};
  if (sys_waitid(P_PIDFD, static_cast<id_t>(pidfd_), &info, WEXITED | WNOHANG, &usage) == 0 &&
      info.si_pid != 0)
    return to_status(info, usage);
  return lost_status();
}

bool reported_by_server::wait_for_exit() {
  // The status socket says first; if the server has gone, the pidfd says when the child ends.
  // Called without the reap lock: it touches nothing that collect() keeps. Once collect() has
  // consumed the status, ended() is set and nobody waits here any more.
  if (!wait_readable(status_.get(), std::nullopt)) return false;
  char probe;
  const ssize_t n =
      retry_eintr([&] { return ::recv(status_.get(), &probe, 1, MSG_PEEK | MSG_DONTWAIT); });
  if (n > 0) return true;
  if (pidfd_ >= 0) wait_readable(pidfd_, std::nullopt);
  return true;
}

void reported_by_server::signal_by_pid(int sig) {
  // Only the server knows whether the pid is still its unreaped child. It acknowledges once it
  // has sent the signal, so that this returns when kill() would have; a status that comes first
  // is kept for collect() (we hold the reap lock: nobody else reads this socket).
  if (stashed_ || server_gone_) return;
  forkserver_wire::signal req{sig};
  if (retry_eintr([&] { return ::send(status_.get(), &req, sizeof req, MSG_NOSIGNAL); }) < 0) {
    if (errno == EPIPE || errno == ECONNRESET) return;
    throw_errno("signal through the forkserver");
  }
  bool delivered = false;
  while (!delivered && !server_gone_ && !stashed_) stashed_ = read_report(true, &delivered);
}

void watched_only::signal_by_pid(int) {
  throw_errno(EPERM, "signal a process that is not our child");
}

}  // namespace coproc::detail
