// coproc::listener: Python's Listener (SocketListener on POSIX), rule by rule, and
// async_accept.
#include <coproc/listener.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <system_error>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "async/io_thread.hpp"
#include "async/operation.hpp"
#include "connection/auth.hpp"
#include "connection/handshake.hpp"
#include "connection/socket_address.hpp"
#include "core/fd.hpp"
#include "core/fork_guard.hpp"
#include "core/syscalls.hpp"

namespace coproc {
struct listener_access {
  static const std::shared_ptr<detail::listener_state>& state(const listener& l) noexcept {
    return l.state_;
  }
};
}  // namespace coproc

namespace coproc::detail {

class accept_op;

// The listening socket, shared by the listener object and its pending async_accepts (which
// keep the descriptor open until they complete).
//
// A listener handed to a child (coproc_handed_descriptors) exists there as a copy: only the
// process that made it unlinks its path, wakes its accept() calls (eventfd) and aborts its
// async_accepts at close().
class listener_state {
 public:
  listener_state(address where, int backlog, std::optional<bytes> key);
  ~listener_state();
  listener_state(const listener_state&) = delete;
  listener_state& operator=(const listener_state&) = delete;

  int fd() const noexcept { return fd_.get(); }
  const address& where() const noexcept { return where_; }
  const std::optional<bytes>& key() const noexcept { return key_; }
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  std::chrono::nanoseconds timeout() const noexcept {
    return std::chrono::nanoseconds(timeout_.load(std::memory_order_relaxed));
  }
  void set_timeout(std::chrono::nanoseconds t) noexcept {
    timeout_.store(t.count(), std::memory_order_relaxed);
  }

  // Blocks until a client may be waiting, or close() (in the process that made the listener).
  void wait_for_client();
  void track(const std::shared_ptr<accept_op>& op);
  void close() noexcept;

 private:
  bool ours() const noexcept { return self_pid() == creator_; }

  address where_;
  std::optional<bytes> key_;
  private_fd fd_;    // the listening socket, non-blocking (accept4 never blocks under the
                     // fork guard; accept() waits with poll)
  private_fd wake_;  // an eventfd close() makes readable
  pid_t creator_;
  bool unlink_ = false;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::atomic<bool> closed_{false};
  std::atomic<std::int64_t> timeout_{
      std::chrono::nanoseconds(default_handshake_timeout).count()};

  struct tracked {
    pid_t pid;
    std::weak_ptr<accept_op> op;
  };
  std::mutex ops_mutex_;
  std::vector<tracked> ops_;
};

// ---------------------------------------------------------------------------------------

// async_accept: waits for a client on a duplicate of the listening socket (several accepts
// may wait on one reactor; epoll takes a descriptor once), accepts it without blocking, then
// connecting_op runs the handshake.
class accept_op final : public connecting_op {
 public:
  accept_op(std::shared_ptr<listener_state> state, asio::any_io_executor io,
            handler_type handler)
      : connecting_op(io, std::move(handler), state->key(), auth::handshake::role::listener,
                      state->timeout()),
        listener_(std::move(state)),
        listening_(io) {}
  ~accept_op() override {
    if (listening_.is_open()) (void)listening_.release();
  }

  void start() {
    auto l = lock();
    accept_cancellation();
    try_accept(l, true);
  }

  // close() of the listener: nothing more is delivered.
  void listener_closed() {
    auto l = lock();
    if (!done()) complete_later(l, asio::error::operation_aborted, connection());
  }

