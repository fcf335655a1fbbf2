#include "pool/wire.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <system_error>

namespace coproc::detail::pool_wire {

namespace {

using clock = std::chrono::steady_clock;

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

// Reads exactly `n` bytes (blocking); false at the end of the stream or a reset.
bool read_all(int fd, std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, MSG_WAITALL);
    if (r > 0) {
      p += r;
      n -= static_cast<std::size_t>(r);
    } else if (r == 0) {
      return false;
    } else if (errno != EINTR) {
      if (errno == ECONNRESET || errno == EPIPE) return false;
      fail("pool: reading a message");
    }
  }
  return true;
}

}  // namespace

void send(int fd, std::span<const std::byte> head, std::span<const std::byte> body) {
  std::uint64_t length = head.size() + body.size();
  iovec iov[3] = {{&length, sizeof length},
                  {const_cast<std::byte*>(head.data()), head.size()},
                  {const_cast<std::byte*>(body.data()), body.size()}};
  std::size_t first = 0;
  while (first < 3) {
    msghdr m{};
    m.msg_iov = iov + first;
    m.msg_iovlen = 3 - first;
    ssize_t sent = ::sendmsg(fd, &m, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      fail("pool: sending a message");
    }
    auto n = static_cast<std::size_t>(sent);
    while (first < 3 && n >= iov[first].iov_len) n -= iov[first++].iov_len;
    if (first < 3) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + n;
      iov[first].iov_len -= n;
    }
  }
}

got try_receive(int fd, bytes& out) {
  // One read takes a small frame whole (length and payload): at most one frame is ever in
  // flight each way (a request, then its reply), so it cannot take part of the next.
  std::byte first[4096];
  ssize_t r;
  do r = ::recv(fd, first, sizeof first, MSG_DONTWAIT);
  while (r < 0 && errno == EINTR);
  if (r == 0) return got::eof;
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return got::nothing;
    if (errno == ECONNRESET || errno == EPIPE) return got::eof;
    fail("pool: reading a message");
  }
  auto have = static_cast<std::size_t>(r);
  std::uint64_t length = 0;
  if (have < sizeof length) {
    if (!read_all(fd, first + have, sizeof length - have)) return got::eof;
    have = sizeof length;
  }
  std::memcpy(&length, first, sizeof length);
  const std::size_t payload = have - sizeof length;
  if (payload > length) throw std::system_error(EPROTO, std::generic_category(), "pool: a malformed message");
  out.resize(length);
  std::memcpy(out.data(), first + sizeof length, payload);
  return read_all(fd, out.data() + payload, length - payload) ? got::frame : got::eof;
}

got receive(int fd, bytes& out, std::chrono::microseconds spin, int also,
            std::optional<clock::time_point> deadline) {
  if (spin.count() > 0) {
    auto until = clock::now() + spin;
    if (deadline && *deadline < until) until = *deadline;
    do {
      const got g = try_receive(fd, out);
      if (g != got::nothing) return g;
      // The kernel's sync wake-ups tend to put both ends on one CPU: a poller that does not
      // yield would keep its peer, which holds the message, from running.
      ::sched_yield();
    } while (clock::now() < until);
  }
  for (;;) {
    pollfd p[2] = {{fd, POLLIN, 0}, {also, POLLIN, 0}};
    timespec ts{}, *tsp = nullptr;
    if (deadline) {
      const auto left = std::max(*deadline - clock::now(), clock::duration::zero());
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
      ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      tsp = &ts;
    }
    const int n = ::ppoll(p, also >= 0 ? 2 : 1, tsp, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("pool: waiting for a message");
    }
    if (n == 0) return got::timeout;
    if (p[0].revents) {
      const got g = try_receive(fd, out);
      if (g != got::nothing) return g;
    }
    if (also >= 0 && p[1].revents) {
      // Ended: a reply sent just before the end is still read.
      const got g = try_receive(fd, out);
      return g == got::nothing ? got::ended : g;
    }
  }
}

std::chrono::microseconds default_spin() noexcept {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return std::chrono::microseconds(0);
  return std::chrono::microseconds(CPU_COUNT(&set) >= 2 ? 50 : 0);
}

}  // namespace coproc::detail::pool_wire
