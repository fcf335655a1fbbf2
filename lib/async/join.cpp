// process::async_join: a waiter on the exit watch of the process on the handler's reactor,
// completed on the handler's executor, with a deadline for the timed form and per-operation
// cancellation.
#include <chrono>
#include <optional>

#include <coproc/process.hpp>

#include "async/exit_watch.hpp"
#include "async/io_thread.hpp"
#include "async/operation.hpp"
#include "runtime/runtime.hpp"

namespace coproc::detail {

namespace {

// Result: int (the plain form; 255 when there is no exit code to give, with an error) or
// std::optional<int> (the timed form; nullopt when the deadline came first or on error).
template <class Result>
class join_op final : public operation<Result>, public exit_watch::waiter {
  using base = operation<Result>;
  using typename base::lock_type;

 public:
  join_op(std::shared_ptr<child_state> state, const reactor& where, typename base::handler_type h)
      : base(where.executor, std::move(h)), state_(std::move(state)), reactor_key_(where.key) {}

  void start(std::optional<std::chrono::nanoseconds> timeout) {
    auto l = this->lock();
    try {
      const bool poll = timeout && timeout->count() <= 0;
      if (state_->try_reap() || poll) return decided(l);
      auto watch = exit_watch::of(state_, {this->io_, reactor_key_});
      watch_ = watch;
      this->accept_cancellation();
      if (timeout && *timeout != std::chrono::nanoseconds::max()) this->arm_deadline(*timeout);
      if (!watch->add(std::static_pointer_cast<join_op>(this->shared_from_this())))
        decided(l);  // it ended meanwhile
    } catch (const std::system_error&) {
      this->complete_later(l, current_os_error(), failed());
    } catch (const boost::system::system_error&) {
      this->complete_later(l, current_os_error(), failed());
    } catch (const std::bad_alloc&) {
      this->complete_later(l, current_os_error(), failed());
    }
  }

  void child_ended(error_code ec) override {
    auto l = this->lock();
    if (this->done()) return;
    if (ec) return this->complete(l, ec, failed());
    this->complete(l, {}, exit_result());
    unlist();
  }

  void aborted() override {
    auto l = this->lock();
    if (!this->done()) this->complete_later(l, asio::error::operation_aborted, failed());
  }

 private:
  static Result failed() {
    if constexpr (std::is_same_v<Result, int>)
      return 255;
    else
      return std::nullopt;
  }

  // After the end: the exit code (255 when the status was lost). The timed join of our parent
  // reports nullopt however it ends, as the blocking one does (Python returns None).
  Result exit_result() const {
    if constexpr (!std::is_same_v<Result, int>)
      if (!state_->has_exit_code()) return std::nullopt;
    return state_->exitcode();
  }

  // Known at initiation (ended, or a poll): still never completes inside the initiating call.
  void decided(lock_type& l) {
    Result r = failed();
    if (state_->try_reap()) r = exit_result();
    this->complete_later(l, {}, std::move(r));
    if (state_->ended()) unlist();
  }

  void on_cancel(lock_type& l, asio::cancellation_type) override {
    leave_watch();
    this->complete_later(l, asio::error::operation_aborted, failed());
  }

  void on_deadline(lock_type& l) override {
    leave_watch();
    // The child may have ended at the same moment: report what is known now.
    Result r = failed();
    try {
      if (state_->try_reap()) r = exit_result();
    } catch (const std::system_error& e) {
      return this->complete(l, {e.code().value(), boost::system::generic_category()}, failed());
    }
    this->complete(l, {}, std::move(r));
    if (state_->ended()) unlist();
  }

  void leave_watch() noexcept {
    if (auto w = watch_.lock()) w->remove(this);
  }

  // The registry is tidied after the waiter was woken: its lock and list nodes are pages the
  // parent has not written since the fork, each a page fault on the way to the waiter.
  // Meanwhile active_children() already leaves an ended child out.
  void unlist() {
    if (runtime* r = own_runtime()) r->children.remove(*state_);
  }

  const std::shared_ptr<child_state> state_;
  const void* const reactor_key_;  // its executor is io_: a pending join's size is what an
                                   // async server pays per awaited child
  std::weak_ptr<exit_watch> watch_;  // weak: the watch holds its waiters
};

template <class Result>
void launch(std::shared_ptr<child_state> state, const asio::any_io_executor& io,
            asio::any_completion_handler<void(error_code, Result)> handler,
            std::optional<std::chrono::nanoseconds> timeout) {
  // Throws std::system_error only when coproc's own I/O thread cannot start: a handler
  // without an executor has nowhere else to complete.
  const reactor where = reactor_for(io);
  auto op = std::make_shared<join_op<Result>>(std::move(state), where, std::move(handler));
  op->start(timeout);
}

}  // namespace

void start_async_join(std::shared_ptr<child_state> state, asio::any_io_executor io,
                      join_handler handler) {
  launch<int>(std::move(state), io, std::move(handler), std::nullopt);
}

void start_async_join(std::shared_ptr<child_state> state, asio::any_io_executor io,
                      std::chrono::nanoseconds timeout, timed_join_handler handler) {
  launch<std::optional<int>>(std::move(state), io, std::move(handler), timeout);
}

}  // namespace coproc::detail
