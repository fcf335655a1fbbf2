// coproc internals: the shared state of one started process (its sentinel, its single reap,
// its status).
#pragma once

#include "core/private.hpp"

#include <sys/types.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <optional>

#include <boost/container/small_vector.hpp>

#include <coproc/process.hpp>

#include "child/sentinel.hpp"
#include "child/status_source.hpp"

namespace coproc::detail {

// The asynchronous joins of one process on one reactor, sharing one registration of its
// sentinel (async/exit_watch.hpp).
class reactor_watch {
 public:
  virtual ~reactor_watch() = default;
  // The process object is gone: every pending join completes with operation_aborted.
  virtual void abort_all() noexcept = 0;
};

// One per started process, shared by the process object, the registry of children (which
// outlives a destroyed object until the reap) and pending asynchronous joins.
//
// Waiting needs no lock (poll on the sentinel, the reactor), so any number of threads and
// coroutines wait at once; the status is collected once, under `reap_mutex_`, and everybody
// reads the cached copy.
class child_state {
 public:
  // The state is complete before it is shared: nothing is attached later.
  child_state(pid_t pid, sentinel s, status_source source, bool daemon);
  child_state(const child_state&) = delete;
  child_state& operator=(const child_state&) = delete;

  pid_t pid() const noexcept { return pid_; }
  int sentinel_fd() const noexcept { return sentinel_.fd(); }
  // Where to wait for the status: the sentinel, or the status source's own descriptor when its
  // status follows the end (a forkserver's report).
  int wait_fd() const noexcept {
    const int fd = std::visit([](const auto& src) { return src.wait_fd(); }, source_);
    return fd >= 0 ? fd : sentinel_.fd();
  }
  bool daemon() const noexcept { return daemon_; }

  // True once the process has ended and its status is known (or known to be lost).
  bool ended() const noexcept { return ended_.load(std::memory_order_acquire); }

  // Non-blocking: collects the status if the process has ended. Returns ended().
  bool try_reap();

  // Blocks until the process has ended or the deadline passed. Returns ended().
  bool wait(std::optional<std::chrono::steady_clock::time_point> deadline);

  // After ended(): the status (lost_status() when nobody can tell it).
  const exit_status& status() const noexcept { return *status_; }
  int exitcode() const noexcept { return status_->exitcode; }

  // False for a process we only watch (our parent), whose exit code is never ours to report:
  // Python's _ParentProcess.join(timeout) returns None however it ends.
  bool has_exit_code() const noexcept {
    return !std::holds_alternative<watched_only>(source_);
  }

  // Sends `sig` unless the process has ended; never hits a reused pid.
  void send_signal(int sig);

  // The watch of `reactor`, or a new one from `make()` (a std::shared_ptr<W>), registered
  // here under the lock so that joins on one reactor share one registration.
  template <class W, class Make>
  std::shared_ptr<W> watch_for(const void* reactor, Make&& make);
  // The process object is gone: pending joins are aborted.
  void abort_waiters() noexcept;
  // Guards the watches of this state (and their lists of waiters). Never held while the
  // status is collected, nor while a waiter completes.
  std::mutex& watch_mutex() noexcept { return reap_mutex_; }

  // Bookkeeping of the registry of children; guarded by the registry's mutex.
  process* owner = nullptr;
  bool listed = false;
  std::list<std::shared_ptr<child_state>>::iterator position;

 private:
  bool reap_locked();

  const pid_t pid_;
  const sentinel sentinel_;
  status_source source_;
  const bool daemon_;

  std::mutex reap_mutex_;
  std::atomic<bool> ended_{false};
  std::optional<exit_status> status_;

  struct watch_entry {
    const void* reactor;
    std::weak_ptr<reactor_watch> watch;
  };
  // Under reap_mutex_ too: both are held for a few instructions, and an async server pays for
  // every byte of this state per awaited child.
  boost::container::small_vector<watch_entry, 1> watches_;
};

template <class W, class Make>
std::shared_ptr<W> child_state::watch_for(const void* reactor, Make&& make) {
  std::lock_guard lock(reap_mutex_);
  for (auto& e : watches_)
    if (e.reactor == reactor)
      if (auto w = e.watch.lock()) return std::static_pointer_cast<W>(w);
  watches_.erase(std::remove_if(watches_.begin(), watches_.end(),
                                [](const watch_entry& e) { return e.watch.expired(); }),
                 watches_.end());
  std::shared_ptr<W> w = make();
  watches_.push_back({reactor, w});
  return w;
}

}  // namespace coproc::detail
