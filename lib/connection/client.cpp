// coproc::client and async_client: Python's Client (SocketClient on POSIX).
#include <coproc/listener.hpp>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include "async/io_thread.hpp"
#include "async/operation.hpp"
#include "connection/auth.hpp"
#include "connection/handshake.hpp"
#include "connection/socket_address.hpp"
#include "core/fd.hpp"
#include "core/syscalls.hpp"

namespace coproc::detail {

namespace {

// A blocking connect. EINTR: a Unix socket is still unconnected and tries again; a TCP
// connect goes on in the kernel, so its end is awaited (PEP 475's rule).
int connect_blocking(int fd, const socket_address& a) {
  for (;;) {
    if (::connect(fd, a.get(), a.length) == 0) return 0;
    if (errno != EINTR) return errno;
    if (a.family() == AF_UNIX) continue;
    pollfd p{fd, POLLOUT, 0};
    while (::poll(&p, 1, -1) == -1)
      if (errno != EINTR) return errno;
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) return errno;
    return err;
  }
}

// Asio's resolver starts a thread of its own on first use; it inherits the initiating
// thread's signal mask, and must not take the program's signals.
class all_signals_blocked {
 public:
  all_signals_blocked() noexcept {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, &old_);
  }
  ~all_signals_blocked() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  all_signals_blocked(const all_signals_blocked&) = delete;
  all_signals_blocked& operator=(const all_signals_blocked&) = delete;

 private:
  sigset_t old_;
};

// async_client: resolve (numeric addresses at once, names on Asio's resolver thread), a
// non-blocking connect to each address in turn (IPv4 first) until one takes, then
// connecting_op's handshake.
class client_op final : public connecting_op {
 public:
  client_op(address where, asio::any_io_executor io, handler_type handler,
            std::optional<bytes> key, std::chrono::nanoseconds timeout)
      : connecting_op(io, std::move(handler), std::move(key), auth::handshake::role::client,
                      timeout),
        where_(std::move(where)) {}

  void start() {
    auto l = lock();
    accept_cancellation();
    try {
      if (where_.family() == address::family_type::unix_socket) {
        candidates_ = {unix_socket_address(where_)};
        return try_connect(l, true);
      }
      error_code ec;
      candidates_ = resolve_tcp(where_, false, true, ec);
      if (!ec) return try_connect(l, true);
      if (ec != asio::error::host_not_found) return fail(l, ec, true);
      resolve_name();
    } catch (...) {
      fail(l, os_error(), true);
    }
  }

 private:
  using resolver = asio::ip::tcp::resolver;

  void resolve_name() {
    resolver_.emplace(io_);
    resolving_ = true;
    all_signals_blocked blocked;
    resolver_->async_resolve(
        where_.host(), std::to_string(where_.port()), resolver::numeric_service,
        [self = shared_from_this(), this](error_code ec, resolver::results_type found) {
          auto l = lock();
          resolving_ = false;
          if (done()) return;
          if (ec) return complete(l, ec, connection());
          try {
            for (const auto& entry : found) {
              socket_address s;
              const auto ep = entry.endpoint();
              if (ep.size() > sizeof s.storage) continue;
              std::memcpy(&s.storage, ep.data(), ep.size());
              s.length = static_cast<socklen_t>(ep.size());
              candidates_.push_back(s);
            }
            ipv4_first(candidates_);
            if (candidates_.empty()) return complete(l, asio::error::host_not_found, connection());
            try_connect(l, false);
          } catch (...) {
            if (!done()) complete(l, os_error(), connection());
          }
        });
  }

