// coproc internals: the started children of this process that have not been seen to end
// (Python's process._children), which active_children() lists and the exit policy joins.
#pragma once

#include "core/private.hpp"

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <vector>

#include "child/child_state.hpp"

namespace coproc::detail {

// Lock order: the registry's mutex may be held while a child_state's reap lock is taken
// (try_reap), never the reverse.
class child_registry {
 public:
  // A place in the list, allocated before a child exists so that listing it cannot fail.
  class reservation {
   public:
    reservation() : node_(1) {}

   private:
    friend class child_registry;
    std::list<std::shared_ptr<child_state>> node_;
  };

  // Lists a started child; cannot fail.
  void add(reservation&& place, const std::shared_ptr<child_state>& st, process* owner) noexcept;
  // Drops an ended child from the list (no-op if it is not listed).
  void remove(child_state& st);
  void set_owner(child_state& st, process* owner);
  // The object is going away: an ended child is dropped, a running one stays (detached)
  // until something reaps it.
  void detach(child_state& st);
  // Reaps detached children that have ended (cheap when there are none).
  void sweep_detached();
  // Reaps every ended child; returns the owners of those still running.
  std::vector<process*> active();
  std::vector<std::shared_ptr<child_state>> snapshot();
  void clear();

 private:
  void unlist_locked(std::list<std::shared_ptr<child_state>>::iterator it);

  std::mutex mutex_;
  std::list<std::shared_ptr<child_state>> children_;
  std::atomic<std::size_t> detached_{0};  // written under mutex_, read without it by start()
};

}  // namespace coproc::detail
