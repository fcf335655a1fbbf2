// coproc internals: module state that belongs to the process that made it.
#pragma once

#include "core/private.hpp"

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <utility>

#include "core/syscalls.hpp"

namespace coproc::detail {

// Keeps an object that a forked child abandons (state copied from its parent, which must never
// be destroyed or unlocked there) reachable, so leak checkers do not report it if the child
// ends through std::exit.
void keep_forever(const void* object) noexcept;

// One object of module state per process. A forked child (coproc's, or a raw fork() of the
// program) finds its parent's copy: other threads may have held its locks at the moment of
// fork and its threads do not exist here. It makes its own on first use and leaves the
// parent's alone, never unlocked, never destroyed. Nothing is written in a child that never
// uses the object. T has a member `pid_t owner`, set here.
template <class T>
class per_process {
 public:
  // This process's object, or nullptr if it has none yet.
  T* own() const noexcept {
    T* t = current_.load(std::memory_order_acquire);
    return t && t->owner == self_pid() ? t : nullptr;
  }

  // This process's object; `make(const T* parents)` builds it on first use (parents: the
  // copy inherited through fork, read-only, or nullptr) and returns a std::unique_ptr<T>.
  template <class Make>
  T& get(Make&& make) {
    if (T* t = own()) return *t;
    T* seen = current_.load(std::memory_order_acquire);
    std::unique_ptr<T> fresh = make(static_cast<const T*>(seen));
    fresh->owner = self_pid();
    if (current_.compare_exchange_strong(seen, fresh.get(), std::memory_order_acq_rel)) {
      keep_forever(seen);
      return *fresh.release();
    }
    return *seen;  // another thread of this process installed its object first
  }

  // Makes `t` this process's object without allocating (a forked child's state in a frame that
  // never returns). Returns the object it replaces, for the caller to keep reachable.
  T* install(T& t) noexcept {
    t.owner = self_pid();
    return current_.exchange(&t, std::memory_order_acq_rel);
  }

  // The object this process uses or inherited, whoever made it (for code that checks owner).
  T* any() const noexcept { return current_.load(std::memory_order_acquire); }

 private:
  std::atomic<T*> current_{nullptr};
};

}  // namespace coproc::detail
