// coproc internals: the fork guard. Every descriptor coproc owns privately is created and
// recorded, or forgotten and closed, under the shared side; a start method forks under the
// exclusive side. So a forked child knows exactly which descriptors are coproc's (other
// children's sentinels, pipe ends, the I/O thread's) and closes only those, whatever other
// threads were doing at the moment of fork.
#pragma once

#include "core/private.hpp"

#include <pthread.h>

namespace coproc::detail {

// Not recursive: a thread that holds the shared side must not take it again (a waiting
// writer would deadlock it).
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

}  // namespace coproc::detail