  void try_connect(lock_type& l, bool initiating) {
    while (next_ < candidates_.size()) {
      const socket_address& a = candidates_[next_];
      if (socket_fd() < 0) {
        private_fd fd = private_fd::create(
            [&] { return ::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0); });
        if (!fd) return fail(l, error_code(errno, boost::system::generic_category()), initiating);
        adopt(std::move(fd));
      }
      if (::connect(socket_fd(), a.get(), a.length) == 0) return now_connected(l, initiating);
      const int err = errno;
      if (err == EINPROGRESS || (err == EINTR && a.family() != AF_UNIX))
        return wait_socket(wait_type::wait_write, [this](lock_type& l2) { check_connect(l2); });
      if (err == EINTR) continue;
      if (err == EAGAIN && a.family() == AF_UNIX) return retry_later();  // backlog full
      attempt_failed(err);
    }
    fail(l, first_error_, initiating);
  }

  void check_connect(lock_type& l) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(socket_fd(), SOL_SOCKET, SO_ERROR, &err, &len) == -1) err = errno;
    if (err == 0) return now_connected(l, false);
    attempt_failed(err);
    try_connect(l, false);
  }

  // A Unix socket whose listener's backlog is full: the blocking connect would wait; this one
  // tries again after 1 ms, doubling up to 50 ms.
  void retry_later() {
    if (!timer_) timer_.emplace(io_);
    timer_->expires_after(backoff_);
    backoff_ = std::min(backoff_ * 2, std::chrono::microseconds(50'000));
    timer_waiting_ = true;
    timer_->async_wait([self = shared_from_this(), this](error_code ec) {
      auto l = lock();
      timer_waiting_ = false;
      if (done()) return;
      if (ec) return complete(l, ec, connection());
      try_connect(l, false);
    });
  }

  void attempt_failed(int err) {
    if (!first_error_) first_error_ = error_code(err, boost::system::generic_category());
    drop_socket();
    ++next_;
  }

  void now_connected(lock_type& l, bool initiating) {
    connected_ = true;
    // The connection's users see a blocking socket, as from Python's Client.
    const int flags = ::fcntl(socket_fd(), F_GETFL);
    if (flags != -1) (void)::fcntl(socket_fd(), F_SETFL, flags & ~O_NONBLOCK);
    connected(l, initiating);
  }

  void on_cancel(lock_type& l, asio::cancellation_type type) override {
    // Once connected, dropping the connection is a side effect total cancellation forbids.
    constexpr auto allowed = asio::cancellation_type::terminal | asio::cancellation_type::partial;
    if (connected_ && (type & allowed) == asio::cancellation_type::none) return;
    complete_later(l, asio::error::operation_aborted, connection());
  }

  void release(lock_type& l) noexcept override {
    if (resolving_ && resolver_) resolver_->cancel();
    if (timer_waiting_ && timer_) timer_->cancel();
    connecting_op::release(l);
  }

  address where_;
  std::optional<resolver> resolver_;
  bool resolving_ = false;
  std::vector<socket_address> candidates_;
  std::size_t next_ = 0;
  error_code first_error_;
  std::optional<asio::steady_timer> timer_;
  bool timer_waiting_ = false;
  std::chrono::microseconds backoff_{1000};
  bool connected_ = false;
};

}  // namespace

void start_async_client(const address& where, std::optional<bytes> authkey,
                        std::chrono::nanoseconds handshake_timeout,
                        boost::asio::any_io_executor io, connect_handler handler) {
  const reactor r = reactor_for(io);
  auto op = std::make_shared<client_op>(where, r.executor, std::move(handler),
                                        std::move(authkey), handshake_timeout);
  op->start();
}

}  // namespace coproc::detail

namespace coproc {

connection client(const address& where, std::optional<bytes> authkey) {
  return client(where, std::move(authkey), std::chrono::nanoseconds(default_handshake_timeout));
}

connection client(const address& where, std::optional<bytes> authkey,
                  std::chrono::nanoseconds handshake_timeout) {
  if (handshake_timeout <= std::chrono::nanoseconds::zero())
    throw std::invalid_argument("the handshake timeout must be positive");
  const auto candidates = detail::resolve(where, false);
  int first_error = 0;
  for (const auto& a : candidates) {
    detail::private_fd fd = detail::private_fd::create(
        [&] { return ::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0); });
    if (!fd) detail::throw_errno("socket");
    if (const int err = detail::connect_blocking(fd.get(), a); err != 0) {
      if (!first_error) first_error = err;
      continue;
    }
    if (authkey) {
      detail::auth::handshake hs(detail::auth::handshake::role::client, *authkey);
      detail::run_handshake(fd.get(), hs, detail::deadline_after(handshake_timeout));
    }
    return detail::make_connection(std::move(fd));
  }
  detail::throw_errno(first_error, ("connect " + where.to_string()).c_str());
}

}  // namespace coproc
