#include "start/forkserver/wire.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <unistd.h>

namespace coproc::detail::forkserver_wire {

namespace {
constexpr std::size_t control_space = CMSG_SPACE(sizeof(int) * (max_handed + 1));
}

long send_with_fds(int socket, const void* data, std::size_t size, std::span<const int> fds) noexcept {
  iovec iov{const_cast<void*>(data), size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[control_space];
  if (!fds.empty()) {
    if (fds.size() > max_handed + 1) {
      errno = EMSGSIZE;
      return -1;
    }
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  long n;
  do {
    n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

long recv_with_fds(int socket, void* data, std::size_t size, std::span<int> fds,
                   std::size_t* count, int flags) noexcept {
  *count = 0;
  iovec iov{data, size};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[control_space];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  long n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < k; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (*count < fds.size())
        fds[(*count)++] = fd;
      else
        ::close(fd);  // more than asked for: not ours to keep
    }
  }
  return n;
}

}  // namespace coproc::detail::forkserver_wire
