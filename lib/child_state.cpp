#include "child_state.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <system_error>
#include <thread>

namespace coproc::detail {

namespace {
// waitid(P_PIDFD) arrived in Linux 5.4, one release after pidfd_open: on 5.3 the pid is used
// instead, which is safe because nobody but us reaps the (still unreaped) child.
std::atomic<bool> waitid_pidfd_works{true};
std::atomic<bool> pidfd_signal_works{true};

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
}  // namespace

void child_state::attach(pid_t pid, owned_fd sentinel, sentinel_kind kind, owned_fd keep_alive) {
  pid_ = pid;
  sentinel_ = std::move(sentinel);
  kind_ = kind;
  keep_alive_ = std::move(keep_alive);
}

void child_state::mark_lost(int err) noexcept {
  lost_errno_ = err;
  ended_.store(true, std::memory_order_release);
}

bool child_state::reap_locked() {
  siginfo_t info{};
  rusage usage{};
  int r;
  for (;;) {
    const bool by_pidfd = kind_ == sentinel_kind::pidfd && waitid_pidfd_works.load();
    r = retry_eintr([&] {
      return by_pidfd ? sys_waitid(P_PIDFD, static_cast<id_t>(sentinel_.get()), &info,
                                   WEXITED | WNOHANG, &usage)
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
    if (errno == ECHILD) {
      // Somebody else took the status: a waitpid(-1) elsewhere, or SIGCHLD set to SIG_IGN
      // (the kernel then reaps by itself). Say so; never report "still running".
      lost_errno_ = ECHILD;
      ended_.store(true, std::memory_order_release);
      return true;
    }
    throw_errno("waitid");
  }
  if (info.si_pid == 0) return false;  // WNOHANG: not yet
  status_ = to_status(info, usage);
  ended_.store(true, std::memory_order_release);
  return true;
}

bool child_state::try_reap() {
  if (ended()) return true;
  if (role_ == role::parent) {
    // The parent is not ours to reap: its end is the sentinel becoming ready.
    if (wait_readable(sentinel_.get(), std::chrono::steady_clock::now()))
      ended_.store(true, std::memory_order_release);
    return ended();
  }
  std::lock_guard lock(mutex_);
  if (ended()) return true;
  return reap_locked();
}

bool child_state::wait(std::optional<std::chrono::steady_clock::time_point> deadline) {
  using namespace std::chrono;
  if (ended()) return true;
  if (role_ == role::child && kind_ == sentinel_kind::pipe && !deadline) {
    // Without a pidfd, an unbounded wait does not need the pipe at all (whose EOF a grandchild
    // holding the write end can delay): waitid(WNOWAIT) waits for the exit itself without
    // reaping, so concurrent waiters cannot steal the status from each other; the reap still
    // happens once, under the mutex.
    siginfo_t info{};
    if (retry_eintr([&] {
          return sys_waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT, nullptr);
        }) == -1 &&
        errno != ECHILD)
      throw_errno("waitid");
    return try_reap();
  }
  auto backoff = microseconds(50);
  for (;;) {
    // Poll first: a child that is still running costs one ppoll and one waitid, not an extra
    // waitid up front.
    if (!wait_readable(sentinel_.get(), deadline)) return try_reap();
    if (try_reap()) return true;
    // Ready but not reapable: only the pipe fallback, whose write end closes a moment before
    // the child becomes a zombie (or early, if the child closed it itself).
    const auto now = steady_clock::now();
    if (deadline && now >= *deadline) return try_reap();
    auto pause = duration_cast<steady_clock::duration>(backoff);
    if (deadline) pause = std::min(pause, *deadline - now);
    std::this_thread::sleep_for(pause);
    backoff = std::min(backoff * 2, microseconds(milliseconds(10)));
  }
}

std::optional<exit_status> child_state::status() const {
  if (!ended()) return std::nullopt;
  if (lost_errno_)
    throw std::system_error(lost_errno_, std::generic_category(),
                            "the exit status of child " + std::to_string(pid_) +
                                " was taken by somebody else (waitpid elsewhere, or SIGCHLD "
                                "ignored)");
  return status_;
}

int child_state::exitcode() const {
  if (role_ == role::parent) return 255;
  return status()->exitcode;
}

void child_state::send_signal(int sig) {
  if (ended()) return;  // reaped: the pid may belong to somebody else by now
  if (kind_ == sentinel_kind::pidfd && pidfd_signal_works.load()) {
    if (sys_pidfd_send_signal(sentinel_.get(), sig) == 0 || errno == ESRCH) return;
    if (errno != ENOSYS) throw_errno("pidfd_send_signal");
    pidfd_signal_works = false;
  }
  // No pidfd: kill() is safe only while the child is provably unreaped, so hold the reap
  // lock and look again.
  std::lock_guard lock(mutex_);
  if (ended()) return;
  if (::kill(pid_, sig) == -1 && errno != ESRCH) throw_errno("kill");
}

void child_state::add_waiter(std::weak_ptr<join_waiter> waiter) {
  std::lock_guard lock(mutex_);
  if (waiters_.size() >= prune_at_) {
    std::erase_if(waiters_, [](const auto& w) { return w.expired(); });
    prune_at_ = std::max<std::size_t>(8, waiters_.size() * 2);
  }
  waiters_.push_back(std::move(waiter));
}

void child_state::abort_waiters() noexcept {
  std::vector<std::weak_ptr<join_waiter>> waiters;
  {
    std::lock_guard lock(mutex_);
    waiters.swap(waiters_);
  }
  for (auto& w : waiters)
    if (auto p = w.lock()) p->abort();
}

}  // namespace coproc::detail
