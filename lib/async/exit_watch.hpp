// coproc internals: one registration of a process's sentinel with one reactor, shared by
// every asynchronous join of that process on that reactor.
#pragma once

#include "core/private.hpp"

#include <chrono>
#include <memory>
#include <mutex>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/system/error_code.hpp>

#include "async/io_thread.hpp"
#include "child/child_state.hpp"
#include "core/fd.hpp"

namespace coproc::detail {

// A thousand joins of one child on one io_context cost one registered descriptor and one
// reap, and the end of the child is one reactor event that completes them all. The watch
// lives while something waits: its pending wait (or back-off timer) holds it, and it holds
// its waiters; the child's state knows it only weakly. So destroying the io_context destroys
// the watch and its waiters, and the process stays usable.
class exit_watch final : public reactor_watch, public std::enable_shared_from_this<exit_watch> {
 public:
  class waiter {
   public:
    virtual ~waiter() = default;
    // On the reactor: the process has ended (or, with `ec`, watching it failed).
    virtual void child_ended(boost::system::error_code ec) = 0;
    // From any thread: the process object is gone.
    virtual void aborted() = 0;
  };

  // The watch of `state` on `where`, registered on first use. Throws std::system_error or
  // boost::system::system_error (no descriptor, no reactor).
  static std::shared_ptr<exit_watch> of(const std::shared_ptr<child_state>& state,
                                        const reactor& where);

  exit_watch(std::shared_ptr<child_state> state, const boost::asio::any_io_executor& reactor);
  ~exit_watch() override;

  // False if the process has ended already; the waiter then completes by itself.
  bool add(std::shared_ptr<waiter> w);
  // The waiter stops waiting (cancelled, timed out). The last one to leave stops the wait,
  // so a cancelled join leaves nothing pending on the io_context.
  void remove(const waiter* w) noexcept;
  void abort_all() noexcept override;

 private:
  using lock_type = std::unique_lock<std::mutex>;
  void wait_sentinel();
  void back_off();
  void on_event(boost::system::error_code ec, bool from_sentinel);
  void deliver(lock_type& l, boost::system::error_code ec);
  void stop_waiting() noexcept;

  const std::shared_ptr<child_state> state_;
  boost::asio::posix::stream_descriptor descriptor_;
  private_fd duplicate_;  // only when the reactor already watched the sentinel itself
  // The status can come a moment after the sentinel (the pipe's EOF precedes the zombie):
  // the watch then looks again, 50 us doubling to 10 ms.
  std::unique_ptr<boost::asio::steady_timer> backoff_;
  unsigned char backoff_steps_ = 0;

  // Guarded by the state's watch_mutex() (a pending join's size is what an async server pays
  // per awaited child; a lock of its own would be 40 bytes of it).
  bool pending_ = false;  // a wait on the sentinel or the back-off timer is outstanding
  boost::container::small_vector<std::shared_ptr<waiter>, 1> waiters_;
};

}  // namespace coproc::detail
