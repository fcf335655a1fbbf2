// apply_async: the parent's side of a call (waiting for its one outcome message) and the
// child's (sending it).
#include <coproc/apply_async.hpp>

#include <cxxabi.h>

#include <condition_variable>
#include <mutex>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>

#include <coproc/wait.hpp>

#include "async/io_thread.hpp"
#include "remote_exception.hpp"

namespace coproc {

remote_error::remote_error(std::string type_name, std::string message)
    : process_error(type_name + ": " + message),
      type_name_(std::move(type_name)),
      message_(std::move(message)) {}

namespace detail {

namespace asio = boost::asio;
using boost::system::error_code;

// ---------------------------------------------------------------------------------------
// The child's side: one message, 'v' + the result's JSON or 'e' + {"type":..,"message":..}.

void send_result(connection& out, std::span<const std::byte> json) {
  bytes message(json.size() + 1);
  message[0] = std::byte{'v'};
  std::copy(json.begin(), json.end(), message.begin() + 1);
  out.send_bytes(message);
}

void send_current_exception(connection& out) {
  bytes text = current_exception_text();
  text.insert(text.begin(), std::byte{'e'});
  out.send_bytes(text);
}

void apply_in_child(connection out, std::string key, std::string arguments) {
  const registered_target* t = find_target(std::string_view(key));
  try {
    if (!t || !t->invoke_result) throw std::logic_error("no function is registered as '" + key + "'");
    const bytes json = t->invoke_result(t->address, as_bytes(arguments));
    send_result(out, json);
  } catch (...) {
    if (exception_ends_child()) throw;
    send_current_exception(out);
  }
}
COPROC_TARGET(apply_in_child);

void prepare_apply_key(const void* address, std::string& key) {
  const registered_target* t = find_target(address);
  if (!t)
    throw std::logic_error(
        "apply_async: the function is not registered: add COPROC_TARGET(name) at namespace "
        "scope, in the function's namespace (spawn and forkserver find it by name)");
  if (!t->invoke_result)
    throw std::logic_error("apply_async: the function's result cannot be sent as a typed message");
  key = target_key(*t);
}

bool exception_ends_child() noexcept {
  // coproc::exit unwinds with system_exit; pthread_exit and cancellation with a forced unwind,
  // which has no type: both must reach the bootstrap.
  const std::type_info* t = abi::__cxa_current_exception_type();
  return !t || *t == typeid(system_exit);
}

// ---------------------------------------------------------------------------------------
// The parent's side.

struct apply_state::impl : std::enable_shared_from_this<impl> {
  impl(process c, connection o) : child(std::move(c)), outcome(std::move(o)) {}

  enum class kind { pending, value, remote, died };

  process child;
  connection outcome;
  std::mutex mutex;
  std::condition_variable changed;
  bool reading = false;  // one thread reads the outcome end at a time
  kind known = kind::pending;
  bytes value;              // the result's JSON text
  std::string type, message;  // the remote exception
  int exitcode = 0;           // the child's, when it ended without a result

  // Reads the outcome (it is there, or the end of the stream); the lock is not held. Returns
  // true when the child ended without one (its exit code is then still to be had).
  bool read_outcome() {
    bytes m;
    try {
      m = outcome.recv_bytes();
    } catch (const eof_error&) {
      return true;
    } catch (const std::system_error&) {
      return true;  // a truncated message: the child died while sending
    }
    std::lock_guard l(mutex);
    if (!m.empty() && m[0] == std::byte{'v'}) {
      value.assign(m.begin() + 1, m.end());
      known = kind::value;
    } else {
      known = kind::remote;
      read_exception_text(std::span<const std::byte>(m).subspan(m.empty() ? 0 : 1), type, message,
                          "malformed outcome from the child");
    }
    return false;
  }

  void died(int code) {
    std::lock_guard l(mutex);
    exitcode = code;
    known = kind::died;
  }

