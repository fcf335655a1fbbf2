#include "core/syscalls.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <system_error>

namespace coproc::detail {

void throw_errno(int err, const char* what) {
  throw std::system_error(err, std::generic_category(), what);
}

namespace {
std::atomic<pid_t> cached_pid{0};
void refresh_pid_in_child() { cached_pid.store(::getpid(), std::memory_order_relaxed); }
}  // namespace

pid_t self_pid() noexcept {
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  if (pid) return pid;
  static const bool registered = [] {
    return ::pthread_atfork(nullptr, nullptr, refresh_pid_in_child) == 0;
  }();
  pid = ::getpid();
  if (registered) cached_pid.store(pid, std::memory_order_relaxed);
  return pid;
}

int sys_pidfd_open(pid_t pid) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u));
}

int sys_pidfd_send_signal(int pidfd, int sig) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0u));
}

int sys_waitid(idtype_t type, id_t id, siginfo_t* info, int options,
               struct rusage* usage) noexcept {
  return static_cast<int>(::syscall(SYS_waitid, type, id, info, options, usage));
}

bool wait_readable(int fd, std::optional<std::chrono::steady_clock::time_point> deadline) {
  using namespace std::chrono;
  for (;;) {
    timespec ts{};
    timespec* tsp = nullptr;
    if (deadline) {
      const auto left = duration_cast<nanoseconds>(*deadline - steady_clock::now());
      const auto ns = left.count() > 0 ? left.count() : 0;
      ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      tsp = &ts;
    }
    pollfd p{fd, POLLIN, 0};
    const int r = ::ppoll(&p, 1, tsp, nullptr);
    if (r > 0) {
      if (p.revents & POLLNVAL) throw_errno(EBADF, "poll on sentinel");
      return true;
    }
    if (r == 0) return false;
    if (errno != EINTR) throw_errno("poll on sentinel");
    // A signal handler ran: go round with the time that is left (PEP 475's rule).
  }
}

bool send_all(int socket, std::span<const std::byte> data) noexcept {
  const std::byte* p = data.data();
  std::size_t left = data.size();
  while (left) {
    const ssize_t sent = ::send(socket, p, left, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    p += sent;
    left -= static_cast<std::size_t>(sent);
  }
  return true;
}

bool read_exact(int fd, void* data, std::size_t size) noexcept {
  auto* p = static_cast<char*>(data);
  while (size) {
    const ssize_t got = ::read(fd, p, size);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    p += got;
    size -= static_cast<std::size_t>(got);
  }
  return true;
}

}  // namespace coproc::detail
