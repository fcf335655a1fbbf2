#include "async/exit_watch.hpp"

#include <fcntl.h>

#include <algorithm>
#include <system_error>

#include "core/syscalls.hpp"

namespace coproc::detail {

namespace asio = boost::asio;
using boost::system::error_code;

std::shared_ptr<exit_watch> exit_watch::of(const std::shared_ptr<child_state>& state,
                                           const reactor& where) {
  return state->watch_for<exit_watch>(
      where.key, [&] { return std::make_shared<exit_watch>(state, where.executor); });
}

exit_watch::exit_watch(std::shared_ptr<child_state> state, const asio::any_io_executor& reactor)
    : state_(std::move(state)), descriptor_(reactor) {
  // The sentinel itself is registered: the state owns it and this watch holds the state, so
  // close() of the process object cannot close it under the reactor. Only if this reactor
  // already watches it (a user's own stream_descriptor on sentinel(): epoll refuses the same
  // descriptor twice) is a duplicate of our own registered instead.
  error_code ec;
  descriptor_.assign(state_->wait_fd(), ec);
  if (!ec) return;
  duplicate_ =
      private_fd::create([&] { return ::fcntl(state_->wait_fd(), F_DUPFD_CLOEXEC, 0); });
  if (!duplicate_) throw_errno("duplicate the sentinel");
  descriptor_.assign(duplicate_.get());
}

exit_watch::~exit_watch() {
  // Take the descriptor back from the reactor without closing it: the sentinel belongs to the
  // state, the duplicate to `duplicate_`.
  if (descriptor_.is_open()) (void)descriptor_.release();
}

bool exit_watch::add(std::shared_ptr<waiter> w) {
  lock_type l(state_->watch_mutex());
  // The end is published before the waiters are taken, under this lock: a waiter either sees
  // it here or is in the list that deliver() takes.
  if (state_->ended()) return false;
  waiters_.push_back(std::move(w));
  if (!pending_) wait_sentinel();
  return true;
}

void exit_watch::remove(const waiter* w) noexcept {
  lock_type l(state_->watch_mutex());
  auto it = std::find_if(waiters_.begin(), waiters_.end(),
                         [w](const std::shared_ptr<waiter>& p) { return p.get() == w; });
  if (it == waiters_.end()) return;
  waiters_.erase(it);
  if (waiters_.empty()) stop_waiting();
}

void exit_watch::abort_all() noexcept {
  lock_type l(state_->watch_mutex());
  auto waiters = std::move(waiters_);
  waiters_.clear();
  stop_waiting();
  l.unlock();
  for (auto& w : waiters) w->aborted();
}

void exit_watch::stop_waiting() noexcept {
  // The handlers see the abort, or an event that raced it, and find nobody waiting.
  error_code ignored;
  descriptor_.cancel(ignored);
  if (backoff_) backoff_->cancel();
}

void exit_watch::wait_sentinel() {
  pending_ = true;
  descriptor_.async_wait(asio::posix::stream_descriptor::wait_read,
                         [self = shared_from_this()](error_code ec) { self->on_event(ec, true); });
}

void exit_watch::back_off() {
  if (!backoff_) backoff_ = std::make_unique<asio::steady_timer>(descriptor_.get_executor());
  // 50 us doubling to 10 ms.
  backoff_->expires_after(std::min(std::chrono::microseconds(50 << backoff_steps_),
                                   std::chrono::microseconds(10'000)));
  if (backoff_steps_ < 8) ++backoff_steps_;
  pending_ = true;
  backoff_->async_wait([self = shared_from_this()](error_code ec) { self->on_event(ec, false); });
}

void exit_watch::on_event(error_code ec, bool from_sentinel) {
  lock_type l(state_->watch_mutex());
  pending_ = false;
  if (waiters_.empty()) return;  // the last waiter left; nothing is pending any more
  if (ec == asio::error::operation_aborted) {
    // Stopped when the last waiter left, and somebody has come since.
    wait_sentinel();
    return;
  }
  if (ec && from_sentinel) return deliver(l, ec);
  l.unlock();
  bool ended;
  try {
    ended = state_->try_reap();
  } catch (const std::system_error& e) {
    l.lock();
    return deliver(l, {e.code().value(), boost::system::generic_category()});
  }
  l.lock();
  if (ended) return deliver(l, {});
  if (!waiters_.empty() && !pending_) back_off();
}

void exit_watch::deliver(lock_type& l, error_code ec) {
  auto waiters = std::move(waiters_);
  waiters_.clear();
  l.unlock();
  for (auto& w : waiters) w->child_ended(ec);
}

}  // namespace coproc::detail
