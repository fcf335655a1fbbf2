// coproc internals: the shared state of one child (its sentinel, its single reap, its status).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <coproc/process.hpp>

#include "posix.hpp"

namespace coproc::detail {

enum class sentinel_kind : unsigned char { pidfd, pipe };

// A pending asynchronous join, as the state sees it: something to abort when the process
// object goes away.
class join_waiter {
 public:
  virtual ~join_waiter() = default;
  virtual void abort() noexcept = 0;
};

// One per started child, shared by the process object, the registry of children (which
// outlives a destroyed object until the reap) and pending asynchronous joins.
//
// The reap happens once, under `mutex_`, with waitid(WNOHANG) after the sentinel said the
// child ended. Waiting itself (poll on the sentinel, the reactor) needs no lock, so any
// number of threads and coroutines wait at once and all read the one cached status.
class child_state {
 public:
  enum class role : unsigned char {
    child,   // our child: we reap it
    parent,  // the parent of this process (parent_process()): watched, never reaped
  };

  child_state(role r, bool daemon) : role_(r), daemon_(daemon) {}
  child_state(const child_state&) = delete;
  child_state& operator=(const child_state&) = delete;

  // Filled in once by start(), before the state is shared.
  void attach(pid_t pid, owned_fd sentinel, sentinel_kind kind, owned_fd keep_alive = {});
  // Also before the state is shared: the child was reaped by somebody else before it could be
  // watched (err: ECHILD). It has ended, and its status is lost.
  void mark_lost(int err) noexcept;

  pid_t pid() const noexcept { return pid_; }
  int sentinel() const noexcept { return sentinel_.get(); }
  sentinel_kind kind() const noexcept { return kind_; }
  role which() const noexcept { return role_; }
  bool daemon() const noexcept { return daemon_; }

  // True once the child has ended and its status is known (or known to be lost).
  bool ended() const noexcept { return ended_.load(std::memory_order_acquire); }

  // Non-blocking: reaps the child if it has ended. Returns ended().
  bool try_reap();

  // Blocks until the child has ended or the deadline passed. Returns ended().
  bool wait(std::optional<std::chrono::steady_clock::time_point> deadline);

  // After ended(): the status, nullopt for a parent watch; throws std::system_error(ECHILD)
  // if somebody else reaped the child.
  std::optional<exit_status> status() const;
  // The exit code of an ended child; 255 for a parent watch (its status is not ours to
  // know); throws as status() does.
  int exitcode() const;
  // ECHILD when the status was taken by somebody else, else 0.
  int lost_errno() const noexcept { return lost_errno_; }

  // Sends `sig` unless the child has been reaped; never hits a reused pid.
  void send_signal(int sig);

  void add_waiter(std::weak_ptr<join_waiter> waiter);
  void abort_waiters() noexcept;

  // Bookkeeping of the registry of children; guarded by the registry's mutex.
  process* owner = nullptr;
  bool listed = false;
  std::list<std::shared_ptr<child_state>>::iterator position;

 private:
  bool reap_locked();

  const role role_;
  const bool daemon_;
  pid_t pid_ = 0;
  owned_fd sentinel_;
  owned_fd keep_alive_;  // pipe fallback: the write end whose EOF tells the child we are gone
  sentinel_kind kind_ = sentinel_kind::pidfd;

  std::mutex mutex_;
  std::atomic<bool> ended_{false};
  std::optional<exit_status> status_;
  int lost_errno_ = 0;
  std::vector<std::weak_ptr<join_waiter>> waiters_;
  std::size_t prune_at_ = 8;
};

}  // namespace coproc::detail
