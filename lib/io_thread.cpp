#include "io_thread.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <mutex>
#include <new>
#include <thread>

#include <boost/asio/detail/scheduler.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include "runtime.hpp"

namespace coproc::detail {

namespace asio = boost::asio;

// coproc's own I/O thread, for handlers without an executor that can run a reactor. Started on
// first use and never destroyed: joins may still be pending while static destructors run.
// It belongs to the process that started it: a forked child (where the thread does not exist)
// starts its own on first use, and writes nothing until then.
namespace {
struct io_thread {
  asio::io_context context{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{context.get_executor()};
  std::thread thread;
  pid_t owner = self_pid();

  io_thread() {
    // Signals belong to the program's threads, not to ours.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    thread = std::thread([this] { context.run(); });
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    thread.detach();
  }
};

// Guards the creation; owned per process like the thread (a parent's thread may have held it
// at the moment of fork).
struct creation_lock {
  std::mutex mutex;
  pid_t owner = self_pid();
};

std::atomic<io_thread*> the_io_thread{nullptr};
std::atomic<creation_lock*> the_creation_lock{nullptr};

std::mutex& creation_mutex() {
  creation_lock* l = the_creation_lock.load(std::memory_order_acquire);
  if (l && l->owner == self_pid()) return l->mutex;
  auto* fresh = new creation_lock;
  if (the_creation_lock.compare_exchange_strong(l, fresh, std::memory_order_acq_rel)) {
    keep_forever(l);
    return fresh->mutex;
  }
  delete fresh;
  return l->mutex;  // another thread of this process won
}

asio::io_context& own_io_context() {
  io_thread* t = the_io_thread.load(std::memory_order_acquire);
  if (t && t->owner == self_pid()) return t->context;
  std::lock_guard lock(creation_mutex());
  t = the_io_thread.load(std::memory_order_relaxed);
  if (!t || t->owner != self_pid()) {
    keep_forever(t);  // a parent's, whose thread does not exist here
    t = new io_thread;
    the_io_thread.store(t, std::memory_order_release);
  }
  return t->context;
}
}  // namespace

asio::any_io_executor reactor_for(asio::any_io_executor io) {
  if (io && asio::has_service<asio::detail::scheduler>(asio::query(io, asio::execution::context)))
    return io;
  return own_io_context().get_executor();
}

}  // namespace coproc::detail
