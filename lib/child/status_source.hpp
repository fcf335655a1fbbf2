// coproc internals: where the status of an ended process comes from.
//
// The sentinel says *that* a process ended; a status source says *how*. Who can tell depends
// on who the real parent is: for a child we forked, our own waitid; for a forkserver's child,
// a message from the server; for our own parent, nobody here (its status belongs to its
// parent). The start method that creates the process chooses the source.
//
// The sources are kinds of one sum type (tokio's fallback-as-a-type): the state holds one by
// value, with no allocation per start, and every source has the same three operations:
//
//   std::optional<exit_status> collect();
//       Non-blocking, called by one thread at a time (under the state's reap lock). The
//       status if the process has ended and its status can be had now; nullopt if not yet
//       (it runs, or its sentinel was ready a moment before the status). A status that can
//       never come is lost_status(). Operating-system errors throw std::system_error.
//   bool wait_for_exit();
//       Blocks until collect() would find the process ended, without consuming anything.
//       False where polling the sentinel is the better way to wait (nothing was waited for).
//   void signal_by_pid(int sig);
//       Signals by pid, for a sentinel that cannot carry signals. Called under the reap lock
//       while collect() has not reported the end, so a source that is the real parent knows
//       the pid is still the process's.
#pragma once

#include "core/private.hpp"

#include <sys/types.h>

#include <optional>
#include <variant>

#include <coproc/process.hpp>

namespace coproc::detail {

// The status of a process whose status was taken by somebody else or went with the server
// that was its parent: exit code 255 (Python's forkserver rule), `lost` set.
exit_status lost_status() noexcept;

// Our own child: reaped with waitid (P_PIDFD when `pidfd` >= 0, else P_PID), once, with its
// resource usage. ECHILD (somebody else reaped it: SIGCHLD ignored, a waitpid(-1) elsewhere)
// reads as lost.
class reaped_by_waitid {
 public:
  reaped_by_waitid(pid_t pid, int pidfd) noexcept : pid_(pid), pidfd_(pidfd) {}
  std::optional<exit_status> collect();
  bool wait_for_exit();
  void signal_by_pid(int sig);

 private:
  pid_t pid_;
  int pidfd_;  // owned by the sentinel
};

// A process we only watch (our own parent): it has ended when its sentinel is ready; its
// status is not ours to know and reads as lost.
class watched_only {
 public:
  explicit watched_only(int sentinel_fd) noexcept : fd_(sentinel_fd) {}
  std::optional<exit_status> collect();
  bool wait_for_exit() { return false; }
  void signal_by_pid(int sig);

 private:
  int fd_;  // owned by the sentinel
};

// A child whose status was lost before it could be watched (the kernel reaped it between fork
// and pidfd_open): ended, lost, and its pid is never used again.
class lost_before_watched {
 public:
  std::optional<exit_status> collect() { return lost_status(); }
  bool wait_for_exit() { return false; }
  void signal_by_pid(int) {}  // never reached: collect() ends it first
};

using status_source = std::variant<reaped_by_waitid, watched_only, lost_before_watched>;

}  // namespace coproc::detail
