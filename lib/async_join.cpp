// process::async_join: a wait on the sentinel registered with a reactor, completed on the
// handler's executor, with per-operation cancellation.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_executor.hpp>

#include <coproc/process.hpp>

#include "io_thread.hpp"
#include "op_support.hpp"
#include "runtime.hpp"

namespace coproc::detail {

namespace asio = boost::asio;
using boost::system::error_code;

// ---------------------------------------------------------------------------------------

namespace {

// One pending join. It registers the child's sentinel with the reactor, a deadline timer for
// the timed form, and a back-off timer for the pipe fallback, whose EOF comes a moment before
// the child is reapable.
//
// The sentinel itself is registered (one descriptor per awaited child, as a raw epoll loop
// needs): the operation holds the child_state, which owns the descriptor, so close() of the
// process object cannot close it under the reactor. Only when the same reactor already
// watches it (a second join on the same io_context: epoll refuses the same descriptor twice)
// does the operation register a duplicate of its own.
//
// Every step runs on the handler's executor (the waits are bound to it), under `mutex_`: an
// io_context run by several threads, a cancellation signal and the destructor of the process
// object may all reach the operation at once.
template <class Signature>
class join_op final : public join_waiter,
                      public std::enable_shared_from_this<join_op<Signature>> {
 public:
  using handler_type = asio::any_completion_handler<Signature>;
  static constexpr bool timed = std::is_same_v<Signature, timed_join_signature>;

  join_op(std::shared_ptr<child_state> st, asio::any_io_executor io, handler_type handler)
      : state_(std::move(st)),
        io_(io),
        descriptor_(io),
        handler_(std::move(handler)),
        handler_ex_(asio::get_associated_executor(handler_, asio::system_executor())) {}

  ~join_op() override {
    // Take the descriptor back from the reactor without closing it: the sentinel belongs to
    // the child_state; a duplicate is closed through the record of coproc's descriptors.
    if (!descriptor_.is_open()) return;
    const int fd = descriptor_.release();
    if (owns_duplicate_) close_recorded(fd);
  }

  void start(std::optional<std::chrono::nanoseconds> timeout) {
    auto self = this->shared_from_this();
    if (state_->try_reap() || (timeout && timeout->count() <= 0)) {
      // Already decided; still never complete inside the initiating call.
      asio::post(io_, asio::bind_executor(handler_ex_, [self] { self->finish_now(); }));
      return;
    }
    error_code ec;
    descriptor_.assign(state_->sentinel(), ec);
    if (ec) {
      owned_fd dup =
          owned_fd::create([&] { return ::fcntl(state_->sentinel(), F_DUPFD_CLOEXEC, 0); });
      if (!dup) throw_errno("dup of sentinel");
      descriptor_.assign(dup.get(), ec);
      if (ec) throw boost::system::system_error(ec, "register sentinel");
      (void)dup.release();  // closed by the destructor
      owns_duplicate_ = true;
    }

    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.template emplace<cancel_any_type<join_op>>(this->weak_from_this());
    state_->add_waiter(this->weak_from_this());

    std::lock_guard lock(mutex_);
    wait_sentinel();
    if (timeout && *timeout != std::chrono::nanoseconds::max()) {
      deadline_ = std::make_unique<asio::steady_timer>(io_);
      deadline_->expires_after(std::chrono::duration_cast<asio::steady_timer::duration>(*timeout));
      deadline_->async_wait(
          asio::bind_executor(handler_ex_, [self](error_code e) { self->on_deadline(e); }));
    }
  }

  void abort() noexcept override {
    std::lock_guard lock(mutex_);
    aborted_ = true;
    cancel_waits();
  }

  void cancel() noexcept {
    std::lock_guard lock(mutex_);
    cancel_waits();
  }

 private:
  void wait_sentinel() {
    auto self = this->shared_from_this();
    descriptor_.async_wait(asio::posix::stream_descriptor::wait_read,
                           asio::bind_executor(handler_ex_, [self](error_code e) {
                             self->on_sentinel(e);
                           }));
  }

  void cancel_waits() noexcept {
    error_code ignored;
    if (descriptor_.is_open()) descriptor_.cancel(ignored);
    if (deadline_) deadline_->cancel();
    if (backoff_) backoff_->cancel();
    cancelled_ = true;
  }

  void on_sentinel(error_code ec) {
    std::unique_lock lock(mutex_);
    if (done_) return;
    if (aborted_ || ec == asio::error::operation_aborted)
      return finish(lock, asio::error::operation_aborted);
    if (ec) return finish(lock, ec);
    reap_or_back_off(lock);
  }

  void reap_or_back_off(std::unique_lock<std::mutex>& lock) {
    if (reaped_or_finish(lock)) return;
    if (cancelled_) return finish(lock, asio::error::operation_aborted);
    // Pipe fallback: EOF came before the child became a zombie. Look again shortly.
    if (!backoff_) backoff_ = std::make_unique<asio::steady_timer>(io_);
    backoff_->expires_after(delay_);
    delay_ = std::min(delay_ * 2, std::chrono::microseconds(10'000));
    auto self = this->shared_from_this();
    backoff_->async_wait(asio::bind_executor(handler_ex_, [self](error_code e) {
      std::unique_lock l(self->mutex_);
      if (self->done_) return;
      if (self->aborted_ || e) return self->finish(l, asio::error::operation_aborted);
      self->reap_or_back_off(l);
    }));
  }

  void on_deadline(error_code ec) {
    std::unique_lock lock(mutex_);
    if (done_ || ec) return;  // cancelled: the sentinel's wait reports
    error_code ignored;
    descriptor_.cancel(ignored);
    if (backoff_) backoff_->cancel();
    finish(lock, {}, /*timed_out=*/true);
  }

  // Reaps if the child has ended; if so, completes and returns true.
  bool reaped_or_finish(std::unique_lock<std::mutex>& lock) {
    bool ended;
    try {
      ended = state_->try_reap();
    } catch (const std::system_error& e) {
      finish(lock, to_error_code(e));
      return true;
    }
    if (!ended) return false;
    finish(lock, {});
    return true;
  }

  void finish_now() {
    std::unique_lock lock(mutex_);
    if (done_) return;
    bool ended = false;
    try {
      ended = state_->try_reap();
    } catch (const std::system_error& e) {
      return finish(lock, to_error_code(e));
    }
    finish(lock, {}, !ended);
  }

  // Completes the operation once. Runs on the handler's executor; the lock is released
  // before the handler is invoked, so the handler may start new joins or emit cancellation.
  void finish(std::unique_lock<std::mutex>& lock, error_code ec, bool timed_out = false) {
    done_ = true;
    // Whatever else is still pending (the deadline after the child ended first, the sentinel
    // after the deadline) would hold this operation, its descriptor and the executor's work
    // until it fired: stop it now.
    error_code ignored;
    if (descriptor_.is_open()) descriptor_.cancel(ignored);
    if (deadline_) deadline_->cancel();
    if (backoff_) backoff_->cancel();
    std::optional<int> code;
    bool unlist = false;
    if (!ec && !timed_out) {
      try {
        if (state_->which() == child_state::role::child) {
          code = state_->exitcode();
          unlist = true;
        }
      } catch (const std::system_error& e) {
        ec = to_error_code(e);
      }
    }
    if (ec && ec != asio::error::operation_aborted && state_->lost_errno()) unlist = true;
    handler_type handler = std::move(handler_);
    lock.unlock();
    // The waiter is woken first and the registry is tidied after: the registry's lock and list
    // nodes are pages the parent has not written since the fork, each a page fault on the way
    // to the waiter. Meanwhile active_children() already leaves an ended child out. (Every
    // caller runs in a handler that holds this operation, so state_ outlives the handler.)
    if constexpr (timed) {
      std::move(handler)(ec, ec ? std::nullopt : code);
    } else {
      // 255 when there is no exit code to give: an error, or the parent of this process
      // (its status belongs to its own parent).
      std::move(handler)(ec, code.value_or(255));
    }
    if (unlist) rt().children.remove(*state_);
  }

  std::shared_ptr<child_state> state_;
  asio::any_io_executor io_;
  asio::posix::stream_descriptor descriptor_;
  // Allocated only when needed: most joins have no deadline and never back off, and a pending
  // join's size is what an async server pays per child.
  std::unique_ptr<asio::steady_timer> deadline_;
  std::unique_ptr<asio::steady_timer> backoff_;
  std::chrono::microseconds delay_{50};
  handler_type handler_;
  asio::any_completion_executor handler_ex_;
  std::mutex mutex_;
  bool done_ = false;
  bool aborted_ = false;
  bool cancelled_ = false;
  bool owns_duplicate_ = false;
};

template <class Signature>
void launch(std::shared_ptr<child_state> state, asio::any_io_executor io,
            asio::any_completion_handler<Signature> handler,
            std::optional<std::chrono::nanoseconds> timeout) {
  auto op = std::make_shared<join_op<Signature>>(std::move(state), reactor_for(std::move(io)),
                                                 std::move(handler));
  op->start(timeout);
}

}  // namespace

void start_async_join(std::shared_ptr<child_state> state, asio::any_io_executor io,
                      join_handler handler) {
  launch(std::move(state), std::move(io), std::move(handler), std::nullopt);
}

void start_async_join(std::shared_ptr<child_state> state, asio::any_io_executor io,
                      std::chrono::nanoseconds timeout, timed_join_handler handler) {
  launch(std::move(state), std::move(io), std::move(handler), timeout);
}

}  // namespace coproc::detail
