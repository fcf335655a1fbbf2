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
//   int wait_fd() const;
//       The descriptor that becomes readable when collect() may succeed, or -1 for the
//       sentinel's (which is exact for every source but the forkserver's).
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

#include "core/fd.hpp"

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
  int wait_fd() const noexcept { return -1; }
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
  int wait_fd() const noexcept { return -1; }
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
  int wait_fd() const noexcept { return -1; }
  void signal_by_pid(int) {}  // never reached: collect() ends it first
};

// A forkserver's child: the server is its real parent, reaps it and writes its status (exit
// code, signal, core dump, CPU times, peak RSS) to `status`, a socket of its own per child;
// that socket is the place to wait, since the status follows the child's end by the server's
// wake-up. Signals without a pidfd are asked of the server, which knows whether it has reaped.
// If the server dies first, the status is lost: exit code 255 once the child has ended (its
// pidfd says when), unless this process became its parent (a child subreaper) and reaps it.
class reported_by_server {
 public:
  reported_by_server(pid_t pid, int pidfd, private_fd status) noexcept
      : pid_(pid), pidfd_(pidfd), status_(std::move(status)) {}
  std::optional<exit_status> collect();
  bool wait_for_exit();
  int wait_fd() const noexcept { return status_.get(); }
  void signal_by_pid(int sig);

 private:
  pid_t pid_;
  int pidfd_;  // owned by the sentinel; -1 when the sentinel is `status` itself
  std::optional<exit_status> collect_once();
  std::optional<exit_status> read_report(bool wait, bool* delivered);
  private_fd status_;
  bool server_gone_ = false;
  std::optional<exit_status> stashed_;  // a status that came while a signal was acknowledged
};

using status_source =
    std::variant<reaped_by_waitid, watched_only, lost_before_watched, reported_by_server>;

}  // namespace coproc::detail
