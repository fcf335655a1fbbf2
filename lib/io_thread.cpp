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
namespace {
struct io_thread {
  asio::io_context context{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{context.get_executor()};
  std::thread thread;

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

std::atomic<io_thread*> the_io_thread{nullptr};
std::mutex initial_mutex;
std::atomic<std::mutex*> io_thread_mutex{&initial_mutex};

asio::io_context& own_io_context() {
  if (io_thread* t = the_io_thread.load(std::memory_order_acquire)) return t->context;
  std::lock_guard lock(*io_thread_mutex.load(std::memory_order_relaxed));
  io_thread* t = the_io_thread.load(std::memory_order_relaxed);
  if (!t) {
    t = new io_thread;
    the_io_thread.store(t, std::memory_order_release);
  }
  return t->context;
}
}  // namespace

void reset_io_thread_in_child() noexcept {
  // The thread does not exist in a forked child; its io_context (and the mutex, which that
  // thread or another may have held at the fork) are left behind untouched.
  keep_forever(the_io_thread.exchange(nullptr, std::memory_order_relaxed));
  keep_forever(io_thread_mutex.load(std::memory_order_relaxed));
  io_thread_mutex.store(new (std::nothrow) std::mutex, std::memory_order_relaxed);
}

asio::any_io_executor reactor_for(asio::any_io_executor io) {
  if (io && asio::has_service<asio::detail::scheduler>(asio::query(io, asio::execution::context)))
    return io;
  return own_io_context().get_executor();
}

}  // namespace coproc::detail
