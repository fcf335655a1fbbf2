// The handshake's messages on a socket: blocking with a deadline, or on a reactor.
#include "connection/handshake.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <stdexcept>
#include <system_error>

#include <boost/asio/error.hpp>

#include <coproc/error.hpp>

#include "connection/state.hpp"
#include "core/syscalls.hpp"

namespace coproc::detail {

namespace {

namespace errc = boost::system::errc;

// Why a frame could not be moved.
enum class trouble {
  none,
  blocked,      // would block: wait for readiness
  eof,          // end of stream before the message
  eof_inside,   // end of stream inside it
  too_long,     // over the maxlength
  bad_header,   // a length no Python sends
  os,           // errno says
};

// Sends what is left of header + payload without blocking.
trouble send_some(int fd, frame_header& header, const bytes& payload, std::size_t& done) {
  const std::size_t total = header.size + payload.size();
  while (done < total) {
    iovec iov[2];
    int n_iov = 0;
    if (done < header.size)
      iov[n_iov++] = {header.data.data() + done, header.size - done};
    const std::size_t payload_done = done > header.size ? done - header.size : 0;
    if (payload_done < payload.size())
      iov[n_iov++] = {const_cast<std::byte*>(payload.data()) + payload_done,
                      payload.size() - payload_done};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<std::size_t>(n_iov);
    const long n = retry_eintr([&]() -> long { return ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT); });
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? trouble::blocked : trouble::os;
    done += static_cast<std::size_t>(n);
  }
  return trouble::none;
}

// Receives the rest of one frame without blocking; never past its end.
trouble recv_some(int fd, frame_reader& r) {
  for (;;) {
    const auto buf = r.next();
    const long n = retry_eintr([&]() -> long { return ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT); });
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK ? trouble::blocked : trouble::os;
    if (n == 0 && !buf.empty()) return r.started() ? trouble::eof_inside : trouble::eof;
    frame_reader::status st;
    try {
      st = r.advance(static_cast<std::size_t>(n));
    } catch (const std::system_error&) {
      return trouble::bad_header;
    }
    switch (st) {
      case frame_reader::status::more:
        continue;
      case frame_reader::status::complete:
        return trouble::none;
      case frame_reader::status::too_long:
        return trouble::too_long;
    }
  }
}

[[noreturn]] void throw_trouble(trouble t, int err) {
  switch (t) {
    case trouble::eof:
      throw eof_error("end of stream during the authentication handshake");
    case trouble::eof_inside:
      throw std::system_error(std::make_error_code(std::errc::io_error),
                              "got end of file during message");
    case trouble::too_long:
      throw std::system_error(std::make_error_code(std::errc::message_size), "bad message length");
    case trouble::bad_header:
      throw std::system_error(std::make_error_code(std::errc::protocol_error),
                              "bad message header: negative length");
    default:
      throw_errno(err, "authentication handshake");
  }
}

error_code trouble_code(trouble t, int err) {
  switch (t) {
    case trouble::eof:
      return boost::asio::error::eof;
    case trouble::eof_inside:
      return make_error_code(errc::io_error);
    case trouble::too_long:
      return boost::asio::error::message_size;
    case trouble::bad_header:
      return make_error_code(errc::protocol_error);
    default:
      return {err, boost::system::generic_category()};
  }
}

// Waits for `events` on `fd` until the deadline; false when it passed.
bool wait_for(int fd, short events, const clock_deadline& deadline) {
  for (;;) {
    int ms = -1;
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      ms = static_cast<int>(std::min<long long>(left.count(), 1 << 30));
    }
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) throw_errno("poll");
  }
}

[[noreturn]] void timed_out() {
  throw std::system_error(std::make_error_code(std::errc::timed_out),
                          "authentication handshake timed out");
}

}  // namespace

void run_handshake(int fd, auth::handshake& hs, clock_deadline deadline) {
  for (;;) {
    switch (hs.next()) {
      case auth::handshake::want::send: {
        const auto out = hs.outgoing();
        const bytes payload(out.begin(), out.end());
        frame_header header = encode_header(payload.size());
        std::size_t done = 0;
        for (;;) {
          const trouble t = send_some(fd, header, payload, done);
          if (t == trouble::none) break;
          // "#FAILURE#" that cannot go out: the handshake failed all the same.
          if (t != trouble::blocked && !hs.error().empty()) throw authentication_error(hs.error());
          if (t != trouble::blocked) throw_trouble(t, errno);
          if (!wait_for(fd, POLLOUT, deadline)) timed_out();
        }
        hs.sent();
        break;
      }
      case auth::handshake::want::receive: {
        frame_reader r(auth::max_message);
        for (;;) {
          const trouble t = recv_some(fd, r);
          if (t == trouble::none) break;
          if (t != trouble::blocked) throw_trouble(t, errno);
          if (!wait_for(fd, POLLIN, deadline)) timed_out();
        }
        const bytes message = r.take();
        hs.received(message);
        break;
      }
      case auth::handshake::want::done:
        return;
      case auth::handshake::want::failed:
        throw authentication_error(hs.error());
    }
  }
}

