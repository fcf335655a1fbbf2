#include "connection/state.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>
#include <system_error>

#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

#include "async/registration.hpp"
#include "connection/framing.hpp"
#include "core/syscalls.hpp"

namespace coproc::detail {

namespace {

bool is_socket_fd(int fd) noexcept {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

void wait_ready(int fd, short events) {
  pollfd p{fd, events, 0};
  if (retry_eintr([&] { return ::poll(&p, 1, -1); }) == -1) throw_errno("poll");
}

// A write to a pipe whose reader has gone raises SIGPIPE in the writing thread. It is blocked
// for the write, and one it raised is taken off the thread's pending set (unless one was
// pending before, which is not ours to take), so the process never dies of it.
class sigpipe_blocked {
 public:
  sigpipe_blocked() noexcept {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~sigpipe_blocked() {
    if (raised_ && !was_pending_) {
      timespec zero{};
      while (::sigtimedwait(&pipe_, nullptr, &zero) == -1 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  void raised() noexcept { raised_ = true; }

 private:
  sigset_t pipe_, old_;
  bool was_pending_ = false;
  bool raised_ = false;
};

}  // namespace

int write_all(int fd, bool socket, std::span<iovec> iov) noexcept {
  std::optional<sigpipe_blocked> guard;
  if (!socket) guard.emplace();
  while (!iov.empty()) {
    long n;
    if (socket) {
      msghdr msg{};
      msg.msg_iov = iov.data();
      msg.msg_iovlen = iov.size();
      n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    } else {
      n = ::writev(fd, iov.data(), static_cast<int>(iov.size()));
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{fd, POLLOUT, 0};
        if (retry_eintr([&] { return ::poll(&p, 1, -1); }) == -1) return errno;
        continue;
      }
      if (errno == EPIPE && guard) guard->raised();
      return errno;
    }
    auto done = static_cast<std::size_t>(n);
    while (!iov.empty() && done >= iov.front().iov_len) {
      done -= iov.front().iov_len;
      iov = iov.subspan(1);
    }
    if (!iov.empty()) {
      iov.front().iov_base = static_cast<char*>(iov.front().iov_base) + done;
      iov.front().iov_len -= done;
    }
  }
  return 0;
}

connection_state::connection_state(private_fd fd, bool readable, bool writable)
    : fd_(std::move(fd)), socket_(is_socket_fd(fd_.get())), readable_(readable),
      writable_(writable) {}

connection_state::~connection_state() {
  // Deregister before the descriptor closes: a copy of it in a child would keep the epoll
  // entry alive, and the reactor would report events for a descriptor nobody watches.
  for (auto& e : registrations_)
    if (auto r = e.reg.lock()) e.service->forget(r);
}

void connection_state::check_readable() const {
  if (closed()) throw std::logic_error("handle is closed");
  if (!readable()) throw std::logic_error("connection is write-only");
}

void connection_state::check_writable() const {
  if (closed()) throw std::logic_error("handle is closed");
  if (!writable()) throw std::logic_error("connection is read-only");
}

void connection_state::close() noexcept {
  if (closed_.exchange(true)) return;
  std::lock_guard lock(registrations_mutex_);
  for (auto& e : registrations_)
    if (auto r = e.reg.lock()) r->cancel_for_good();
}

void connection_state::make_nonblocking() {
  if (socket_) return;  // MSG_DONTWAIT per call: the descriptor stays blocking for its users
  const int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags == -1) throw_errno("fcntl");
  if (!(flags & O_NONBLOCK) && ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK) == -1)
    throw_errno("fcntl");
}

long connection_state::read_now(std::span<std::byte> buf) noexcept {
  return retry_eintr([&]() -> long {
    return socket_ ? ::recv(fd_.get(), buf.data(), buf.size(), MSG_DONTWAIT)
                   : ::read(fd_.get(), buf.data(), buf.size());
  });
}

long connection_state::write_now(std::span<iovec> iov) noexcept {
  if (socket_) {
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.size();
    return retry_eintr([&]() -> long { return ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT); });
  }
  sigpipe_blocked guard;
  const long n = retry_eintr(
      [&]() -> long { return ::writev(fd_.get(), iov.data(), static_cast<int>(iov.size())); });
  if (n < 0 && errno == EPIPE) guard.raised();
  return n;
}

std::size_t connection_state::read_some(std::span<std::byte> buf) {
  for (;;) {
    const long n = retry_eintr([&]() -> long { return ::read(fd_.get(), buf.data(), buf.size()); });
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno != EAGAIN) throw_errno("recv_bytes");
    wait_ready(fd_.get(), POLLIN);  // made non-blocking by an asynchronous operation
  }
}

void connection_state::send_message(std::span<const std::byte> payload) {
  std::lock_guard lock(send_mutex_);
  check_writable();
  if (send_busy_.load(std::memory_order_acquire))
    throw std::logic_error("another send is in progress on this connection");
  const frame_header h = encode_header(payload.size());
  iovec iov[2] = {{const_cast<std::byte*>(h.data.data()), h.size},
                  {const_cast<std::byte*>(payload.data()), payload.size()}};
  const int err = write_all(fd_.get(), socket_, std::span<iovec>(iov, payload.empty() ? 1 : 2));
  if (err) throw_errno(err, "send_bytes");
}

namespace {
// Python: EOF before a frame is EOFError; inside one, OSError("got end of file during message").
[[noreturn]] void end_of_stream(const frame_reader& r) {
  if (!r.started()) throw eof_error("end of stream");
  throw std::system_error(std::make_error_code(std::errc::io_error),
                          "got end of file during message");
}

// The stream is out of step for good (a payload left unread, a header no Python sends): as
// Python does after a bad length, a duplex end stops reading and a read-only one is closed.
void stop_reading(connection_state& s) noexcept {
  if (s.writable()) s.poison_reading();
  else s.close();
}

// r.advance(n); a header no Python sends (a negative length) also stops reading, as in the
// asynchronous forms: the next frame would be read from the middle of this one.
frame_reader::status advance(connection_state& s, frame_reader& r, std::size_t n) {
  try {
    return r.advance(n);
  } catch (const std::system_error&) {
    stop_reading(s);
    throw;
  }
}
}  // namespace

bytes connection_state::recv_message(std::optional<std::size_t> maxlength) {
  std::lock_guard lock(recv_mutex_);
  check_readable();
  if (recv_busy_.load(std::memory_order_acquire))
    throw std::logic_error("another receive is in progress on this connection");
  frame_reader r(maxlength);
  for (;;) {
    const auto buf = r.next();
    const std::size_t n = read_some(buf);
    if (n == 0 && !buf.empty()) end_of_stream(r);
    switch (advance(*this, r, n)) {
      case frame_reader::status::more:
        continue;
      case frame_reader::status::complete:
        return r.take();
      case frame_reader::status::too_long:
        // The payload is not read.
        stop_reading(*this);
        throw std::system_error(std::make_error_code(std::errc::message_size),
                                "bad message length");
    }
  }
}

std::size_t connection_state::recv_message_into(std::span<std::byte> buf) {
  std::lock_guard lock(recv_mutex_);
  check_readable();
  if (recv_busy_.load(std::memory_order_acquire))
    throw std::logic_error("another receive is in progress on this connection");
  frame_reader r({}, buf);
  for (;;) {
    const auto next = r.next();
    const std::size_t n = read_some(next);
    if (n == 0 && !next.empty()) end_of_stream(r);
    if (advance(*this, r, n) == frame_reader::status::complete) {
      if (r.in_place()) return static_cast<std::size_t>(r.length());
      throw buffer_too_short(r.take());
    }
  }
}

std::shared_ptr<registration> connection_state::registration_for(const reactor& where) {
  std::lock_guard lock(registrations_mutex_);
  for (auto& e : registrations_)
    if (e.reactor == where.key)
      if (auto r = e.reg.lock()) return r;
  registrations_.erase(std::remove_if(registrations_.begin(), registrations_.end(),
                                      [](const registration_entry& e) { return e.reg.expired(); }),
                       registrations_.end());
  // The registration first, then the service: the service is then made after the reactor's
  // own, and shuts down (letting its registrations go) before them.
  auto r = std::make_shared<registration>(fd_.get(), where.executor);
  auto& service = boost::asio::use_service<registration_service>(
      boost::asio::query(where.executor, boost::asio::execution::context));
  service.adopt(r);
  registrations_.push_back({where.key, r, &service});
  // close() sets closed_ before it takes the lock: either it finds this registration, or
  // closed_ is already seen here.
  if (closed()) r->cancel_for_good();
  return r;
}

}  // namespace coproc::detail
