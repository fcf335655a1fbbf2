#include "child/registry.hpp"

#include <poll.h>

#include "core/syscalls.hpp"

namespace coproc::detail {

void child_registry::add(reservation&& place, const std::shared_ptr<child_state>& st,
                         process* owner) noexcept {
  place.node_.front() = st;
  std::lock_guard lock(mutex_);
  children_.splice(children_.end(), place.node_);
  st->position = std::prev(children_.end());
  st->listed = true;
  st->owner = owner;
}

void child_registry::unlist_locked(std::list<std::shared_ptr<child_state>>::iterator it) {
  auto& st = **it;
  if (!st.owner) --detached_;
  st.listed = false;
  st.owner = nullptr;
  children_.erase(it);  // may drop the last reference of a detached child
}

void child_registry::remove(child_state& st) {
  std::lock_guard lock(mutex_);
  if (st.listed) unlist_locked(st.position);
}

void child_registry::set_owner(child_state& st, process* owner) {
  std::lock_guard lock(mutex_);
  if (st.listed) st.owner = owner;
}

void child_registry::detach(child_state& st) {
  std::lock_guard lock(mutex_);
  if (!st.listed) return;
  if (st.ended()) {
    unlist_locked(st.position);
    return;
  }
  if (st.owner) ++detached_;
  st.owner = nullptr;
}

void child_registry::sweep_detached() {
  if (detached_.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard lock(mutex_);
  for (auto it = children_.begin(); detached_ != 0 && it != children_.end();) {
    auto next = std::next(it);
    if (!(*it)->owner && (*it)->try_reap()) unlist_locked(it);
    it = next;
  }
}

std::vector<process*> child_registry::active() {
  std::lock_guard lock(mutex_);
  // One poll over all sentinels finds the ended children; only those pay for a reap.
  std::vector<pollfd> fds;
  fds.reserve(children_.size());
  for (auto& st : children_) fds.push_back({st->sentinel_fd(), POLLIN, 0});
  if (!fds.empty() && retry_eintr([&] { return ::poll(fds.data(), fds.size(), 0); }) == -1)
    throw_errno("poll");
  std::vector<process*> alive;
  std::size_t i = 0;
  for (auto it = children_.begin(); it != children_.end(); ++i) {
    auto next = std::next(it);
    auto& st = **it;
    if ((fds[i].revents || st.ended()) && st.try_reap())
      unlist_locked(it);
    else if (st.owner)
      alive.push_back(st.owner);
    it = next;
  }
  return alive;
}

std::vector<std::shared_ptr<child_state>> child_registry::snapshot() {
  std::lock_guard lock(mutex_);
  return {children_.begin(), children_.end()};
}

void child_registry::clear() {
  std::lock_guard lock(mutex_);
  for (auto& st : children_) {
    st->listed = false;
    st->owner = nullptr;
  }
  children_.clear();
  detached_ = 0;
}

}  // namespace coproc::detail
