// coproc::wait and coproc::async_wait: readiness of several sentinels and descriptors.
#include <coproc/wait.hpp>

#include <coproc/connection.hpp>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <stdexcept>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "async/io_thread.hpp"
#include "async/operation.hpp"
#include "core/fd.hpp"
#include "core/syscalls.hpp"

namespace coproc {

namespace detail {
namespace {

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
          if (!v) throw std::logic_error("wait: null connection");
          return v->fileno();  // nothing is read ahead: the descriptor's readiness is the end's
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

// One asynchronous wait. Each object's descriptor is duplicated (the caller may close it or
// wait on it elsewhere meanwhile) and watched by the reactor; the first readiness, the
// deadline or a cancellation completes the operation; the ready set is then read with one
// poll over the duplicates, so it holds everything ready at that moment, in input order.
class wait_op final : public operation<std::vector<waitable>> {
 public:
  wait_op(std::vector<waitable> objects, asio::any_io_executor io, handler_type handler)
      : operation(std::move(io), std::move(handler)), objects_(std::move(objects)) {}

  ~wait_op() override {
    // Take the duplicates back from the reactor without closing them; `dups_` closes them
    // through the record of coproc's descriptors.
    for (auto& d : descriptors_)
      if (d.is_open()) (void)d.release();
  }

  void start(std::optional<std::chrono::nanoseconds> timeout) {
    auto l = lock();
    try {
      bool immediate = timeout && timeout->count() <= 0;
      dups_.reserve(objects_.size());
      for (auto& obj : objects_) {
        private_fd dup = private_fd::create([&] { return ::fcntl(fd_of(obj), F_DUPFD_CLOEXEC, 0); });
        if (!dup) {
          if (errno != EBADF) throw_errno("duplicate a descriptor to wait on");
          immediate = true;  // not open: poll(2) calls that ready, so does wait()
        }
        dups_.push_back(std::move(dup));
      }
      if (!immediate) {
        descriptors_.reserve(dups_.size());
        for (auto& fd : dups_) {
          descriptors_.emplace_back(io_);
          error_code ec;
          descriptors_.back().assign(fd.get(), ec);
          if (ec == boost::system::errc::operation_not_permitted) {
            // A regular file, which epoll refuses: always ready for poll(2).
            descriptors_.pop_back();
            immediate = true;
            break;
          }
          if (ec) throw boost::system::system_error(ec, "register a descriptor to wait on");
        }
      }
      if (immediate) return complete_later(l, {}, ready_set());
      accept_cancellation();
      auto self = std::static_pointer_cast<wait_op>(shared_from_this());
      for (auto& d : descriptors_)
        d.async_wait(asio::posix::stream_descriptor::wait_read,
                     [self](error_code ec) { self->on_ready(ec); });
      if (timeout) arm_deadline(*timeout);
    } catch (const std::system_error&) {
      complete_later(l, current_os_error(), {});
    } catch (const boost::system::system_error&) {
      complete_later(l, current_os_error(), {});
    } catch (const std::bad_alloc&) {
      complete_later(l, current_os_error(), {});
    }
  }

 private:
  // Everything ready now, in input order; an object whose descriptor was not open counts as
  // ready, as poll(2)'s POLLNVAL does for the synchronous wait().
  std::vector<waitable> ready_set() const {
    std::vector<pollfd> p;
    p.reserve(dups_.size());
    for (auto& fd : dups_) p.push_back({fd.get(), POLLIN, 0});
    if (retry_eintr([&] { return ::poll(p.data(), p.size(), 0); }) == -1) throw_errno("poll");
    std::vector<waitable> ready;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (!dups_[i] || p[i].revents) ready.push_back(objects_[i]);
    return ready;
  }

  void on_ready(error_code ec) {
    auto l = lock();
    if (done() || ec == asio::error::operation_aborted) return;
    if (ec) return complete(l, ec, {});
    try {
      complete(l, {}, ready_set());
    } catch (const std::system_error&) {
      complete(l, current_os_error(), {});
    }
  }

  void on_cancel(lock_type& l, asio::cancellation_type) override { complete_later(l, asio::error::operation_aborted, {}); }
  void on_deadline(lock_type& l) override { complete(l, {}, {}); }

  void release(lock_type&) noexcept override {
    // Nothing pending may keep this operation (and the executor) busy.
    error_code ignored;
    for (auto& d : descriptors_) d.cancel(ignored);
  }

  std::vector<waitable> objects_;
  std::vector<private_fd> dups_;  // invalid where the object's descriptor was not open
  std::vector<asio::posix::stream_descriptor> descriptors_;
};

}  // namespace

std::vector<waitable> prepare_wait(std::vector<waitable> objects) {
  for (auto& obj : objects) (void)fd_of(obj);  // misuse surfaces here, at initiation
  return objects;
}

void start_async_wait(std::vector<waitable> objects, asio::any_io_executor io,
                      std::optional<std::chrono::nanoseconds> timeout, wait_handler handler) {
  const reactor where = reactor_for(io);
  auto op = std::make_shared<wait_op>(std::move(objects), where.executor, std::move(handler));
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
