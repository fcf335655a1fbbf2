// coproc internals: moving the authentication handshake's messages (connection/auth.hpp)
// over a connected socket, blocking (listener::accept, client) or as a chain of non-blocking
// sends and receives on a reactor (async_accept, async_client).
//
// Both read every message with a maxlength of 256 ("bad message length" beyond, as Python)
// and never read past the last handshake message: what the peer sends next stays in the
// socket for the connection. Both are bounded by a deadline for the whole exchange.
#pragma once

#include "core/private.hpp"

#include <chrono>
#include <memory>
#include <optional>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <coproc/bytes.hpp>
#include <coproc/connection.hpp>
#include <coproc/detail/duration.hpp>

#include "async/operation.hpp"
#include "connection/auth.hpp"
#include "connection/framing.hpp"
#include "core/fd.hpp"

namespace coproc::detail {

using clock_deadline = std::optional<std::chrono::steady_clock::time_point>;


// Runs `hs` to its end over the connected socket `fd` (blocking or not: every call is
// MSG_DONTWAIT, waits are poll(2) bounded by `deadline`, EINTR is retried). Throws
// authentication_error (Python's text) when the handshake fails, std::system_error
// (errc::timed_out) at the deadline, eof_error when the peer closes before a message,
// std::system_error for "got end of file during message", "bad message length" (over 256
// bytes) and the socket's errors.
void run_handshake(int fd, auth::handshake& hs, clock_deadline deadline);

// A socket connection made from a connected socket: a coproc::connection.
connection make_connection(private_fd fd);

// The common part of async_accept and async_client: once the derived operation has a
// connected socket, the handshake (when there is a key) and the completion with the
// connection. Errors complete the handler: coproc::errc::authentication_failed (the
// handshake failed; "#FAILURE#" was sent first when this side was verifying),
// asio::error::timed_out (the deadline), asio::error::eof, errc::io_error (end of file
// inside a message), asio::error::message_size (over 256 bytes), errc::protocol_error, or the
// socket's errno.
class connecting_op : public operation<connection> {
 public:
  connecting_op(asio::any_io_executor io, handler_type handler, std::optional<bytes> key,
                auth::handshake::role role, std::chrono::nanoseconds timeout);
  ~connecting_op() override;

 protected:
  using wait_type = asio::posix::stream_descriptor::wait_type;

  // Under the lock: `fd` becomes the operation's socket (not yet registered).
  void adopt(private_fd fd) noexcept { sock_fd_ = std::move(fd); }
  // Under the lock: the socket registered with the reactor (once). Throws.
  void ensure_registered();
  // Under the lock: the socket let go by the reactor and closed (a failed connect attempt).
  void drop_socket() noexcept;
  int socket_fd() const noexcept { return sock_fd_.get(); }

  // Under the lock, the socket connected: the handshake, or the completion. `initiating`:
  // from the initiating function (the handler is then posted).
  void connected(lock_type& l, bool initiating);
  // Under the lock: completes with `ec` (posted when `initiating`).
  void fail(lock_type& l, error_code ec, bool initiating);
  // Under the lock: `then(lock_type&)` runs under the lock when the socket is ready for `w`
  // (or the operation fails with the wait's error).
  template <class Then>
  void wait_socket(wait_type w, Then then) {
    ensure_registered();
    socket_waiting_ = true;
    sock_.async_wait(w, [self = shared_from_this(), this, then](error_code ec) mutable {
      auto l = lock();
      socket_waiting_ = false;
      if (done()) return;
      if (ec) return complete(l, ec, connection());
      try {
        then(l);
      } catch (...) {
        if (!done()) complete(l, os_error(), connection());
      }
    });
  }

  bool handshaking() const noexcept { return hs_.has_value(); }
  void release(lock_type& l) noexcept override;
  static error_code os_error();  // inside a catch: the exception as an error_code

 private:
  void drive(lock_type& l, bool initiating);
  void on_deadline(lock_type& l) override;

  std::optional<bytes> key_;
  auth::handshake::role role_;
  std::chrono::nanoseconds timeout_;
  private_fd sock_fd_;
  asio::posix::stream_descriptor sock_;
  bool socket_waiting_ = false;
  std::optional<auth::handshake> hs_;
  frame_reader reader_{auth::max_message};
  // The message going out: header and payload, and how much of them went.
  frame_header header_{};
  bytes out_;
  std::size_t out_done_ = 0;
  bool out_active_ = false;
};

}  // namespace coproc::detail
