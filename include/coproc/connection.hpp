// coproc: connections (Python's multiprocessing.connection.Connection and Pipe).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include <coproc/bytes.hpp>
#include <coproc/detail/duration.hpp>
#include <coproc/detail/json.hpp>
#include <coproc/detail/registered.hpp>
#include <coproc/error.hpp>

namespace coproc {

namespace detail {
class connection_state;
struct connection_access;
}  // namespace detail

/// One end of a connection: messages of bytes (or typed values, as JSON) with Python's framing,
/// so the other end may be a Python `multiprocessing.connection.Connection`.
///
/// The blocking API is Python's; every operation has an `async_` twin that takes any Asio
/// completion token (see <coproc/impl/connection.hpp>).
///
/// A connection end belongs to coproc: children started afterwards do not inherit it, unless
/// it is handed to them as an argument of their target (then the child has it, and the parent
/// keeps its own copy until it closes it, as with Python's fork).
///
/// @par Thread Safety
/// Distinct objects: safe. Shared objects: one send and one receive may run at once (from any
/// threads); two receives (or two sends) at once are serialised when blocking, and misuse
/// ("another receive is in progress") when one of them is asynchronous.
class connection {
 public:
  /// A closed connection.
  connection() noexcept;
  /// Takes ownership of `fd`, a connected stream socket or a pipe end (Python's
  /// Connection(handle, readable, writable)). Misuse: "invalid handle" (fd < 0), "at least one
  /// of `readable` and `writable` must be True".
  explicit connection(int fd, bool readable = true, bool writable = true);
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  /// Closes; pending asynchronous operations complete with operation_aborted.
  ~connection();

  /// Sends `buf[offset, offset + size)` (all of the rest when `size` is unset) as one message.
  /// Misuse (Python's words, checked without overflow, nothing sent): "buffer length < offset",
  /// "buffer length < offset + size". A peer that has gone: std::system_error (EPIPE); SIGPIPE
  /// never ends the process.
  void send_bytes(std::span<const std::byte> buf, std::size_t offset = 0,
                  std::optional<std::size_t> size = {});
  /// Receives one message. End of stream: eof_error. A message longer than `maxlength`:
  /// std::system_error(std::errc::message_size, "bad message length"), and the connection is
  /// no longer readable.
  bytes recv_bytes(std::optional<std::size_t> maxlength = {});
  /// Receives one message into `buf` at `offset`; returns its size. A message that does not
  /// fit: buffer_too_short, which carries the whole message (it was consumed). Misuse: "offset
  /// too large".
  std::size_t recv_bytes_into(std::span<std::byte> buf, std::size_t offset = 0);

  /// Sends `value` as a JSON message (see docs/connections.md, "Typed messages").
  template <class T>
  void send(const T& value) {
    send_bytes(detail::to_message(value));
  }
  /// Receives a JSON message as a T. A message that does not convert: message_error naming T;
  /// the message is consumed and the connection stays usable.
  template <class T>
  T recv() {
    const bytes message = recv_bytes();
    return detail::from_message<T>(message);
  }

  /// True if a receive would not block now: a message (or part of one) is there, or the end of
  /// the stream. Reads nothing.
  bool poll();
  /// Waits at most `timeout` (a zero or negative timeout polls once).
  template <class Rep, class Period>
  bool poll(std::chrono::duration<Rep, Period> timeout) {
    return poll_for(detail::saturating_ns(timeout));
  }

  /// The descriptor ("handle is closed" once closed). Readiness of this descriptor is exactly
  /// the readiness of the connection: coproc never reads ahead of the message it returns.
  int fileno() const;
  bool closed() const noexcept;
  bool readable() const noexcept;
  bool writable() const noexcept;
  /// Idempotent.
  void close();

  template <class Token>
  auto async_send_bytes(std::span<const std::byte> buf, Token&& token);
  template <class Token>
  auto async_recv_bytes(Token&& token);
  template <class Token>
  auto async_recv_bytes_into(std::span<std::byte> buf, Token&& token);
  template <class T, class Token>
  auto async_send(const T& value, Token&& token);
  template <class T, class Token>
  auto async_recv(Token&& token);

 private:
  friend struct detail::connection_access;
  // A connection given to a process as an argument of its target stays open in the child.
  friend void coproc_handed_descriptors(const connection& c, std::vector<int>& out) {
    if (!c.closed()) out.push_back(c.fileno());
  }
  // Under spawn and forkserver the descriptor travels beside the arguments' JSON.
  friend detail::handed_connection coproc_exec_form(const connection& c, std::vector<int>& fds) {
    if (c.closed()) return {-1, false, false};
    fds.push_back(c.fileno());
    return {static_cast<int>(fds.size()) - 1, c.readable(), c.writable()};
  }
  friend connection coproc_adopt(std::type_identity<connection>, const detail::handed_connection& h) {
    const int fd = detail::take_handed_descriptor(h.index);
    return fd < 0 ? connection() : connection(fd, h.readable, h.writable);
  }
  explicit connection(std::shared_ptr<detail::connection_state> state) noexcept;
  bool poll_for(std::chrono::nanoseconds timeout);
  detail::connection_state& open_state() const;

  std::shared_ptr<detail::connection_state> state_;
};

/// Python's Pipe(duplex): two connected ends. duplex=false gives (reader, writer).
std::pair<connection, connection> pipe(bool duplex = true);

}  // namespace coproc

#include <coproc/impl/connection.hpp>