  error_code code() const {
    switch (known) {
      case kind::value:
        return {};
      case kind::remote:
        return make_error_code(errc::remote_error);
      case kind::died:
        return make_error_code(errc::child_died);
      case kind::pending:
        break;
    }
    return boost::asio::error::timed_out;
  }
};

apply_state::apply_state(process child, connection outcome)
    : impl_(std::make_shared<impl>(std::move(child), std::move(outcome))) {}

apply_state::~apply_state() = default;

bool apply_state::wait(std::optional<std::chrono::steady_clock::time_point> deadline) {
  auto& s = *impl_;
  std::unique_lock l(s.mutex);
  while (s.known == impl::kind::pending) {
    if (s.reading) {
      if (!deadline)
        s.changed.wait(l);
      else if (s.changed.wait_until(l, *deadline) == std::cv_status::timeout)
        return s.known != impl::kind::pending;
      continue;
    }
    s.reading = true;
    l.unlock();
    bool ready = true, ended = false;
    try {
      if (deadline) {
        const auto left = *deadline - std::chrono::steady_clock::now();
        ready = s.outcome.poll(std::max(left, std::chrono::steady_clock::duration::zero()));
      }
      if (ready) ended = s.read_outcome();
      if (ended) s.died(s.child.join());
    } catch (...) {
      l.lock();
      s.reading = false;
      s.changed.notify_all();
      throw;
    }
    l.lock();
    s.reading = false;
    s.changed.notify_all();
    if (!ready) return false;
  }
  return true;
}

bool apply_state::ready() { return wait(std::chrono::steady_clock::now()); }

std::optional<exit_status> apply_state::status() const {
  auto& s = *impl_;
  {
    std::lock_guard l(s.mutex);
    if (s.known == impl::kind::pending) return std::nullopt;
  }
  // The outcome can be known while the child is still ending: its status is then not yet to be
  // had without waiting, and waiting for it is what the caller asked for.
  s.child.join();
  return s.child.status();
}

std::span<const std::byte> apply_state::value() const {
  auto& s = *impl_;
  std::lock_guard l(s.mutex);
  switch (s.known) {
    case impl::kind::value:
      return s.value;
    case impl::kind::remote:
      throw remote_error(s.type, s.message);
    case impl::kind::died:
      throw process_error("child process exited with exit code " + std::to_string(s.exitcode));
    case impl::kind::pending:
      break;
  }
  throw std::logic_error("result is not ready");
}

void apply_state::async_wait(asio::any_io_executor io,
                             std::optional<std::chrono::nanoseconds> timeout,
                             asio::any_completion_handler<void(error_code)> handler) {
  auto s = impl_->shared_from_this();
  auto ex = asio::get_associated_executor(handler, asio::system_executor());
  auto slot = asio::get_associated_cancellation_slot(handler);
  {
    std::lock_guard l(s->mutex);
    if (s->known != impl::kind::pending) {
      const error_code ec = s->code();
      // Never inside the initiating call: through the reactor, then the handler's executor.
      asio::post(reactor_for(io).executor,
                 asio::bind_executor(ex, [h = std::move(handler), ec]() mutable {
                   std::move(h)(ec);
                 }));
      return;
    }
  }
  // Readiness of the outcome end (the message, or its end of stream), then the outcome is read
  // at once: it is there. A child that ended without one is then joined asynchronously.
  auto on_ready = [s, h = std::move(handler)](error_code ec, std::vector<waitable> ready) mutable {
    if (ec) return std::move(h)(ec);
    if (ready.empty()) return std::move(h)(boost::asio::error::timed_out);
    bool ended = false;
    {
      std::unique_lock l(s->mutex);
      if (s->known == impl::kind::pending && !s->reading) {
        s->reading = true;
        l.unlock();
        ended = s->read_outcome();
        l.lock();
        s->reading = false;
        s->changed.notify_all();
      }
    }
    if (!ended) return std::move(h)(s->code());
    s->child.async_join([s, h = std::move(h)](error_code, int code) mutable {
      s->died(code);
      std::move(h)(s->code());
    });
  };
  std::vector<waitable> objects{&s->outcome};
  auto bound = asio::bind_cancellation_slot(slot, asio::bind_executor(ex, std::move(on_ready)));
  if (timeout)
    coproc::async_wait(std::move(objects), *timeout, std::move(bound));
  else
    coproc::async_wait(std::move(objects), std::move(bound));
}

}  // namespace detail
}  // namespace coproc
