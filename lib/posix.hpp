// coproc internals: system calls, EINTR handling and coproc's own descriptors.
#pragma once

#ifndef COPROC_BUILDING
#error "lib/ headers are private to the coproc library"
#endif

#include <pthread.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <initializer_list>
#include <optional>
#include <utility>

namespace coproc::detail {

[[noreturn]] void throw_errno(int err, const char* what);

// getpid() without a system call: cached, and refreshed by an atfork handler in every child
// (forked by coproc or not), so it is never stale.
pid_t self_pid() noexcept;
[[noreturn]] inline void throw_errno(const char* what) { throw_errno(errno, what); }

template <class F>
auto retry_eintr(F&& f) {
  for (;;) {
    auto r = f();
    if (r != -1 || errno != EINTR) return r;
  }
}

// glibc 2.36's <sys/pidfd.h> lacks extern "C", and waitid() there has no rusage argument:
// the raw system calls serve both needs.
int sys_pidfd_open(pid_t pid) noexcept;
int sys_pidfd_send_signal(int pidfd, int sig) noexcept;
int sys_waitid(idtype_t type, id_t id, siginfo_t* info, int options, struct rusage* usage) noexcept;

// Waits until `fd` is readable (or hung up) or the deadline passes; nullopt deadline means
// forever. Retries EINTR with the remaining time. Returns true if ready.
bool wait_readable(int fd, std::optional<std::chrono::steady_clock::time_point> deadline);

// ---------------------------------------------------------------------------------------
// The fork guard. Every descriptor coproc owns is created and recorded, or forgotten and
// closed, under the shared side; start() forks under the exclusive side. So a forked child
// knows exactly which descriptors are coproc's (other children's sentinels, pipe ends) and
// closes only those, whatever other threads were doing at the moment of fork.
class shared_fork_lock {
 public:
  shared_fork_lock() noexcept;
  ~shared_fork_lock();
  shared_fork_lock(const shared_fork_lock&) = delete;
  shared_fork_lock& operator=(const shared_fork_lock&) = delete;

 private:
  pthread_rwlock_t* lock_;
};

class exclusive_fork_lock {
 public:
  exclusive_fork_lock() noexcept;
  // In the parent after fork, or when fork failed.
  ~exclusive_fork_lock();
  // In the child: the lock was copied held by a thread id that no longer exists, so the child
  // switches to a new lock rather than unlocking. Disarms the destructor.
  void reset_in_child() noexcept;
  exclusive_fork_lock(const exclusive_fork_lock&) = delete;
  exclusive_fork_lock& operator=(const exclusive_fork_lock&) = delete;

 private:
  pthread_rwlock_t* lock_;
};

namespace fds {
// Both need the shared fork lock (or the exclusive one).
void record(int fd) noexcept;
void forget(int fd) noexcept;
// In a freshly forked child: closes every recorded descriptor except `keep`, then records
// only `keep`. Lock-free and allocation-free.
void close_recorded_in_child(std::initializer_list<int> keep) noexcept;
}  // namespace fds

// A descriptor owned by coproc: recorded while it lives, forgotten and closed together.
class owned_fd {
 public:
  owned_fd() noexcept = default;
  // Runs `create` (which returns a descriptor or -1 with errno set) under the shared fork
  // lock and records the result. On failure, valid() is false and errno is kept.
  template <class F>
  static owned_fd create(F&& make) {
    shared_fork_lock guard;
    const int fd = make();
    const int saved = errno;
    if (fd >= 0) fds::record(fd);
    errno = saved;
    return owned_fd(fd);
  }
  // Takes a descriptor that is already recorded.
  static owned_fd adopt_recorded(int fd) noexcept { return owned_fd(fd); }
  owned_fd(owned_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  owned_fd& operator=(owned_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~owned_fd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  void reset() noexcept;
  // Gives up ownership without closing (the descriptor stays recorded).
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

 private:
  explicit owned_fd(int fd) noexcept : fd_(fd) {}
  int fd_ = -1;
};

// Keeps an object that a forked child abandons (state copied from the parent, which must never
// be destroyed there) reachable, so leak checkers do not report it if the child ends through
// std::exit.
void keep_forever(const void* object) noexcept;

// Forgets and closes a descriptor that coproc recorded but no owned_fd holds any more.
void close_recorded(int fd) noexcept;

}  // namespace coproc::detail
