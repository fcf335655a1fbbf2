#include "core/fork_guard.hpp"

#include <unistd.h>

#include <memory>
#include <new>

#include "core/per_process.hpp"

namespace coproc::detail {

// A writer-preferring rwlock, so a steady stream of descriptor creations in other threads
// cannot starve a start.
namespace {
struct fork_lock_box {
  pthread_rwlock_t lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
  pid_t owner = 0;
};
per_process<fork_lock_box> boxes;

pthread_rwlock_t* fork_lock() noexcept {
  fork_lock_box& box = boxes.get([](const fork_lock_box*) {
    std::unique_ptr<fork_lock_box> fresh(new (std::nothrow) fork_lock_box);
    if (!fresh) {
      // Without a lock of its own the child would deadlock at its first coproc descriptor.
      static const char msg[] = "coproc: out of memory for the fork guard\n";
      (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
      ::_exit(255);
    }
    return fresh;
  });
  return &box.lock;
}
}  // namespace

shared_fork_lock::shared_fork_lock() noexcept : lock_(fork_lock()) {
  ::pthread_rwlock_rdlock(lock_);
}
shared_fork_lock::~shared_fork_lock() { ::pthread_rwlock_unlock(lock_); }

exclusive_fork_lock::exclusive_fork_lock() noexcept : lock_(fork_lock()) {
  ::pthread_rwlock_wrlock(lock_);
}
exclusive_fork_lock::~exclusive_fork_lock() {
  if (lock_) ::pthread_rwlock_unlock(lock_);
}
void exclusive_fork_lock::reset_in_child() noexcept {
  // glibc records the writer's thread id and the child's thread has a new one: unlocking would
  // take the reader path and corrupt the lock. The child leaves it alone and gets its own
  // (per_process) when it first needs one; reinitialising in place would also confuse
  // ThreadSanitizer, which tracks locks by address.
  lock_ = nullptr;
}

}  // namespace coproc::detail