 private:
  void try_accept(lock_type& l, bool initiating) {
    try {
      for (;;) {
        if (listener_->closed()) return fail(l, asio::error::operation_aborted, initiating);
        private_fd fd = private_fd::create(
            [&] { return ::accept4(listener_->fd(), nullptr, nullptr, SOCK_CLOEXEC); });
        if (fd) {
          accepted_ = true;
          if (listening_.is_open()) (void)listening_.release();
          dup_.reset();
          adopt(std::move(fd));
          return connected(l, initiating);
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return wait_for_client();
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return fail(l, error_code(errno, boost::system::generic_category()), initiating);
      }
    } catch (...) {
      fail(l, os_error(), initiating);
    }
  }

  void wait_for_client() {
    if (!dup_) {
      dup_ = private_fd::create([&] { return ::fcntl(listener_->fd(), F_DUPFD_CLOEXEC, 0); });
      if (!dup_) throw_errno("duplicate the listening socket");
      listening_.assign(dup_.get());
    }
    listening_waiting_ = true;
    listening_.async_wait(asio::posix::stream_descriptor::wait_read,
                          [self = shared_from_this(), this](error_code ec) {
                            auto l = lock();
                            listening_waiting_ = false;
                            if (done()) return;
                            if (ec) return complete(l, ec, connection());
                            try_accept(l, false);
                          });
  }

  void on_cancel(lock_type& l, asio::cancellation_type type) override {
    // A client accepted and in its handshake is dropped by a cancellation: a side effect,
    // which total cancellation does not allow.
    constexpr auto allowed = asio::cancellation_type::terminal | asio::cancellation_type::partial;
    if (accepted_ && (type & allowed) == asio::cancellation_type::none) return;
    complete_later(l, asio::error::operation_aborted, connection());
  }

  void release(lock_type& l) noexcept override {
    if (listening_waiting_ && listening_.is_open()) {
      error_code ignored;
      listening_.cancel(ignored);
    }
    connecting_op::release(l);
  }

  std::shared_ptr<listener_state> listener_;
  private_fd dup_;
  asio::posix::stream_descriptor listening_;  // on dup_
  bool listening_waiting_ = false;
  bool accepted_ = false;
};

// ---------------------------------------------------------------------------------------

listener_state::listener_state(address where, int backlog, std::optional<bytes> key)
    : where_(std::move(where)), key_(std::move(key)), creator_(self_pid()) {
  const auto candidates = resolve(where_, true);
  // The first address only (IPv4 first): a listener on an address in use must fail, not
  // move to the next one.
  const socket_address& a = candidates.front();
  fd_ = private_fd::create(
      [&] { return ::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0); });
  if (!fd_) throw_errno("socket");
  // Python sets SO_REUSEADDR on POSIX: a restarted server binds its port at once (no
  // TIME_WAIT wait), while a second listener on a port in use still fails.
  const int one = 1;
  if (::setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == -1)
    throw_errno("setsockopt(SO_REUSEADDR)");
  if (::bind(fd_.get(), a.get(), a.length) == -1)
    throw_errno(errno, ("bind " + where_.to_string()).c_str());
  const bool path = where_.family() == address::family_type::unix_socket && !where_.is_abstract();
  if (path) {
    // The socket file is ours from here on: remember which it is, so close() removes it only
    // while the path still names it.
    struct stat st {};
    if (::stat(where_.path().c_str(), &st) == 0) {
      unlink_ = true;
      dev_ = st.st_dev;
      ino_ = st.st_ino;
    }
  }
  if (::listen(fd_.get(), backlog) == -1) {
    const int err = errno;
    close();
    throw_errno(err, "listen");
  }
  if (where_.family() == address::family_type::tcp) {
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    if (::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&bound), &len) == -1)
      throw_errno("getsockname");
    where_ = tcp_address_of(bound);
  }
  wake_ = private_fd::create([] { return ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); });
  if (!wake_) {
    const int err = errno;
    close();
    throw_errno(err, "eventfd");
  }
}

listener_state::~listener_state() {
  // In a child that was handed the listener, the eventfd was not kept (coproc closed it when
  // the child started): its number is not ours to close.
  if (!ours()) (void)std::move(wake_).make_plain().release();
}

