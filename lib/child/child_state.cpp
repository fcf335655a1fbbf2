#include "child/child_state.hpp"

#include <algorithm>
#include <thread>
#include <vector>

#include "core/syscalls.hpp"

namespace coproc::detail {

child_state::child_state(pid_t pid, sentinel s, status_source source, bool daemon)
    : pid_(pid), sentinel_(std::move(s)), source_(std::move(source)), daemon_(daemon) {}

bool child_state::reap_locked() {
  auto s = std::visit([](auto& src) { return src.collect(); }, source_);
  if (!s) return false;
  status_ = *s;
  ended_.store(true, std::memory_order_release);
  return true;
}

bool child_state::try_reap() {
  if (ended()) return true;
  std::lock_guard lock(reap_mutex_);
  if (ended()) return true;
  return reap_locked();
}

bool child_state::wait(std::optional<std::chrono::steady_clock::time_point> deadline) {
  using namespace std::chrono;
  if (ended()) return true;
  // A source may wake for something that is not the end (a forkserver's acknowledgement of a
  // signal, read a moment later by the thread that sent the signal): wait again until it is.
  if (!deadline)
    while (std::visit([](auto& src) { return src.wait_for_exit(); }, source_))
      if (try_reap()) return true;
  auto backoff = microseconds(50);
  for (;;) {
    // Poll first: a process that is still running costs one ppoll and one collect, not an
    // extra collect up front.
    if (!wait_readable(wait_fd(), deadline)) return try_reap();
    if (try_reap()) return true;
    // Ready, but the status is not there yet: the pipe's write end closes a moment before the
    // child becomes a zombie (or early, if the child closed it itself).
    const auto now = steady_clock::now();
    if (deadline && now >= *deadline) return try_reap();
    auto pause = duration_cast<steady_clock::duration>(backoff);
    if (deadline) pause = std::min(pause, *deadline - now);
    std::this_thread::sleep_for(pause);
    backoff = std::min(backoff * 2, microseconds(milliseconds(10)));
  }
}

void child_state::send_signal(int sig) {
  if (ended()) return;  // reaped: the pid may belong to somebody else by now
  if (sentinel_.send_signal(sig)) return;
  // No pidfd: the pid names our process only while it is provably not reaped, so look again
  // under the reap lock.
  std::lock_guard lock(reap_mutex_);
  if (ended() || reap_locked()) return;
  std::visit([sig](auto& src) { src.signal_by_pid(sig); }, source_);
}

void child_state::abort_waiters() noexcept {
  std::vector<std::shared_ptr<reactor_watch>> live;
  {
    std::lock_guard lock(reap_mutex_);
    for (auto& e : watches_)
      if (auto w = e.watch.lock()) live.push_back(std::move(w));
    watches_.clear();
  }
  for (auto& w : live) w->abort_all();
}

}  // namespace coproc::detail
