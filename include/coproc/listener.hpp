// coproc: listeners and clients (Python's multiprocessing.connection.Listener and Client),
// with Python's authentication handshake.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/execution/executor.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/is_executor.hpp>

#include <coproc/bytes.hpp>
#include <coproc/connection.hpp>
#include <coproc/detail/duration.hpp>
#include <coproc/error.hpp>

namespace coproc {

namespace detail {
class listener_state;

template <class E>
concept asio_executor =
    boost::asio::execution::is_executor<E>::value || boost::asio::is_executor<E>::value;
template <class C>
concept asio_execution_context = std::is_convertible_v<C&, boost::asio::execution_context&>;
}  // namespace detail

/// How long the authentication handshake of an accept or a client may take, from the moment
/// the socket is connected to the last message, unless told otherwise. A peer that stays
/// silent (Python's client with a key against a listener without one, gh-123736) makes the
/// handshake fail with std::errc::timed_out after this long instead of holding the accept.
inline constexpr std::chrono::seconds default_handshake_timeout{20};

/// Where a listener listens and a client connects: a Unix socket path, a Linux abstract
/// socket name (a leading '\0'), or a TCP host and port.
class address {
 public:
  enum class family_type { unix_socket, tcp };

  /// A Unix socket. A leading '\0' names an abstract socket (Linux; no file is created).
  /// Misuse (std::invalid_argument): an empty path, more than 108 bytes (sun_path), a '\0'
  /// inside a path that is not abstract ("embedded null byte").
  static address unix_socket(std::string path);
  /// A TCP address: a host name or a numeric IPv4/IPv6 address ("" listens on every IPv4
  /// interface). Port 0 makes a listener pick a free port (its address() tells which).
  static address tcp(std::string host, std::uint16_t port);

  family_type family() const noexcept { return family_; }
  bool is_abstract() const noexcept {
    return family_ == family_type::unix_socket && !path_.empty() && path_[0] == '\0';
  }
  /// Unix sockets: the path (with its leading '\0' when abstract); empty for TCP.
  const std::string& path() const noexcept { return path_; }
  /// TCP: the host; empty for Unix sockets.
  const std::string& host() const noexcept { return host_; }
  /// TCP: the port (0 for Unix sockets).
  std::uint16_t port() const noexcept { return port_; }
  /// "host:port" ("[v6]:port"), the path, or "@name" for an abstract socket.
  std::string to_string() const;

  friend bool operator==(const address&, const address&) = default;

 private:
  address() = default;
  family_type family_ = family_type::unix_socket;
  std::string path_;
  std::string host_;
  std::uint16_t port_ = 0;
};

/// A listening socket (Python's Listener): accept() returns a connection per client, after
/// the mutual authentication handshake when there is an authkey.
///
/// - The socket has SO_REUSEADDR (Python's choice) and the backlog given. Binding an address
///   in use throws std::system_error (EADDRINUSE); the listener already there keeps working.
/// - An authkey that is present, even empty, means a handshake (Python 3.13's rule; 3.11 and
///   3.12 skip it for b''). The listener delivers its challenge first, then answers the
///   client's. Each handshake must end within handshake_timeout().
/// - The socket is coproc's own: children started later do not inherit it, unless the
///   listener is handed to one as an argument of its target (by value or std::ref), as for
///   connections; the child can then accept on it too.
/// - close() unlinks a Unix socket path, in the process that made the listener, and only if
///   the path still names this listener's socket (another one may have replaced it).
///
/// @par Thread Safety
/// Distinct objects: safe. Shared objects: accept() and async_accept() may run from several
/// threads at once (each client goes to one of them); close() may be called while they wait.
class listener {
 public:
  /// Binds and listens. Throws std::system_error (EADDRINUSE, EACCES, a name that does not
  /// resolve...); misuse: backlog < 0 (std::invalid_argument).
  explicit listener(coproc::address where, int backlog = 1, std::optional<bytes> authkey = {});
  listener(listener&&) noexcept;
  /// Closes this listener first.
  listener& operator=(listener&&) noexcept;
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;
  /// close().
  ~listener();

  /// Waits for a client and returns its connection, after the handshake when there is an
  /// authkey. A failed handshake throws authentication_error with Python's words (the
  /// listener stays usable); a peer that says nothing within handshake_timeout() throws
  /// std::system_error (std::errc::timed_out); one that closes mid-handshake, eof_error. A
  /// handshake message over 256 bytes: std::system_error("bad message length"). On a closed
  /// listener, or when close() is called while waiting for a client: std::logic_error
  /// ("listener is closed"). Signals (EINTR) do not interrupt it.
  connection accept();

