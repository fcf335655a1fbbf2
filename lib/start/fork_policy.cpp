// The fork start method in a program that runs other threads: detection and the user's policy.
#include "start/fork_policy.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include <coproc/fork_policy.hpp>

#include "core/syscalls.hpp"

namespace coproc {

namespace {
std::atomic<fork_thread_policy> policy{fork_thread_policy::warn};
}

void set_fork_thread_policy(fork_thread_policy p) { policy.store(p, std::memory_order_relaxed); }
fork_thread_policy get_fork_thread_policy() { return policy.load(std::memory_order_relaxed); }

std::string_view to_string(fork_thread_policy p) {
  switch (p) {
    case fork_thread_policy::allow:
      return "allow";
    case fork_thread_policy::warn:
      return "warn";
    case fork_thread_policy::refuse:
      return "refuse";
  }
  return "unknown";
}

}  // namespace coproc

namespace coproc::detail {

namespace {

// The pid that made the count in the high half, the count in the low half: one atomic word, so
// a forked child, which inherits its parent's word, sees a count of another process and reads 0.
std::atomic<std::uint64_t> own_threads{0};

std::uint64_t pack(pid_t pid, std::uint32_t count) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 32) | count;
}

int own_thread_count() noexcept {
  const std::uint64_t word = own_threads.load(std::memory_order_acquire);
  if (static_cast<pid_t>(word >> 32) != self_pid()) return 0;
  return static_cast<int>(static_cast<std::uint32_t>(word));
}

// The number of threads of this process, or 0 if /proc cannot tell. The kernel reports it as
// the link count of /proc/self/task (2 + the number of threads, procfs's proc_task_getattr):
// one stat(2), no descriptor, independent of the number of threads (measured on the reference
// VM: 5 us, where opening, reading and closing /proc/self/stat, whose field 20 says the same,
// costs 34 us, and listing /proc/self/task 20 us for one thread and 1.3 ms for 500).
// /proc/self/stat is the fallback for a /proc that does not count links.
int process_thread_count() noexcept {
  struct stat st {};
  if (::stat("/proc/self/task", &st) == 0 && st.st_nlink >= 3)
    return static_cast<int>(st.st_nlink - 2);
  const int fd = retry_eintr([] { return ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC); });
  if (fd < 0) return 0;
  char buf[1024];
  const ssize_t n = retry_eintr([&] { return ::read(fd, buf, sizeof buf - 1); });
  ::close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  // pid (comm) state ...: comm may hold spaces and parentheses, so fields count from its last ')'.
  const char* p = std::strrchr(buf, ')');
  if (!p) return 0;
  for (int field = 2; field < 20; ++p) {
    if (*p == '\0') return 0;
    if (*p == ' ') ++field;
  }
  return std::atoi(p);
}

}  // namespace

void count_own_thread(int delta) noexcept {
  const pid_t self = self_pid();
  std::uint64_t word = own_threads.load(std::memory_order_relaxed);
  for (;;) {
    std::uint32_t count =
        static_cast<pid_t>(word >> 32) == self ? static_cast<std::uint32_t>(word) : 0;
    count = static_cast<std::uint32_t>(static_cast<int>(count) + delta);
    if (own_threads.compare_exchange_weak(word, pack(self, count), std::memory_order_acq_rel,
                                          std::memory_order_relaxed))
      return;
  }
}

int user_thread_count() noexcept {
  int n = process_thread_count();
  if (n <= 0) return 1;  // /proc cannot tell: treated as single-threaded
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer starts a background thread of its own at the program's first
  // pthread_create, before that thread; it never ends. So a second thread means it is there.
  if (n >= 2) --n;
#endif
  n -= own_thread_count();
  return n < 1 ? 1 : n;
}

void check_fork_thread_policy() {
  const fork_thread_policy p = get_fork_thread_policy();
  if (p == fork_thread_policy::allow) return;
  const int threads = user_thread_count();
  if (threads <= 1) return;
  const pid_t pid = self_pid();
  if (p == fork_thread_policy::refuse) {
    throw std::logic_error(
        "fork refused: this process (pid=" + std::to_string(pid) + ") is multi-threaded (" +
        std::to_string(threads) +
        " threads), use of fork() may lead to deadlocks in the child "
        "(fork_thread_policy::refuse); use the spawn or forkserver start method, or "
        "set_fork_thread_policy(fork_thread_policy::allow)");
  }
  // Once per process: the pid that printed it. A forked child inherits the word but is another
  // process; it warns on its own if it forks with threads of its own.
  static std::atomic<pid_t> warned_by{0};
  pid_t seen = warned_by.load(std::memory_order_relaxed);
  do {
    if (seen == pid) return;
  } while (!warned_by.compare_exchange_weak(seen, pid, std::memory_order_relaxed));
  char msg[640];
  const int len = std::snprintf(
      msg, sizeof msg,
      "coproc warning: This process (pid=%d) is multi-threaded (%d threads), use of fork() may "
      "lead to deadlocks in the child. Use the spawn or forkserver start method "
      "(coproc::set_start_method, process_options::method), or "
      "coproc::set_fork_thread_policy(coproc::fork_thread_policy::allow) to fork without this "
      "warning (refuse: to make it an error). This warning is printed once per process.\n",
      static_cast<int>(pid), threads);
  if (len > 0)
    (void)std::fwrite(msg, 1, std::min<std::size_t>(static_cast<std::size_t>(len), sizeof msg - 1),
                      stderr);
}

}  // namespace coproc::detail
