#include "posix.hpp"

#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <new>
#include <system_error>

#include "coproc_config.h"

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
  static const bool registered = [] { return ::pthread_atfork(nullptr, nullptr, refresh_pid_in_child) == 0; }();
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

// ---------------------------------------------------------------------------------------
// The fork guard is a writer-preferring rwlock, so a steady stream of descriptor creations in
// other threads cannot starve start().

namespace {
// The lock belongs to the process that made it. A forked child finds a lock owned by its parent
// (copied in whatever state the fork left it, held by a thread id that does not exist here) and
// makes its own on first use: nothing is written in a child that never needs the lock.
struct fork_lock_box {
  pthread_rwlock_t lock = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
  std::atomic<pid_t> owner{0};  // 0: not claimed yet (the first process to use it claims it)
};
fork_lock_box initial_box;
std::atomic<fork_lock_box*> current_box{&initial_box};

pthread_rwlock_t* fork_lock() noexcept {
  const pid_t me = self_pid();
  fork_lock_box* box = current_box.load(std::memory_order_acquire);
  pid_t owner = box->owner.load(std::memory_order_relaxed);
  if (owner == me) return &box->lock;
  if (owner == 0 && box->owner.compare_exchange_strong(owner, me)) return &box->lock;
  if (owner == me) return &box->lock;
  auto* fresh = new (std::nothrow) fork_lock_box;
  if (!fresh) {
    // Without a lock of its own the child would deadlock at its first coproc descriptor.
    static const char msg[] = "coproc: out of memory in a forked child\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(255);
  }
  fresh->owner.store(me, std::memory_order_relaxed);
  if (current_box.compare_exchange_strong(box, fresh, std::memory_order_acq_rel)) {
    keep_forever(box);  // the parent's copy: never unlocked, never freed
    return &fresh->lock;
  }
  delete fresh;  // another thread of this child won
  return &box->lock;
}
}  // namespace

shared_fork_lock::shared_fork_lock() noexcept : lock_(fork_lock()) { ::pthread_rwlock_rdlock(lock_); }
shared_fork_lock::~shared_fork_lock() { ::pthread_rwlock_unlock(lock_); }

exclusive_fork_lock::exclusive_fork_lock() noexcept : lock_(fork_lock()) {
  ::pthread_rwlock_wrlock(lock_);
}
exclusive_fork_lock::~exclusive_fork_lock() {
  if (lock_) ::pthread_rwlock_unlock(lock_);
}
void exclusive_fork_lock::reset_in_child() noexcept {
  // glibc records the writer's thread id and the child's thread has a new one: unlocking would
  // take the reader path and corrupt the lock. The child leaves it alone and gets its own
  // (fork_lock above) when it first needs one; reinitialising in place would also confuse
  // ThreadSanitizer, which tracks locks by address.
  lock_ = nullptr;
}

// ---------------------------------------------------------------------------------------
// The record of coproc's descriptors: a two-level bitmap of atomics. A forked child reads it
// without locks or allocation; pages are allocated on first use and never freed, so a reader
// never sees a dangling page.

