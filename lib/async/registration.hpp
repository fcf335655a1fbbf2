// coproc internals: registrations of long-lived descriptors (connection ends) with a reactor.
#pragma once

#include "core/private.hpp"

#include <memory>
#include <mutex>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/execution_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/fd.hpp"

namespace coproc::detail {

// One registration of a descriptor with one reactor, kept between operations, so that a
// message costs no epoll_ctl. A sequence of operations on a connection end (a receive loop,
// a send and a receive at once) shares it. It belongs to the registration service of the
// reactor's context, which lets it go when the context shuts down (before its reactor goes);
// the connection end lets it go when it closes, deregistering before its descriptor closes
// (a copy of the descriptor in a child would otherwise keep a stale epoll entry). Operations
// hold it while they wait.
class registration {
 public:
  using wait_type = boost::asio::posix::stream_descriptor::wait_type;

  // Throws std::system_error or boost::system::system_error (no reactor, no descriptor).
  registration(int fd, const boost::asio::any_io_executor& reactor);
  ~registration();
  registration(const registration&) = delete;
  registration& operator=(const registration&) = delete;

  // Waits for readiness; `handler(error_code)` runs on the reactor. `slot` (optional) cancels
  // this wait alone. A released registration completes the wait with bad_descriptor.
  template <class Handler>
  void async_wait(wait_type w, boost::asio::cancellation_slot slot, Handler&& handler) {
    std::lock_guard lock(mutex_);
    if (closing_) {
      // The end closed between the operation's check and this wait: a wait queued now would
      // never be cancelled. It completes as the cancelled ones did.
      boost::asio::post(descriptor_.get_executor(),
                        [h = std::forward<Handler>(handler)]() mutable {
                          std::move(h)(boost::asio::error::operation_aborted);
                        });
      return;
    }
    if (slot.is_connected())
      descriptor_.async_wait(w, boost::asio::bind_cancellation_slot(
                                    slot, std::forward<Handler>(handler)));
    else
      descriptor_.async_wait(w, std::forward<Handler>(handler));
  }

  // Cancels every wait on the descriptor here (they complete with operation_aborted; an
  // operation that was not itself cancelled waits again).
  void cancel_waits() noexcept;
  // The connection end closed: cancels every wait, and every later one completes at once
  // with operation_aborted (under the same lock, so none slips in between).
  void cancel_for_good() noexcept;
  // Cancels every wait and deregisters. Idempotent.
  void release() noexcept;

 private:
  std::mutex mutex_;  // the descriptor object is not safe to use from two threads at once
  bool closing_ = false;
  boost::asio::posix::stream_descriptor descriptor_;
  private_fd duplicate_;  // only if this reactor already watched the descriptor itself
};

// Registrations of one execution context: made here, let go at its shutdown.
class registration_service final : public boost::asio::execution_context::service {
 public:
  static boost::asio::execution_context::id id;
  explicit registration_service(boost::asio::execution_context& context);

  // Keeps `r` (made with a reactor of this service's context) until forget() or shutdown.
  void adopt(const std::shared_ptr<registration>& r);
  // The connection end closed: deregisters `r` and lets it go.
  void forget(const std::shared_ptr<registration>& r) noexcept;

 private:
  void shutdown() override;

  std::mutex mutex_;
  std::vector<std::shared_ptr<registration>> all_;
  bool shut_down_ = false;
};

}  // namespace coproc::detail
