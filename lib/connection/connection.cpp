// The connection object: Python's multiprocessing.connection.Connection, rule by rule.
#include <coproc/connection.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <stdexcept>

#include "connection/state.hpp"
#include "core/syscalls.hpp"

namespace coproc {

connection::connection() noexcept = default;

connection::connection(std::shared_ptr<detail::connection_state> state) noexcept
    : state_(std::move(state)) {}

connection::connection(int fd, bool readable, bool writable) {
  if (fd < 0) throw std::invalid_argument("invalid handle");
  if (!readable && !writable)
    throw std::invalid_argument("at least one of `readable` and `writable` must be True");
  state_ = std::make_shared<detail::connection_state>(
      detail::private_fd::adopt(detail::unique_fd(fd)), readable, writable);
}

connection::connection(connection&&) noexcept = default;

connection& connection::operator=(connection&& o) noexcept {
  if (this != &o) {
    close();
    state_ = std::move(o.state_);
  }
  return *this;
}

connection::~connection() { close(); }

detail::connection_state& connection::open_state() const {
  if (!state_ || state_->closed()) throw std::logic_error("handle is closed");
  return *state_;
}

void connection::send_bytes(std::span<const std::byte> buf, std::size_t offset,
                            std::optional<std::size_t> size) {
  auto& s = open_state();
  s.check_writable();
  if (offset > buf.size()) throw std::invalid_argument("buffer length < offset");
  if (size && *size > buf.size() - offset)
    throw std::invalid_argument("buffer length < offset + size");
  s.send_message(buf.subspan(offset, size.value_or(buf.size() - offset)));
}

bytes connection::recv_bytes(std::optional<std::size_t> maxlength) {
  return open_state().recv_message(maxlength);
}

std::size_t connection::recv_bytes_into(std::span<std::byte> buf, std::size_t offset) {
  auto& s = open_state();
  s.check_readable();
  if (offset > buf.size()) throw std::invalid_argument("offset too large");
  return s.recv_message_into(buf.subspan(offset));
}

bool connection::poll() { return poll_for(std::chrono::nanoseconds(0)); }

bool connection::poll_for(std::chrono::nanoseconds timeout) {
  auto& s = open_state();
  s.check_readable();
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout != std::chrono::nanoseconds::max()) {
    const auto now = std::chrono::steady_clock::now();
    deadline = timeout > std::chrono::steady_clock::time_point::max() - now
                   ? std::chrono::steady_clock::time_point::max()
                   : now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
  }
  // Nothing is read ahead of the messages returned, so the descriptor's readiness is the
  // connection's (a message, part of one, or the end of the stream).
  return detail::wait_readable(s.fd(), deadline);
}

int connection::fileno() const { return open_state().fd(); }

bool connection::closed() const noexcept { return !state_ || state_->closed(); }
bool connection::readable() const noexcept { return state_ && state_->readable(); }
bool connection::writable() const noexcept { return state_ && state_->writable(); }

void connection::close() {
  if (!state_) return;
  state_->close();
  state_.reset();
}

std::pair<connection, connection> pipe(bool duplex) {
  // Both directions are a socketpair, also for duplex=false (Python uses os.pipe there): a
  // socket takes MSG_NOSIGNAL and MSG_DONTWAIT per call, so no SIGPIPE and no mode change of
  // a descriptor a child may share.
  int fds[2] = {-1, -1};
  detail::private_fd a = detail::private_fd::create([&] {
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == -1) return -1;
    detail::fds::record(fds[1]);  // under the same guard as fds[0]
    return fds[0];
  });
  if (!a) detail::throw_errno("socketpair");
  detail::private_fd b = detail::private_fd::adopt_recorded(fds[1]);
  // duplex=false: Python's (reader, writer), the direction kept by the ends' flags alone. No
  // direction is shut down: a shut direction reads as end of stream, which would make the
  // writer ready in wait() and poll(2) at once, where Python's os.pipe() writer becomes ready
  // only when its reader has gone. So it is here.
  using detail::connection_access;
  using detail::connection_state;
  return {connection_access::make(std::make_shared<connection_state>(std::move(a), true, duplex)),
          connection_access::make(std::make_shared<connection_state>(std::move(b), duplex, true))};
}

}  // namespace coproc
