#include "async/registration.hpp"

#include <fcntl.h>

#include <algorithm>

#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>

#include "core/syscalls.hpp"

namespace coproc::detail {

namespace asio = boost::asio;
using boost::system::error_code;

registration::registration(int fd, const asio::any_io_executor& reactor) : descriptor_(reactor) {
  error_code ec;
  descriptor_.assign(fd, ec);
  if (!ec) return;
  // The reactor already watches this descriptor (a user's own stream_descriptor on fileno()):
  // epoll refuses it twice, so a duplicate of our own is registered instead.
  duplicate_ = private_fd::create([&] { return ::fcntl(fd, F_DUPFD_CLOEXEC, 0); });
  if (!duplicate_) throw_errno("duplicate a connection's descriptor");
  descriptor_.assign(duplicate_.get());
}

registration::~registration() { release(); }

void registration::cancel_waits() noexcept {
  std::lock_guard lock(mutex_);
  error_code ignored;
  descriptor_.cancel(ignored);
}

void registration::cancel_for_good() noexcept {
  std::lock_guard lock(mutex_);
  closing_ = true;
  error_code ignored;
  descriptor_.cancel(ignored);
}

void registration::release() noexcept {
  std::lock_guard lock(mutex_);
  // Released, not closed: the descriptor belongs to the connection end (or to duplicate_).
  if (descriptor_.is_open()) (void)descriptor_.release();
}

asio::execution_context::id registration_service::id;

registration_service::registration_service(asio::execution_context& context)
    : asio::execution_context::service(context) {}

void registration_service::adopt(const std::shared_ptr<registration>& r) {
  std::lock_guard lock(mutex_);
  if (!shut_down_) all_.push_back(r);
}

void registration_service::forget(const std::shared_ptr<registration>& r) noexcept {
  r->release();
  std::lock_guard lock(mutex_);
  auto it = std::find(all_.begin(), all_.end(), r);
  if (it != all_.end()) {
    std::swap(*it, all_.back());
    all_.pop_back();
  }
}

void registration_service::shutdown() {
  std::vector<std::shared_ptr<registration>> all;
  {
    std::lock_guard lock(mutex_);
    shut_down_ = true;
    all.swap(all_);
  }
  for (auto& r : all) r->release();
}

}  // namespace coproc::detail