  /// Accepts asynchronously; the handshake is a chain of non-blocking sends and receives on
  /// the reactor (the executor's thread never blocks).
  ///
  /// @par Completion Signature
  /// `void(boost::system::error_code, connection)`. Errors: coproc::errc::authentication_failed
  /// (the handshake failed), boost::asio::error::timed_out (handshake_timeout()),
  /// boost::asio::error::eof and the socket's errors; operation_aborted when cancelled or
  /// when the listener is closed (or destroyed) before the connection is delivered.
  ///
  /// @par Per-Operation Cancellation
  /// terminal, partial and total while waiting for a client; terminal and partial during the
  /// handshake (the accepted client is then dropped). Misuse ("listener is closed") throws
  /// from here; the completion never runs inside this call.
  template <class Token>
  auto async_accept(Token&& token);

  /// The bound address: the real port when port 0 was asked for, the numeric host.
  const coproc::address& address() const;
  /// The listening socket ("listener is closed" once closed).
  int fileno() const;
  bool closed() const noexcept;
  /// Idempotent. Pending async_accepts complete with operation_aborted; accept() calls
  /// waiting for a client throw "listener is closed" (one already in its handshake finishes
  /// it).
  void close();

  /// The bound on each handshake (default_handshake_timeout unless set). A duration at or
  /// beyond nanoseconds::max() means none; zero or negative is misuse.
  template <class Rep, class Period>
  void handshake_timeout(std::chrono::duration<Rep, Period> timeout) {
    set_handshake_timeout(detail::saturating_ns(timeout));
  }
  std::chrono::nanoseconds handshake_timeout() const;

 private:
  friend struct listener_access;
  // A listener given to a process as an argument of its target stays open in the child.
  friend void coproc_handed_descriptors(const listener& l, std::vector<int>& out) {
    if (!l.closed()) out.push_back(l.fileno());
  }
  void set_handshake_timeout(std::chrono::nanoseconds timeout);
  detail::listener_state& open_state() const;

  std::shared_ptr<detail::listener_state> state_;
};

/// Connects to a listener (Python's Client): one connect, no retries (a name that resolves to
/// several addresses tries each, IPv4 first). With an authkey (even empty), answers the
/// listener's challenge, then delivers its own. Throws std::system_error (ECONNREFUSED,
/// ENOENT, a name that does not resolve), authentication_error, and what accept() lists for
/// the handshake.
connection client(const address& where, std::optional<bytes> authkey = {});
/// As above, the handshake bounded by `handshake_timeout` (nanoseconds::max(): none).
connection client(const address& where, std::optional<bytes> authkey,
                  std::chrono::nanoseconds handshake_timeout);

/// Connects asynchronously: names resolve on Asio's resolver thread (numeric addresses need
/// none), the connect and the handshake are non-blocking operations on `ex`'s reactor (on
/// coproc's own I/O thread for executors without one). The handler runs on its associated
/// executor, `ex` by default.
///
/// @par Completion Signature
/// `void(boost::system::error_code, connection)`, with the errors of listener::async_accept
/// and those of the connect (connection_refused, host_not_found...).
///
/// @par Per-Operation Cancellation
/// terminal, partial and total until the socket is connected; terminal and partial after.
template <detail::asio_executor Executor, class Token>
auto async_client(Executor ex, const address& where, std::optional<bytes> authkey,
                  Token&& token);
/// As above, with a handshake timeout (nanoseconds::max(): none).
template <detail::asio_executor Executor, class Token>
auto async_client(Executor ex, const address& where, std::optional<bytes> authkey,
                  std::chrono::nanoseconds handshake_timeout, Token&& token);
/// On an execution context's executor (an io_context, a thread_pool).
template <detail::asio_execution_context Context, class Token>
auto async_client(Context& context, const address& where, std::optional<bytes> authkey,
                  Token&& token) {
  return async_client(context.get_executor(), where, std::move(authkey),
                      std::forward<Token>(token));
}
template <detail::asio_execution_context Context, class Token>
auto async_client(Context& context, const address& where, std::optional<bytes> authkey,
                  std::chrono::nanoseconds handshake_timeout, Token&& token) {
  return async_client(context.get_executor(), where, std::move(authkey), handshake_timeout,
                      std::forward<Token>(token));
}

}  // namespace coproc

#include <coproc/impl/listener.hpp>
