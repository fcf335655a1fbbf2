#include "core/fd.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/syscalls.hpp"

namespace coproc::detail {

void unique_fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

private_fd private_fd::adopt(unique_fd fd) noexcept {
  shared_fork_lock guard;
  fds::record(fd.get());
  return private_fd(fd.release());
}

void private_fd::reset() noexcept {
  if (fd_ < 0) return;
  shared_fork_lock guard;
  fds::forget(fd_);
  ::close(std::exchange(fd_, -1));
}

unique_fd private_fd::make_plain() && noexcept {
  if (fd_ < 0) return unique_fd();
  shared_fork_lock guard;
  fds::forget(fd_);
  return unique_fd(std::exchange(fd_, -1));
}

private_pipe make_private_pipe() {
  int ends[2] = {-1, -1};
  private_pipe p;
  p.read_end = private_fd::create([&] {
    if (::pipe2(ends, O_CLOEXEC) == -1) return -1;
    fds::record(ends[1]);  // recorded under the same guard as the read end
    return ends[0];
  });
  if (!p.read_end) throw_errno("pipe2");
  p.write_end = private_fd::adopt_recorded(ends[1]);
  return p;
}

private_socket_pair make_private_socket_pair(int type) {
  int ends[2] = {-1, -1};
  private_socket_pair p;
  p.first = private_fd::create([&] {
    if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, ends) == -1) return -1;
    fds::record(ends[1]);
    return ends[0];
  });
  if (!p.first) throw_errno("socketpair");
  p.second = private_fd::adopt_recorded(ends[1]);
  return p;
}

}  // namespace coproc::detail
