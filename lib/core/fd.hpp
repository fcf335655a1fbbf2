// coproc internals: the two owners of a descriptor.
//
// - unique_fd: a plain owner. A forked child inherits the descriptor like any other of the
//   program's (Python's rule), so it is the owner for what a child must keep: a connection
//   end handed to a child.
// - private_fd: coproc's own (sentinels, pipe ends of the fallback, duplicates registered with
//   a reactor, the I/O thread's). Created and recorded under the fork guard, so every child
//   coproc starts closes it before its target runs (core/fd_record.hpp).
#pragma once

#include "core/private.hpp"

#include <cerrno>
#include <utility>

#include "core/fd_record.hpp"
#include "core/fork_guard.hpp"

namespace coproc::detail {

class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  void reset(int fd = -1) noexcept;
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

class private_fd {
 public:
  private_fd() noexcept = default;

  // Runs `make` (which returns a descriptor, or -1 with errno set) under the shared fork lock
  // and records the result. On failure valid() is false and errno is kept.
  template <class F>
  static private_fd create(F&& make) {
    shared_fork_lock guard;
    const int fd = make();
    const int saved = errno;
    if (fd >= 0) fds::record(fd);
    errno = saved;
    return private_fd(fd);
  }
  // Makes a plain descriptor coproc's own.
  static private_fd adopt(unique_fd fd) noexcept;
  // Takes a descriptor that is already recorded (made by create() together with another).
  static private_fd adopt_recorded(int fd) noexcept { return private_fd(fd); }

  private_fd(private_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  private_fd& operator=(private_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~private_fd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  // Forgets and closes.
  void reset() noexcept;
  // Gives the descriptor to a plain owner: children started from now on inherit it.
  unique_fd make_plain() && noexcept;

 private:
  explicit private_fd(int fd) noexcept : fd_(fd) {}
  int fd_ = -1;
};

// A pipe whose two ends are coproc's own (O_CLOEXEC). Throws std::system_error.
struct private_pipe {
  private_fd read_end, write_end;
};
private_pipe make_private_pipe();

// A connected pair of Unix sockets (`type`: SOCK_STREAM, SOCK_SEQPACKET), both coproc's own.
struct private_socket_pair {
  private_fd first, second;
};
private_socket_pair make_private_socket_pair(int type);

}  // namespace coproc::detail
