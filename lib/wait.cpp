// coproc::wait and coproc::async_wait: readiness of several sentinels and descriptors.
#include <coproc/wait.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <mutex>
#include <stdexcept>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_executor.hpp>

#include "io_thread.hpp"
#include "op_support.hpp"
#include "posix.hpp"

namespace coproc {

namespace detail {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

int fd_of(const waitable& w) {
  return std::visit(
      [](auto v) -> int {
        using T = decltype(v);
        if constexpr (std::is_same_v<T, int>) {
          return v;
        } else if constexpr (std::is_same_v<T, process*>) {
          if (!v) throw std::logic_error("wait: null process");
          return v->sentinel();
        } else {
          throw std::logic_error("wait: coproc::connection is not available in this version");
        }
      },
      w);
}

// Ready means what Python's selectors make of poll(2): anything but "nothing happened",
// including POLLNVAL for a descriptor that is not open.
std::vector<waitable> ready_now(const std::vector<waitable>& objects, const std::vector<int>& fds,
                                std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::vector<pollfd> p;
  p.reserve(fds.size());
  for (int fd : fds) p.push_back({fd, POLLIN, 0});
  for (;;) {
    int ms = -1;
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(
          *deadline - std::chrono::steady_clock::now());
      ms = left.count() > 0 ? static_cast<int>(std::min<long long>(left.count(), 1 << 30)) : 0;
    }
    const int r = ::poll(p.data(), p.size(), ms);
    if (r > 0) break;
    if (r == 0) {
      if (!deadline || std::chrono::steady_clock::now() >= *deadline) return {};
      continue;  // poll rounds to milliseconds: wait out the rest
    }
    if (errno != EINTR) throw_errno("poll");
  }
  std::vector<waitable> ready;
  for (std::size_t i = 0; i < p.size(); ++i)
    if (p[i].revents) ready.push_back(objects[i]);
  return ready;
}

// One asynchronous wait. Each object's descriptor is duplicated (so the object may be closed
// or waited on elsewhere meanwhile) and watched by the reactor; the first readiness, the
// deadline or a cancellation completes the operation; the ready set is then read with one
// poll over the duplicates, so it holds everything ready at that moment, in input order.
class wait_op final : public std::enable_shared_from_this<wait_op> {
 public:
  wait_op(std::vector<waitable> objects, asio::any_io_executor io, wait_handler handler)
      : objects_(std::move(objects)),
        io_(std::move(io)),
        handler_(std::move(handler)),
        handler_ex_(asio::get_associated_executor(handler_, asio::system_executor())) {}

  ~wait_op() {
    // The duplicates are recorded for forked children to close: take them back from the
    // reactor first, then close them through the record.
    for (auto& d : descriptors_)
      if (d.is_open()) (void)d.release();
    for (int fd : dups_) close_recorded(fd);
  }

  void start(std::optional<std::chrono::nanoseconds> timeout) {
    auto self = shared_from_this();
    bool immediate = timeout && timeout->count() <= 0;
    for (auto& obj : objects_) {
      owned_fd dup = owned_fd::create([&] { return ::fcntl(fd_of(obj), F_DUPFD_CLOEXEC, 0); });
      if (!dup) {
        if (errno != EBADF) throw_errno("dup for wait");
        immediate = true;  // not open: poll(2) calls that ready, so does wait()
        dups_.push_back(-1);
        continue;
      }
      dups_.push_back(dup.release());
    }
    if (!immediate) {
      for (int fd : dups_) {
        descriptors_.emplace_back(io_);
        error_code ec;
        descriptors_.back().assign(fd, ec);
        if (ec) {  // e.g. a regular file, which epoll refuses: always ready for poll(2)
          descriptors_.pop_back();
          immediate = true;
          break;
        }
      }
    }
    if (immediate) {
      asio::post(io_, asio::bind_executor(handler_ex_, [self] { self->finish_with_ready(); }));
      return;
    }
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.template emplace<cancel_any_type<wait_op>>(weak_from_this());

    std::lock_guard lock(mutex_);
    for (auto& d : descriptors_)
      d.async_wait(asio::posix::stream_descriptor::wait_read,
                   asio::bind_executor(handler_ex_, [self](error_code e) { self->on_ready(e); }));
    if (timeout) {
      deadline_ = std::make_unique<asio::steady_timer>(io_);
      deadline_->expires_after(std::chrono::duration_cast<asio::steady_timer::duration>(*timeout));
      deadline_->async_wait(
          asio::bind_executor(handler_ex_, [self](error_code e) { self->on_deadline(e); }));
    }
  }