namespace fds {
namespace {
constexpr std::size_t bits_per_page = 4096;
constexpr std::size_t words_per_page = bits_per_page / 64;
constexpr std::size_t page_count = 256;  // 1,048,576 descriptors: Linux's default nr_open

struct page {
  std::array<std::atomic<std::uint64_t>, words_per_page> words{};
};
std::array<std::atomic<page*>, page_count> pages{};
std::atomic<std::size_t> pages_in_use{0};  // one past the highest page ever allocated

page* page_for(int fd, bool create) noexcept {
  const auto index = static_cast<std::size_t>(fd) / bits_per_page;
  if (index >= page_count) return nullptr;
  page* p = pages[index].load(std::memory_order_acquire);
  if (p || !create) return p;
  auto* fresh = new (std::nothrow) page;
  if (!fresh) return nullptr;
  if (pages[index].compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) {
    std::size_t limit = pages_in_use.load(std::memory_order_relaxed);
    while (limit < index + 1 &&
           !pages_in_use.compare_exchange_weak(limit, index + 1, std::memory_order_release)) {
    }
    return fresh;
  }
  delete fresh;
  return p;
}
}  // namespace

void record(int fd) noexcept {
  if (fd < 0) return;
  // A descriptor beyond the bitmap (above nr_open's default) is simply not closed in
  // children: the cost of being wrong is one leaked descriptor, never a wrong close.
  if (page* p = page_for(fd, true)) {
    const auto bit = static_cast<std::size_t>(fd) % bits_per_page;
    const auto mask = std::uint64_t{1} << (bit % 64);
    p->words[bit / 64].fetch_or(mask, std::memory_order_relaxed);
  }
}

void forget(int fd) noexcept {
  if (fd < 0) return;
  if (page* p = page_for(fd, false)) {
    const auto bit = static_cast<std::size_t>(fd) % bits_per_page;
    const auto mask = std::uint64_t{1} << (bit % 64);
    p->words[bit / 64].fetch_and(~mask, std::memory_order_relaxed);
  }
}

namespace {
void close_span(unsigned lo, unsigned hi) noexcept {
#if COPROC_HAVE_CLOSE_RANGE
  if (::close_range(lo, hi, 0) == 0) return;
#endif
  for (unsigned fd = lo; fd <= hi; ++fd) ::close(static_cast<int>(fd));
}

bool kept(unsigned fd, std::initializer_list<int> keep) noexcept {
  for (int k : keep)
    if (k >= 0 && static_cast<unsigned>(k) == fd) return true;
  return false;
}
}  // namespace

void close_recorded_in_child(std::initializer_list<int> keep) noexcept {
  // Consecutive recorded descriptors are closed with one close_range: coproc's descriptors
  // are usually allocated in runs, so a child with thousands of siblings makes few calls.
  long run_start = -1;
  unsigned run_end = 0;
  auto flush = [&] {
    if (run_start >= 0) close_span(static_cast<unsigned>(run_start), run_end);
    run_start = -1;
  };
  // Only the pages ever used are scanned: the child's cache is cold, and a process with a few
  // hundred descriptors has one page.
  const std::size_t limit = pages_in_use.load(std::memory_order_acquire);
  for (std::size_t pi = 0; pi < limit; ++pi) {
    page* p = pages[pi].load(std::memory_order_acquire);
    if (!p) {
      flush();
      continue;
    }
    for (std::size_t w = 0; w < words_per_page; ++w) {
      const std::uint64_t word = p->words[w].load(std::memory_order_relaxed);
      if (!word) {
        flush();
        continue;
      }
      for (unsigned b = 0; b < 64; ++b) {
        const auto fd = static_cast<unsigned>(pi * bits_per_page + w * 64 + b);
        const bool closing = ((word >> b) & 1u) && !kept(fd, keep);
        if (closing) {
          if (run_start < 0) run_start = fd;
          run_end = fd;
        } else {
          flush();
        }
      }
      // Only words that had bits are written: every page a child writes costs it a fault.
      p->words[w].store(0, std::memory_order_relaxed);
    }
  }
  flush();
  for (int k : keep) record(k);
}
}  // namespace fds

namespace {
struct kept_node {
  const void* object;
  kept_node* next;
};
std::atomic<kept_node*> kept_head{nullptr};
}  // namespace

void keep_forever(const void* object) noexcept {
  if (!object) return;
  auto* node = new (std::nothrow) kept_node{object, kept_head.load(std::memory_order_relaxed)};
  if (!node) return;
  while (!kept_head.compare_exchange_weak(node->next, node, std::memory_order_release)) {
  }
}

void owned_fd::reset() noexcept {
  if (fd_ >= 0) close_recorded(std::exchange(fd_, -1));
}

void close_recorded(int fd) noexcept {
  if (fd < 0) return;
  shared_fork_lock guard;
  fds::forget(fd);
  ::close(fd);
}

}  // namespace coproc::detail
