// coproc internals: what becomes readable when a process has ended.
#pragma once

#include "core/private.hpp"

#include <variant>

#include "core/fd.hpp"

namespace coproc::detail {

// The kernel's exit event where the kernel gives pidfds; Python's pipe otherwise. The two are
// kinds of one type, so nothing outside this file asks which one it holds: what differs is
// whether the sentinel can carry signals (a pidfd can; the pipe cannot, and then the status
// source signals by pid, see status_source.hpp).
class sentinel {
 public:
  // A pidfd: readable exactly when the process has ended.
  struct pidfd {
    private_fd fd;
  };
  // Python's sentinel: the read end of a pipe whose write end only the child holds, so EOF
  // comes when it has ended (a moment before it can be reaped). `keep_alive` is our end of
  // the second pipe, whose EOF tells the child that we are gone (its parent_process()).
  struct pipe {
    private_fd read_end;
    private_fd keep_alive;
  };

  sentinel() = default;
  explicit sentinel(pidfd p) : v_(std::move(p)) {}
  explicit sentinel(pipe p) : v_(std::move(p)) {}
  // Ready at once: for a process that ended before anybody could watch it.
  static sentinel already_ended();

  int fd() const noexcept;
  // The pidfd, or -1.
  int pidfd_or_none() const noexcept;
  // Sends `sig` through the pidfd. True when that settled it (sent, or the process is gone);
  // false when this sentinel cannot carry signals (a pipe, or a kernel without
  // pidfd_send_signal), and the caller must signal by pid. Throws std::system_error.
  bool send_signal(int sig) const;

 private:
  std::variant<std::monostate, pidfd, pipe> v_;
};

// Whether start() creates pidfd sentinels: probed once (ENOSYS, EPERM: the pipe, for good).
bool pidfd_sentinels();
// testing::force_pipe_sentinel.
void force_pipe_sentinels(bool on) noexcept;

}  // namespace coproc::detail
