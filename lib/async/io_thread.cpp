#include "async/io_thread.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/detail/scheduler.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/asio/thread_pool.hpp>

#include "core/fd.hpp"
#include "core/per_process.hpp"
#include "start/fork_policy.hpp"

namespace coproc::detail {

namespace asio = boost::asio;

namespace {

// Asio's reactor opens an epoll, an eventfd (its interrupter) and a timerfd and names none of
// them, yet every child coproc starts must close them. So they are found: a descriptor of our
// own is registered with the new reactor, the epoll whose /proc fdinfo lists it is the
// reactor's, and the other descriptors that epoll lists are the interrupter and the timer.
// All under the fork guard, so no child is forked between their creation and their record.
// Without /proc nothing is found, and children inherit the three (a leak, never a wrong close).
class reactor_descriptors {
 public:
  explicit reactor_descriptors(asio::io_context& context) {
    shared_fork_lock guard;  // not recursive: nothing below may make a private_fd
    unique_fd probe(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!probe) throw_errno("eventfd");
    asio::posix::stream_descriptor d(context);  // makes the reactor
    d.assign(probe.get());
    fds_ = epoll_listing(probe.get());
    (void)d.release();
    for (int fd : fds_) fds::record(fd);
  }
  // Only when the I/O thread failed to start: the context closes them next.
  ~reactor_descriptors() {
    shared_fork_lock guard;
    for (int fd : fds_) fds::forget(fd);
  }
  reactor_descriptors(const reactor_descriptors&) = delete;
  reactor_descriptors& operator=(const reactor_descriptors&) = delete;

 private:
  static std::vector<int> epoll_listing(int probe) {
    std::vector<int> found;
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return found;
    while (dirent* e = ::readdir(dir)) {
      if (e->d_name[0] == '.') continue;
      const int fd = std::atoi(e->d_name);
      char path[64], target[64];
      std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
      const auto n = ::readlink(path, target, sizeof target - 1);
      if (n <= 0 || std::string_view(target, static_cast<std::size_t>(n)) != "anon_inode:[eventpoll]")
        continue;
      std::vector<int> listed = watched_by(fd);
      if (std::find(listed.begin(), listed.end(), probe) == listed.end()) continue;
      found.push_back(fd);
      for (int l : listed)
        if (l != probe) found.push_back(l);
      break;
    }
    ::closedir(dir);
    return found;
  }

  // The descriptors an epoll watches: its fdinfo has a "tfd: N" line for each.
  static std::vector<int> watched_by(int epfd) {
    std::vector<int> listed;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
    std::FILE* f = std::fopen(path, "re");
    if (!f) return listed;
    char line[256];
    while (std::fgets(line, sizeof line, f)) {
      int fd;
      if (std::sscanf(line, "tfd: %d", &fd) == 1) listed.push_back(fd);
    }
    std::fclose(f);
    return listed;
  }

  std::vector<int> fds_;
};

// Signals belong to the program's threads, not to ours: the thread starts with all of them
// blocked, and the caller's mask is restored however the start ends.
class all_signals_blocked {
 public:
  all_signals_blocked() {
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, &old_);
  }
  ~all_signals_blocked() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  all_signals_blocked(const all_signals_blocked&) = delete;
  all_signals_blocked& operator=(const all_signals_blocked&) = delete;

 private:
  sigset_t old_;
};

// coproc's own I/O thread, for handlers without an executor that can run a reactor. Started on
// first use and never destroyed: joins may still be pending while static destructors run.
struct io_thread {
  pid_t owner = 0;
  asio::io_context context{1};
  reactor_descriptors descriptors{context};  // destroyed before the context that closes them
  asio::executor_work_guard<asio::io_context::executor_type> guard{context.get_executor()};
  std::thread thread;

  io_thread() {
    all_signals_blocked blocked;
    count_own_thread(+1);  // not the user's thread: the fork policy does not count it
    try {
      thread = std::thread([this] { context.run(); });
    } catch (...) {
      count_own_thread(-1);
      throw;
    }
    thread.detach();
  }
};

struct creation_lock {
  pid_t owner = 0;
  std::mutex mutex;
};

// Per process: a forked child, where the parent's thread does not exist, starts its own on
// first use and writes nothing until then.
per_process<io_thread> io_threads;
per_process<creation_lock> creation_locks;

asio::io_context& own_io_context() {
  if (io_thread* t = io_threads.own()) return t->context;
  auto& creation = creation_locks.get([](const creation_lock*) {
    return std::make_unique<creation_lock>();
  });
  std::lock_guard lock(creation.mutex);
  return io_threads.get([](const io_thread*) { return std::make_unique<io_thread>(); }).context;
}

}  // namespace

namespace {
// The context's own executor behind the handler's (which may be a strand, or carry tracked
// work): the watch of a child is shared by all the context's joiners, and must not run its
// handlers on the strand of whichever came first.
template <class Plain>
bool plain_executor(const asio::any_io_executor& io, asio::any_io_executor& out) {
  using tracked = decltype(asio::require(std::declval<Plain>(),
                                         asio::execution::outstanding_work.tracked));
  if (auto* e = io.target<Plain>()) {
    out = e->context().get_executor();
  } else if (auto* t = io.target<tracked>()) {
    out = t->context().get_executor();
  } else if (auto* s = io.target<asio::strand<Plain>>()) {
    out = s->get_inner_executor().context().get_executor();
  } else {
    return false;
  }
  return true;
}
}  // namespace

reactor reactor_for(const asio::any_io_executor& io) {
  if (io && !io.target<asio::system_executor>()) {
    auto& context = asio::query(io, asio::execution::context);
    if (asio::has_service<asio::detail::scheduler>(context)) {
      asio::any_io_executor plain = io;
      plain_executor<asio::io_context::executor_type>(io, plain) ||
          plain_executor<asio::thread_pool::executor_type>(io, plain);
      return {plain, &context};
    }
  }
  auto& own = own_io_context();
  return {own.get_executor(), &own};
}

}  // namespace coproc::detail