void listener_state::wait_for_client() {
  pollfd p[2] = {{fd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
  const nfds_t n = ours() ? 2 : 1;
  while (::poll(p, n, -1) == -1)
    if (errno != EINTR) throw_errno("poll");
}

void listener_state::track(const std::shared_ptr<accept_op>& op) {
  shared_fork_lock no_fork;  // a child never inherits the mutex held
  std::lock_guard lock(ops_mutex_);
  std::erase_if(ops_, [](const tracked& t) { return t.op.expired(); });
  ops_.push_back({self_pid(), op});
}

void listener_state::close() noexcept {
  if (closed_.exchange(true, std::memory_order_acq_rel)) return;
  if (!ours()) return;  // a handed copy: the socket closes with the state, nothing else
  if (unlink_) {
    struct stat st {};
    if (::stat(where_.path().c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_)
      ::unlink(where_.path().c_str());
  }
  if (wake_) {
    const std::uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
  }
  std::vector<std::shared_ptr<accept_op>> pending;
  {
    shared_fork_lock no_fork;
    std::lock_guard lock(ops_mutex_);
    const pid_t self = self_pid();
    for (auto& t : ops_)
      if (t.pid == self)
        if (auto op = t.op.lock()) pending.push_back(std::move(op));
    ops_.clear();
  }
  for (auto& op : pending) op->listener_closed();
}

// ---------------------------------------------------------------------------------------

std::shared_ptr<listener_state> prepare_accept(const listener& l) {
  if (l.closed()) throw std::logic_error("listener is closed");
  return listener_access::state(l);
}

void start_async_accept(std::shared_ptr<listener_state> state, boost::asio::any_io_executor io,
                        connect_handler handler) {
  const reactor where = reactor_for(io);
  auto op = std::make_shared<accept_op>(state, where.executor, std::move(handler));
  state->track(op);
  op->start();
}

}  // namespace coproc::detail

namespace coproc {

listener::listener(coproc::address where, int backlog, std::optional<bytes> authkey) {
  if (backlog < 0) throw std::invalid_argument("backlog must not be negative");
  state_ = std::make_shared<detail::listener_state>(std::move(where), backlog, std::move(authkey));
}

listener::listener(listener&&) noexcept = default;

listener& listener::operator=(listener&& o) noexcept {
  if (this != &o) {
    close();
    state_ = std::move(o.state_);
  }
  return *this;
}

listener::~listener() { close(); }

detail::listener_state& listener::open_state() const {
  if (!state_ || state_->closed()) throw std::logic_error("listener is closed");
  return *state_;
}

connection listener::accept() {
  auto state = state_;  // the descriptor stays open while this call uses it
  if (!state || state->closed()) throw std::logic_error("listener is closed");
  for (;;) {
    if (state->closed()) throw std::logic_error("listener is closed");
    detail::private_fd fd = detail::private_fd::create(
        [&] { return ::accept4(state->fd(), nullptr, nullptr, SOCK_CLOEXEC); });
    if (!fd) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        state->wait_for_client();
        continue;
      }
      if (errno == EINTR || errno == ECONNABORTED) continue;
      detail::throw_errno("accept");
    }
    if (const auto& key = state->key()) {
      detail::auth::handshake hs(detail::auth::handshake::role::listener, *key);
      detail::run_handshake(fd.get(), hs, detail::deadline_after(state->timeout()));
    }
    return detail::make_connection(std::move(fd));
  }
}

const coproc::address& listener::address() const {
  if (!state_) throw std::logic_error("listener is closed");
  return state_->where();
}

int listener::fileno() const { return open_state().fd(); }

bool listener::closed() const noexcept { return !state_ || state_->closed(); }

void listener::close() {
  if (state_) state_->close();
}

void listener::set_handshake_timeout(std::chrono::nanoseconds timeout) {
  if (timeout <= std::chrono::nanoseconds::zero())
    throw std::invalid_argument("the handshake timeout must be positive");
  if (!state_) throw std::logic_error("listener is closed");
  state_->set_timeout(timeout);
}

std::chrono::nanoseconds listener::handshake_timeout() const {
  if (!state_) throw std::logic_error("listener is closed");
  return state_->timeout();
}

}  // namespace coproc
