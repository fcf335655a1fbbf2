// connection's asynchronous operations: speculative I/O first (a message that fits the socket
// buffer, or one already there, costs no wait), then waits for readiness through the end's
// registration with the handler's reactor.
#include <sys/uio.h>

#include <stdexcept>

#include <coproc/connection.hpp>

#include "async/io_thread.hpp"
#include "async/operation.hpp"
#include "async/registration.hpp"
#include "connection/framing.hpp"
#include "connection/state.hpp"

namespace coproc::detail {

namespace {

using boost::system::errc::make_error_code;
namespace errc = boost::system::errc;

template <class... Results>
class stream_op : public operation<Results...> {
  using base = operation<Results...>;

 protected:
  using typename base::lock_type;

  stream_op(std::shared_ptr<connection_state> state, const reactor& where,
            typename base::handler_type handler)
      : base(where.executor, std::move(handler)), state_(std::move(state)), key_(where.key) {}

  // Under the lock: on_ready() runs when the descriptor is ready for `w`.
  void wait(registration::wait_type w) {
    if (!reg_) reg_ = state_->registration_for({this->io_, key_});
    waiting_ = true;
    reg_->async_wait(w, {}, [self = this->shared_from_this(), this](error_code ec) {
      auto l = this->lock();
      waiting_ = false;
      if (this->done()) return;
      if (ec == boost::asio::error::operation_aborted) {
        // The end closed, or another operation's cancellation stopped every wait on the
        // registration: only the first concerns this one.
        if (state_->closed()) return this->complete(l, ec, failed());
        return wait(pending_);
      }
      if (ec) return this->complete(l, ec, failed());
      on_ready(l);
    });
    pending_ = w;
  }

  // The descriptor is ready (under the lock, not done): go on with the I/O.
  virtual void on_ready(lock_type& l) = 0;
  // The results that go with an error.
  virtual std::tuple<Results...> failed_results() const = 0;

  auto failed() const { return std::get<0>(failed_results()); }

  void release(lock_type&) noexcept override {
    if (waiting_ && reg_) reg_->cancel_waits();
  }

  const std::shared_ptr<connection_state> state_;
  const void* const key_;
  std::shared_ptr<registration> reg_;
  registration::wait_type pending_ = registration::wait_type::wait_read;
  bool waiting_ = false;
};

// ---------------------------------------------------------------------------------------

class send_op final : public stream_op<std::size_t> {
 public:
  send_op(std::shared_ptr<connection_state> state, const reactor& where, handler_type handler,
          std::span<const std::byte> message, std::shared_ptr<const bytes> owned)
      : stream_op(std::move(state), where, std::move(handler)),
        header_(encode_header(message.size())),
        owned_(std::move(owned)),
        size_(message.size()) {
    iov_[0] = {const_cast<std::byte*>(header_.data.data()), header_.size};
    iov_[1] = {const_cast<std::byte*>(message.data()), message.size()};
    left_ = std::span<iovec>(iov_, message.empty() ? 1 : 2);
  }
  // Still claimed here: the operation never completed (its io_context was destroyed with it
  // pending). Half a message on the wire leaves the end unable to send, as a terminal
  // cancellation does.
  ~send_op() override {
    if (!claimed_) return;
    if (started_) state_->poison_writing();
    state_->end_async_send();
  }

  // The end is free again before the handler runs: a coroutine that awaits the next send as
  // soon as this one resumes it must not find the end still busy with this operation.
  void release(lock_type& l) noexcept override {
    stream_op::release(l);
    if (claimed_) state_->end_async_send();
    claimed_ = false;
  }

  void start() {
    auto l = lock();
    if (!state_->try_begin_async_send())
      return complete_later(l, make_error_code(errc::operation_in_progress), 0);
    claimed_ = true;
    try {
      accept_cancellation();
      state_->make_nonblocking();
      write_some(l, true);
    } catch (...) {
      complete_later(l, current_os_error(), 0);
    }
  }

 private:
  void write_some(lock_type& l, bool initiating) {
    while (!left_.empty()) {
      const long n = state_->write_now(left_);
      if (n < 0) {
        if (errno == EAGAIN) return wait(registration::wait_type::wait_write);
        const error_code ec(errno, boost::system::generic_category());
        return initiating ? complete_later(l, ec, 0) : complete(l, ec, 0);
      }
      started_ = true;
      auto done = static_cast<std::size_t>(n);
      while (!left_.empty() && done >= left_.front().iov_len) {
        done -= left_.front().iov_len;
        left_ = left_.subspan(1);
      }
      if (!left_.empty()) {
        left_.front().iov_base = static_cast<char*>(left_.front().iov_base) + done;
        left_.front().iov_len -= done;
      }
    }
    if (initiating)
      complete_later(l, {}, size_);
    else
      complete(l, {}, size_);
  }

  void on_ready(lock_type& l) override { write_some(l, false); }

  void on_cancel(lock_type& l, boost::asio::cancellation_type type) override {
    if (started_) {
      // Half a message is on the wire: only a terminal cancellation may stop it, and the end
      // can then never send again (the peer would read the rest of a frame).
      if ((type & boost::asio::cancellation_type::terminal) == boost::asio::cancellation_type::none)
        return;
      state_->poison_writing();
    }
    complete_later(l, boost::asio::error::operation_aborted, 0);
  }

  std::tuple<std::size_t> failed_results() const override { return {0}; }

