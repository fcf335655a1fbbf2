#include "runtime/parent.hpp"

#include <unistd.h>

#include <memory>
#include <mutex>
#include <string>

#include "child/child_state.hpp"
#include "core/syscalls.hpp"
#include "process_access.hpp"
#include "runtime/runtime.hpp"

namespace coproc::detail {

process* parent_watch() {
  runtime& r = rt();
  if (!r.in_child) return nullptr;
  if (process* p = r.parent.load(std::memory_order_acquire)) return p;
  std::lock_guard lock(r.parent_mutex);
  if (process* p = r.parent.load(std::memory_order_relaxed)) return p;
  const parent_info& info = r.parent_of_this;
  sentinel watch;
  if (info.pidfd >= 0) {
    watch = sentinel(sentinel::pidfd{private_fd::adopt_recorded(info.pidfd)});
  } else if (info.by_pidfd) {
    private_fd fd = private_fd::create([&] { return sys_pidfd_open(info.pid); });
    if (!fd && errno != ESRCH) throw_errno("pidfd_open(parent)");
    // The pidfd names our parent only if it is still our parent after the pidfd was opened;
    // otherwise the parent is gone (and its pid may already be somebody else's).
    if (fd && ::getppid() == info.pid)
      watch = sentinel(sentinel::pidfd{std::move(fd)});
    else
      watch = sentinel::already_ended();
  } else {
    // No pidfd and no alive pipe (a forkserver child whose parent could not be watched at its
    // start): nothing can tell when the parent ends, so it reads as gone rather than forever
    // alive.
    watch = info.alive_fd >= 0
                ? sentinel(sentinel::pipe{private_fd::adopt_recorded(info.alive_fd), {}})
                : sentinel::already_ended();
  }
  const int fd = watch.fd();
  auto state = std::make_shared<child_state>(info.pid, std::move(watch), watched_only(fd), false);
  process* p = process_access::make_parent(std::string(info.name), info.pid, std::move(state));
  r.parent.store(p, std::memory_order_release);
  return p;
}

}  // namespace coproc::detail
