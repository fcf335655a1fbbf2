// coproc internals: what a forkserver and its client say to each other. Both ends are the
// same program (the server is this program started again), so the records are plain structs.
//
//   control socket (SOCK_SEQPACKET, one per client process, made when the server starts):
//     client -> server  request, with SCM_RIGHTS [status socket, handed descriptors...]
//   status socket (SOCK_STREAM, one per child, made by the client for each start):
//     client -> server  the child's start message (start/child_spec.hpp), request.message_size
//     server -> client  reply, with SCM_RIGHTS [the child's pidfd] when asked for
//     server -> client  report{delivered}, for each signal below, once it is sent
//     server -> client  report{status}, when the server has reaped the child; then it closes
//     client -> server  signal, any number of times (the client has no pidfd to signal with)
#pragma once

#include "core/private.hpp"

#include <cstdint>
#include <span>

namespace coproc::detail::forkserver_wire {

struct request {
  std::uint32_t message_size = 0;
  std::uint32_t handed = 0;     // descriptors after the status socket
  std::uint8_t send_pidfd = 1;  // 0: the client waits on the status socket (no pidfds)
  std::uint8_t has_alive = 0;   // 1: after the status socket, the read end of a pipe whose end
                                // of file tells the child that its parent is gone (no pidfds)
};

struct reply {
  std::int32_t pid = -1;  // > 0: the child; otherwise `error` says why fork failed
  std::int32_t error = 0;
};

struct report {
  enum kind_t : std::int32_t { status = 1, delivered = 2 };
  std::int32_t kind = status;
  std::int32_t code = 0, value = 0;  // waitid's si_code and si_status
  std::int64_t user_us = 0, system_us = 0, max_rss_kib = 0;
};

struct signal {
  std::int32_t sig = 0;
};

// SCM_RIGHTS can carry this many descriptors in one message (the kernel's SCM_MAX_FD, less the
// status socket).
inline constexpr std::size_t max_handed = 252;

// sendmsg of `size` bytes with `fds` attached (MSG_NOSIGNAL). Returns bytes sent or -1 (errno).
long send_with_fds(int socket, const void* data, std::size_t size, std::span<const int> fds) noexcept;
// recvmsg of at most `size` bytes; received descriptors (O_CLOEXEC) go to `fds` (at most
// fds.size(); *count says how many). Returns bytes received, 0 at end of stream, -1 (errno).
long recv_with_fds(int socket, void* data, std::size_t size, std::span<int> fds,
                   std::size_t* count, int flags = 0) noexcept;

}  // namespace coproc::detail::forkserver_wire