  void cancel() noexcept {
    std::lock_guard lock(mutex_);
    cancel_all();
  }

 private:
  // Everything ready now, in input order; an object whose descriptor was not open counts as
  // ready, as poll(2)'s POLLNVAL does for the synchronous wait().
  std::vector<waitable> ready_set() const {
    std::vector<pollfd> p;
    for (int fd : dups_) p.push_back({fd, POLLIN, 0});
    if (retry_eintr([&] { return ::poll(p.data(), p.size(), 0); }) == -1) throw_errno("poll");
    std::vector<waitable> ready;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (dups_[i] < 0 || p[i].revents) ready.push_back(objects_[i]);
    return ready;
  }

  void cancel_all() noexcept {
    error_code ignored;
    for (auto& d : descriptors_) d.cancel(ignored);
    if (deadline_) deadline_->cancel();
  }

  void on_ready(error_code ec) {
    std::unique_lock lock(mutex_);
    if (done_) return;
    if (ec == asio::error::operation_aborted) return finish(lock, ec, {});
    finish_with_ready(lock);
  }

  void on_deadline(error_code ec) {
    std::unique_lock lock(mutex_);
    if (done_ || ec) return;
    cancel_all();
    finish(lock, {}, {});
  }

  void finish_with_ready() {
    std::unique_lock lock(mutex_);
    if (!done_) finish_with_ready(lock);
  }

  void finish_with_ready(std::unique_lock<std::mutex>& lock) {
    std::vector<waitable> ready;
    try {
      ready = ready_set();
    } catch (const std::system_error& e) {
      return finish(lock, to_error_code(e), {});
    }
    finish(lock, {}, std::move(ready));
  }

  void finish(std::unique_lock<std::mutex>& lock, error_code ec, std::vector<waitable> ready) {
    done_ = true;
    cancel_all();  // nothing pending may keep this operation (and the executor) busy
    wait_handler handler = std::move(handler_);
    lock.unlock();
    std::move(handler)(ec, std::move(ready));
  }

  std::vector<waitable> objects_;
  asio::any_io_executor io_;
  std::vector<int> dups_;  // -1 where the object's descriptor was not open
  std::vector<asio::posix::stream_descriptor> descriptors_;
  std::unique_ptr<asio::steady_timer> deadline_;
  wait_handler handler_;
  asio::any_completion_executor handler_ex_;
  std::mutex mutex_;
  bool done_ = false;
};

}  // namespace

std::vector<waitable> prepare_wait(std::vector<waitable> objects) {
  for (auto& obj : objects) (void)fd_of(obj);  // misuse surfaces here, at initiation
  return objects;
}

void start_async_wait(std::vector<waitable> objects, asio::any_io_executor io,
                      std::optional<std::chrono::nanoseconds> timeout, wait_handler handler) {
  auto op = std::make_shared<wait_op>(std::move(objects), reactor_for(std::move(io)),
                                      std::move(handler));
  op->start(timeout);
}

}  // namespace detail

std::vector<waitable> wait(std::vector<waitable> objects,
                           std::optional<std::chrono::nanoseconds> timeout) {
  std::vector<int> fds;
  fds.reserve(objects.size());
  for (auto& obj : objects) fds.push_back(detail::fd_of(obj));
  std::optional<std::chrono::steady_clock::time_point> deadline;
  if (timeout) {
    const auto now = std::chrono::steady_clock::now();
    const auto room = std::chrono::steady_clock::time_point::max() - now;
    deadline = *timeout > room ? std::chrono::steady_clock::time_point::max()
                               : now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                           std::max(*timeout, std::chrono::nanoseconds{0}));
  }
  return detail::ready_now(objects, fds, deadline);
}

}  // namespace coproc
