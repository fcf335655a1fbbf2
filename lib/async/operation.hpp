// coproc internals: the one pattern of coproc's asynchronous operations (async_join,
// async_wait, and the connection operations to come).
//
// - The public template only adapts the token: the handler arrives here type-erased
//   (any_completion_handler keeps its executor, allocator and cancellation slot), with the
//   executor of the reactor that watches the operation's descriptors.
// - The operation completes exactly once, on the handler's associated executor, never inside
//   the initiating call and never under the operation's lock (the handler may start new
//   operations or emit cancellation). Outstanding work is counted on that executor meanwhile.
// - Every step runs under the operation's mutex: an io_context run by several threads, a
//   cancellation signal and the destructor of the object waited on may all reach it at once.
// - Operating-system errors at any step, initiation included, complete the handler with an
//   error_code; only misuse throws from the initiating function.
// - Per-operation cancellation of every type the operation accepts reaches on_cancel().
// - An optional deadline reaches on_deadline().
#pragma once

#include "core/private.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <utility>

#include <boost/asio/any_completion_executor.hpp>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

namespace coproc::detail {

namespace asio = boost::asio;
using boost::system::error_code;

// The error_code of the exception being handled, for the operating-system failures an
// operation reports through its handler. Call it only inside a catch of those types.
inline error_code current_os_error() {
  try {
    throw;
  } catch (const boost::system::system_error& e) {
    return e.code();
  } catch (const std::system_error& e) {
    return {e.code().value(), boost::system::generic_category()};
  } catch (const std::bad_alloc&) {
    return make_error_code(boost::system::errc::not_enough_memory);
  }
}

template <class... Results>
class operation : public std::enable_shared_from_this<operation<Results...>> {
 public:
  using handler_type = asio::any_completion_handler<void(error_code, Results...)>;
  using lock_type = std::unique_lock<std::mutex>;

  operation(asio::any_io_executor reactor, handler_type handler)
      : io_(std::move(reactor)),
        handler_(std::move(handler)),
        work_(asio::prefer(asio::get_associated_executor(handler_, asio::system_executor()),
                           asio::execution::outstanding_work.tracked)) {}
  virtual ~operation() = default;
  operation(const operation&) = delete;
  operation& operator=(const operation&) = delete;

 protected:
  lock_type lock() { return lock_type(mutex_); }
  bool done() const noexcept { return done_; }

  // From the initiating function: cancellation of the given types reaches on_cancel().
  void accept_cancellation(asio::cancellation_type types = asio::cancellation_type::terminal |
                                                           asio::cancellation_type::partial |
                                                           asio::cancellation_type::total) {
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected())
      slot.template emplace<slot_handler>(this->weak_from_this(), types);
  }

  // Under the lock: on_deadline() runs when `timeout` has passed, unless completed first.
  void arm_deadline(std::chrono::nanoseconds timeout) {
    deadline_ = std::make_unique<asio::steady_timer>(io_);
    deadline_->expires_after(std::chrono::duration_cast<asio::steady_timer::duration>(timeout));
    deadline_->async_wait([self = this->shared_from_this()](error_code ec) {
      if (ec) return;  // cancelled: the operation completed
      auto l = self->lock();
      if (!self->done_) self->on_deadline(l);
    });
  }

  // Under the lock, from a completion handler of the reactor: the handler is dispatched to its
  // executor (it runs at once when that executor is the reactor's, as Asio's own do).
  void complete(lock_type& l, error_code ec, Results... results) {
    finish(l, false, ec, std::move(results)...);
  }
  // Under the lock, from anywhere else (the initiating call, a cancellation signal, another
  // object's destructor): the handler is posted.
  void complete_later(lock_type& l, error_code ec, Results... results) {
    finish(l, true, ec, std::move(results)...);
  }

  // Cancellation of `type` requested (under the lock, not done). Complete, usually with
  // operation_aborted through complete_later(), or ignore it when this type cannot be honoured
  // (an operation halfway through a message honours only terminal cancellation).
  virtual void on_cancel(lock_type& l, asio::cancellation_type type) = 0;
  // The deadline passed (under the lock, not done).
  virtual void on_deadline(lock_type&) {}
  // Completing (under the lock): stop whatever is still pending, so nothing keeps the
  // operation or the executor busy.
  virtual void release(lock_type&) noexcept {}

  asio::any_io_executor io_;  // the reactor's

 private:
  struct slot_handler {
    slot_handler(std::weak_ptr<operation> o, asio::cancellation_type t) : op(std::move(o)), types(t) {}
    std::weak_ptr<operation> op;  // a signal emitted after completion finds nothing to cancel
    asio::cancellation_type types;
    void operator()(asio::cancellation_type type) const {
      if ((type & types) == asio::cancellation_type::none) return;
      if (auto p = op.lock()) {
        auto l = p->lock();
        if (!p->done_) p->on_cancel(l, type);
      }
    }
  };

  void finish(lock_type& l, bool later, error_code ec, Results... results) {
    done_ = true;
    if (deadline_) deadline_->cancel();
    release(l);
    auto call = [h = std::move(handler_), ec, ... r = std::move(results)]() mutable {
      std::move(h)(ec, std::move(r)...);
    };
    auto work = std::move(work_);
    l.unlock();
    if (later)
      asio::post(io_, asio::bind_executor(std::move(work), std::move(call)));
    else
      asio::dispatch(std::move(work), std::move(call));
  }

  std::mutex mutex_;
  bool done_ = false;
  handler_type handler_;
  asio::any_completion_executor work_;  // the handler's executor, with outstanding work
  // Allocated only when asked for: a pending join's size is what an async server pays per
  // awaited child.
  std::unique_ptr<asio::steady_timer> deadline_;
};

}  // namespace coproc::detail
