// coproc internals: the messages between a pool and its workers. A frame is an 8-byte length in
// host order (both ends run the same program on the same machine) and the payload. A reader
// may poll for a while before it sleeps: the wake-up of a thread on another CPU costs tens of
// microseconds on a VM, a non-blocking read that finds the message costs one.
#pragma once

#include "core/private.hpp"

#include <chrono>
#include <optional>
#include <span>

#include <coproc/bytes.hpp>

namespace coproc::detail::pool_wire {

// Sends head then body as one frame; throws std::system_error (EPIPE when the peer is gone;
// never SIGPIPE).
void send(int fd, std::span<const std::byte> head, std::span<const std::byte> body);

enum class got { frame, eof, nothing, ended, timeout };

// A frame if one has begun to arrive (the rest is then read, blocking), eof at the end of the
// stream (or a broken one), else nothing.
got try_receive(int fd, bytes& out);

// Waits for a frame: polls `fd` for `spin`, then sleeps in ppoll until `deadline`. `also` (a
// sentinel, or -1) becoming readable with no frame there ends the wait with `ended`.
got receive(int fd, bytes& out, std::chrono::microseconds spin, int also = -1,
            std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

// 50 us when this process may run on two CPUs or more; 0 on one, where polling would only keep
// the other end from running.
std::chrono::microseconds default_spin() noexcept;

}  // namespace coproc::detail::pool_wire
