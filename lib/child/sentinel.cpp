#include "child/sentinel.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>

#include "core/syscalls.hpp"

namespace coproc::detail {

namespace {
std::atomic<bool> pidfd_signal_works{true};
std::atomic<int> pidfd_mode{-1};  // -1 unknown, 0 pipe, 1 pidfd
std::atomic<bool> pipe_forced{false};
}  // namespace

sentinel sentinel::already_ended() {
  private_pipe p = make_private_pipe();
  p.write_end.reset();
  return sentinel(pipe{std::move(p.read_end), {}});
}

int sentinel::fd() const noexcept {
  if (auto* p = std::get_if<pidfd>(&v_)) return p->fd.get();
  if (auto* p = std::get_if<pipe>(&v_)) return p->read_end.get();
  return -1;
}

int sentinel::pidfd_or_none() const noexcept {
  auto* p = std::get_if<pidfd>(&v_);
  return p ? p->fd.get() : -1;
}

bool sentinel::send_signal(int sig) const {
  auto* p = std::get_if<pidfd>(&v_);
  if (!p || !pidfd_signal_works.load(std::memory_order_relaxed)) return false;
  if (sys_pidfd_send_signal(p->fd.get(), sig) == 0 || errno == ESRCH) return true;
  if (errno != ENOSYS) throw_errno("pidfd_send_signal");
  // pidfd_open (5.3) arrived one release after pidfd_send_signal (5.1), so this only happens
  // under a seccomp profile that allows one and not the other.
  pidfd_signal_works = false;
  return false;
}

bool pidfd_sentinels() {
  if (pipe_forced.load()) return false;
  int mode = pidfd_mode.load();
  if (mode < 0) {
    // Probe on ourselves: ENOSYS (old kernel, qemu-user) and EPERM (seccomp profiles of
    // older container runtimes) mean "use the pipe", for good.
    const int fd = sys_pidfd_open(::getpid());
    if (fd >= 0) {
      ::close(fd);
      mode = 1;
    } else if (errno == ENOSYS || errno == EPERM) {
      mode = 0;
    } else {
      throw_errno("pidfd_open");
    }
    pidfd_mode = mode;
  }
  return mode == 1;
}

void force_pipe_sentinels(bool on) noexcept { pipe_forced = on; }

}  // namespace coproc::detail