connection make_connection(private_fd fd) {
  return connection_access::make(std::make_shared<connection_state>(std::move(fd), true, true));
}

// ---------------------------------------------------------------------------------------

connecting_op::connecting_op(asio::any_io_executor io, handler_type handler,
                             std::optional<bytes> key, auth::handshake::role role,
                             std::chrono::nanoseconds timeout)
    : operation(io, std::move(handler)),
      key_(std::move(key)),
      role_(role),
      timeout_(timeout),
      sock_(io) {}

connecting_op::~connecting_op() {
  // The descriptor is sock_fd_'s: the reactor lets it go without closing it.
  if (sock_.is_open()) (void)sock_.release();
}

error_code connecting_op::os_error() {
  try {
    throw;
  } catch (const authentication_error&) {
    return make_error_code(coproc::errc::authentication_failed);
  } catch (const std::runtime_error&) {
    try {
      return current_os_error();
    } catch (...) {
      return make_error_code(errc::io_error);  // RAND_bytes without randomness
    }
  } catch (...) {
    return current_os_error();
  }
}

void connecting_op::ensure_registered() {
  if (!sock_.is_open()) sock_.assign(sock_fd_.get());
}

void connecting_op::drop_socket() noexcept {
  if (sock_.is_open()) {
    error_code ignored;
    sock_.cancel(ignored);
    (void)sock_.release();
  }
  sock_fd_.reset();
}

void connecting_op::fail(lock_type& l, error_code ec, bool initiating) {
  if (initiating)
    complete_later(l, ec, connection());
  else
    complete(l, ec, connection());
}

void connecting_op::connected(lock_type& l, bool initiating) {
  try {
    if (key_) {
      hs_.emplace(role_, *key_);
      if (timeout_ != std::chrono::nanoseconds::max()) arm_deadline(timeout_);
      return drive(l, initiating);
    }
    if (sock_.is_open()) (void)sock_.release();
    auto c = make_connection(std::move(sock_fd_));
    if (initiating)
      complete_later(l, {}, std::move(c));
    else
      complete(l, {}, std::move(c));
  } catch (...) {
    fail(l, os_error(), initiating);
  }
}

void connecting_op::drive(lock_type& l, bool initiating) {
  for (;;) {
    switch (hs_->next()) {
      case auth::handshake::want::send: {
        if (!out_active_) {
          const auto m = hs_->outgoing();
          out_.assign(m.begin(), m.end());
          header_ = encode_header(out_.size());
          out_done_ = 0;
          out_active_ = true;
        }
        const trouble t = send_some(sock_fd_.get(), header_, out_, out_done_);
        if (t == trouble::blocked)
          return wait_socket(wait_type::wait_write, [this](lock_type& l2) { drive(l2, false); });
        if (t != trouble::none) {
          // "#FAILURE#" that cannot go out: the handshake failed all the same.
          if (!hs_->error().empty())
            return fail(l, make_error_code(coproc::errc::authentication_failed), initiating);
          return fail(l, trouble_code(t, errno), initiating);
        }
        out_active_ = false;
        hs_->sent();
        break;
      }
      case auth::handshake::want::receive: {
        const trouble t = recv_some(sock_fd_.get(), reader_);
        if (t == trouble::blocked)
          return wait_socket(wait_type::wait_read, [this](lock_type& l2) { drive(l2, false); });
        if (t != trouble::none) return fail(l, trouble_code(t, errno), initiating);
        const bytes message = reader_.take();
        reader_ = frame_reader(auth::max_message);
        hs_->received(message);
        break;
      }
      case auth::handshake::want::done: {
        if (sock_.is_open()) (void)sock_.release();  // the connection registers it anew
        auto c = make_connection(std::move(sock_fd_));
        if (initiating)
          return complete_later(l, {}, std::move(c));
        return complete(l, {}, std::move(c));
      }
      case auth::handshake::want::failed:
        return fail(l, make_error_code(coproc::errc::authentication_failed), initiating);
    }
  }
}

void connecting_op::on_deadline(lock_type& l) {
  complete(l, boost::asio::error::timed_out, connection());
}

void connecting_op::release(lock_type&) noexcept {
  if (socket_waiting_ && sock_.is_open()) {
    error_code ignored;
    sock_.cancel(ignored);
  }
}

}  // namespace coproc::detail