  frame_header header_;
  std::shared_ptr<const bytes> owned_;  // a typed message's text
  std::size_t size_;
  iovec iov_[2];
  std::span<iovec> left_;
  bool started_ = false;
  bool claimed_ = false;
};

// ---------------------------------------------------------------------------------------

// Result: bytes (async_recv_bytes) or std::size_t (async_recv_bytes_into).
template <class Result>
class recv_op final : public stream_op<Result> {
  using base = stream_op<Result>;
  using typename base::lock_type;
  static constexpr bool into = std::is_same_v<Result, std::size_t>;

 public:
  recv_op(std::shared_ptr<connection_state> state, const reactor& where,
          typename base::handler_type handler, std::span<std::byte> buf = {})
      : base(std::move(state), where, std::move(handler)), reader_({}, buf) {}
  // As for send_op: part of a frame consumed by an operation that never completed.
  ~recv_op() override {
    if (!claimed_) return;
    if (reader_.started()) this->state_->poison_reading();
    this->state_->end_async_recv();
  }

  // As for send_op: the next receive may start from this one's handler.
  void release(lock_type& l) noexcept override {
    base::release(l);
    if (claimed_) this->state_->end_async_recv();
    claimed_ = false;
  }

  void start() {
    auto l = this->lock();
    if (!this->state_->try_begin_async_recv())
      return this->complete_later(l, make_error_code(errc::operation_in_progress), Result{});
    claimed_ = true;
    try {
      this->accept_cancellation();
      this->state_->make_nonblocking();
      read_some(l, true);
    } catch (...) {
      this->complete_later(l, current_os_error(), Result{});
    }
  }

 private:
  void finish(lock_type& l, bool initiating, error_code ec, Result r) {
    if (initiating)
      this->complete_later(l, ec, std::move(r));
    else
      this->complete(l, ec, std::move(r));
  }

  void read_some(lock_type& l, bool initiating) {
    for (;;) {
      const auto buf = reader_.next();
      const long n = this->state_->read_now(buf);
      if (n < 0) {
        if (errno == EAGAIN) return this->wait(registration::wait_type::wait_read);
        return finish(l, initiating, error_code(errno, boost::system::generic_category()),
                      Result{});
      }
      if (n == 0 && !buf.empty()) {
        // EOF before a frame is the end of the stream; inside one, a truncated message.
        if (!reader_.started()) return finish(l, initiating, boost::asio::error::eof, Result{});
        this->state_->poison_reading();
        return finish(l, initiating, make_error_code(errc::io_error), Result{});
      }
      frame_reader::status st;
      try {
        st = reader_.advance(static_cast<std::size_t>(n));
      } catch (const std::system_error&) {  // a header no Python sends
        this->state_->poison_reading();
        return finish(l, initiating, make_error_code(errc::protocol_error), Result{});
      }
      if (st == frame_reader::status::more) continue;
      if constexpr (into) {
        // A message longer than the buffer is consumed (the stream stays in step) and reported
        // with message_size and its length (the blocking recv_bytes_into throws
        // buffer_too_short with the message itself).
        if (!reader_.in_place())
          return finish(l, initiating, boost::asio::error::message_size,
                        static_cast<std::size_t>(reader_.length()));
        return finish(l, initiating, {}, static_cast<std::size_t>(reader_.length()));
      } else {
        return finish(l, initiating, {}, reader_.take());
      }
    }
  }

  void on_ready(lock_type& l) override { read_some(l, false); }

  void on_cancel(lock_type& l, boost::asio::cancellation_type type) override {
    if (reader_.started()) {
      // Part of a frame is consumed: only a terminal cancellation may stop here, and the end
      // can then never read again.
      if ((type & boost::asio::cancellation_type::terminal) == boost::asio::cancellation_type::none)
        return;
      this->state_->poison_reading();
    }
    this->complete_later(l, boost::asio::error::operation_aborted, Result{});
  }

  std::tuple<Result> failed_results() const override { return {Result{}}; }

  frame_reader reader_;
  bool claimed_ = false;
};

}  // namespace

std::shared_ptr<connection_state> prepare_send(const connection& c) {
  const auto& s = connection_access::state(c);
  if (!s || s->closed()) throw std::logic_error("handle is closed");
  s->check_writable();
  return s;
}

std::shared_ptr<connection_state> prepare_recv(const connection& c) {
  const auto& s = connection_access::state(c);
  if (!s || s->closed()) throw std::logic_error("handle is closed");
  s->check_readable();
  return s;
}

void start_async_send(std::shared_ptr<connection_state> state, boost::asio::any_io_executor io,
                      std::span<const std::byte> message, std::shared_ptr<const bytes> owned,
                      boost::asio::any_completion_handler<send_signature> handler) {
  const reactor where = reactor_for(io);
  auto op = std::make_shared<send_op>(std::move(state), where, std::move(handler), message,
                                      std::move(owned));
  op->start();
}

void start_async_recv(std::shared_ptr<connection_state> state, boost::asio::any_io_executor io,
                      boost::asio::any_completion_handler<recv_signature> handler) {
  const reactor where = reactor_for(io);
  auto op = std::make_shared<recv_op<bytes>>(std::move(state), where, std::move(handler));
  op->start();
}

void start_async_recv_into(std::shared_ptr<connection_state> state,
                           boost::asio::any_io_executor io, std::span<std::byte> buf,
                           boost::asio::any_completion_handler<recv_into_signature> handler) {
  const reactor where = reactor_for(io);
  auto op = std::make_shared<recv_op<std::size_t>>(std::move(state), where, std::move(handler),
                                                   buf);
  op->start();
}

}  // namespace coproc::detail
