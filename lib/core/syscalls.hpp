// coproc internals: system calls that glibc does not wrap (or wraps without what we need),
// EINTR handling and errors.
#pragma once

#include "core/private.hpp"

#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <optional>
#include <cstddef>
#include <span>

namespace coproc::detail {

[[noreturn]] void throw_errno(int err, const char* what);
[[noreturn]] inline void throw_errno(const char* what) { throw_errno(errno, what); }

template <class F>
auto retry_eintr(F&& f) {
  for (;;) {
    auto r = f();
    if (r != -1 || errno != EINTR) return r;
  }
}

// getpid() without a system call: cached, and refreshed by an atfork handler in every child
// (forked by coproc or not), so it is never stale. Module state compares it with the pid
// that made it to tell a forked copy from its own (core/per_process.hpp).
pid_t self_pid() noexcept;

// glibc 2.36's <sys/pidfd.h> lacks extern "C", and waitid() there has no rusage argument:
// the raw system calls serve both needs.
int sys_pidfd_open(pid_t pid) noexcept;
int sys_pidfd_send_signal(int pidfd, int sig) noexcept;
int sys_waitid(idtype_t type, id_t id, siginfo_t* info, int options, struct rusage* usage) noexcept;

// Waits until `fd` is readable (or hung up) or the deadline passes; nullopt deadline means
// forever. Retries EINTR with the remaining time. Returns true if ready.
bool wait_readable(int fd, std::optional<std::chrono::steady_clock::time_point> deadline);

// Sends all of `data` on a blocking socket (MSG_NOSIGNAL: a gone peer is EPIPE, not SIGPIPE).
// Returns false with errno set when the peer is gone or the send fails.
bool send_all(int socket, std::span<const std::byte> data) noexcept;
// Reads exactly `size` bytes from a blocking descriptor. False at end of stream or on error.
bool read_exact(int fd, void* data, std::size_t size) noexcept;

}  // namespace coproc::detail
