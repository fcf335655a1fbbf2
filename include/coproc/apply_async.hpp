// coproc: one-shot calls with a result (Python's Pool.apply_async(...).get(timeout), with a
// child per call).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <coproc/connection.hpp>
#include <coproc/detail/async_support.hpp>
#include <coproc/detail/duration.hpp>
#include <coproc/detail/result_state.hpp>
#include <coproc/error.hpp>
#include <coproc/process.hpp>

namespace coproc {

/// An exception of the function run by apply_async, carried to the parent: its dynamic type's
/// name and what(). what() is "<type>: <message>".
class remote_error : public process_error {
 public:
  remote_error(std::string type_name, std::string message);
  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& message() const noexcept { return message_; }

 private:
  std::string type_name_, message_;
};

namespace detail {

// The parent's side of one call: the child and the end its outcome arrives on. The outcome is
// one message: 'v' + the result as JSON, or 'e' + the exception's type and message.
class apply_state final : public result_state {
 public:
  apply_state(process child, connection outcome);
  ~apply_state() override;

  bool wait(std::optional<std::chrono::steady_clock::time_point> deadline) override;
  bool ready() override;
  // The result's JSON text, or throws remote_error / process_error.
  std::span<const std::byte> value() const override;
  // errc::remote_error, errc::child_died, or (timed) boost::asio::error::timed_out.
  void async_wait(boost::asio::any_io_executor io, std::optional<std::chrono::nanoseconds> timeout,
                  boost::asio::any_completion_handler<void(boost::system::error_code)> handler) override;
  // The child's exit status, once it has ended.
  std::optional<exit_status> status() const override;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

// In the child: the outcome of calling `f`, sent on `out`. coproc::exit and forced unwinds go
// through (the child's exit code says what happened); any other exception is sent.
void send_result(connection& out, std::span<const std::byte> json);
// The child's side under spawn and forkserver (registered by the library): calls the function
// registered as `key` with `arguments` (a JSON array) and sends the outcome.
void apply_in_child(connection out, std::string key, std::string arguments);
// The parent's side: the key of the registered function at `address` and the JSON of `args`.
// Throws std::logic_error when the function is not registered, its result cannot be sent, or
// an argument is a connection (apply_async hands none).
void prepare_apply_key(const void* address, std::string& key);
template <class Tuple>
void prepare_apply(const void* address, const Tuple& args, std::string& key, std::string& arguments) {
  prepare_apply_key(address, key);
  std::vector<int> fds;
  const bytes json = exec_arguments(args, fds);
  if (!fds.empty())
    throw std::logic_error("apply_async: a connection cannot be an argument under spawn and forkserver");
  arguments.assign(reinterpret_cast<const char*>(json.data()), json.size());
}
void send_current_exception(connection& out);
bool exception_ends_child() noexcept;  // in a catch(...): coproc::exit or a forced unwind

}  // namespace detail

namespace detail {
// async_get's completion signature; `void(error_code, void)` must never be named.
template <class R>
struct get_signature {
  using type = void(boost::system::error_code, R);
};
template <>
struct get_signature<void> {
  using type = void(boost::system::error_code);
};
}  // namespace detail

/// The result of apply_async: Python's AsyncResult.
///
/// @par Thread Safety
/// Distinct objects: safe. Shared objects (copies share the call): get, wait and ready from any
/// threads.
template <class R>
class async_result {
 public:
  explicit async_result(std::shared_ptr<detail::result_state> state) : state_(std::move(state)) {}

  /// Waits for the result and returns it (repeatable). The function's exception arrives as
  /// remote_error; a child that ended without a result as process_error naming its exit code.
  R get() const {
    state_->wait(std::nullopt);
    return convert();
  }
  /// As get(), at most `timeout`: then timeout_error; the child keeps running and a later
  /// get() still returns its result.
  template <class Rep, class Period>
  R get(std::chrono::duration<Rep, Period> timeout) const {
    if (!state_->wait(detail::deadline_after(detail::saturating_ns(timeout))))
      throw timeout_error("the result did not come in time");
    return convert();
  }
  /// True once the result (or the failure) is known.
  bool ready() const { return state_->ready(); }
  /// Whether the call ended without an exception. Misuse before ready(): "result is not ready".
  bool successful() const {
    if (!ready()) throw std::logic_error("result is not ready");
    try {
      (void)state_->value();
      return true;
    } catch (const process_error&) {
      return false;
    }
  }
  /// Waits at most `timeout` (no timeout: until ready); says nothing (Python's wait()).
  void wait() const { state_->wait(std::nullopt); }
  template <class Rep, class Period>
  void wait(std::chrono::duration<Rep, Period> timeout) const {
    state_->wait(detail::deadline_after(detail::saturating_ns(timeout)));
  }

  /// Beyond Python: what the kernel measured, once ready. For apply_async, the child's exit
  /// status. For a pool task, the CPU time the task used in its worker and the worker's peak
  /// RSS (exitcode 0), or, when the worker died under the task, the worker's exit status.
  /// nullopt before ready().
  std::optional<exit_status> status() const {
    if (!ready()) return std::nullopt;
    return state_->status();
  }

  /// @par Completion Signature
  /// `void(boost::system::error_code, R)`: errc::remote_error or errc::child_died (get() then
  /// throws the exception with its details), errc::bad_message when the result does not
  /// convert; R default-constructed with any error. Per-operation cancellation as async_join.
  template <class Token>
  auto async_get(Token&& token) const {
    return start_get(std::nullopt, std::forward<Token>(token));
  }
  /// As above; boost::asio::error::timed_out once `timeout` passed (the child keeps running).
  template <class Rep, class Period, class Token>
  auto async_get(std::chrono::duration<Rep, Period> timeout, Token&& token) const {
    return start_get(detail::saturating_ns(timeout), std::forward<Token>(token));
  }

 private:
  R convert() const {
    const auto text = state_->value();
    if constexpr (std::is_void_v<R>)
      return;
    else
      return detail::from_message<R>(text);
  }

  template <class Token>
  auto start_get(std::optional<std::chrono::nanoseconds> timeout, Token&& token) const {
    using signature = typename detail::get_signature<R>::type;
    return boost::asio::async_initiate<Token, signature>(
        [](auto handler, std::shared_ptr<detail::result_state> st,
           std::optional<std::chrono::nanoseconds> t) {
          auto io = detail::io_executor_of(boost::asio::get_associated_executor(handler));
          auto* raw = st.get();
          raw->async_wait(
              std::move(io), t,
              detail::adapt_handler(std::move(handler), [st = std::move(st)](
                                                            auto h, boost::system::error_code ec) {
                if constexpr (std::is_void_v<R>) {
                  std::move(h)(ec);
                } else {
                  if (ec) return std::move(h)(ec, R{});
                  std::optional<R> value;
                  try {
                    value.emplace(detail::from_message<R>(st->value()));
                  } catch (const message_error&) {
                    return std::move(h)(
                        make_error_code(boost::system::errc::bad_message), R{});
                  }
                  std::move(h)(ec, std::move(*value));
                }
              }));
        },
        token, state_, timeout);
  }

  std::shared_ptr<detail::result_state> state_;
};

/// Runs `f(args...)` in a new child (with get_start_method(); under spawn and forkserver `f`
/// must be registered) and returns its result, which travels back as JSON.
template <class F, class... Args>
auto apply_async(F&& f, Args&&... args) {
  using R = std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>&...>;
  auto [reader, writer] = pipe(false);
  const start_method method = get_start_method();
  if (method != start_method::fork) {
    // A new program finds the function by name and sends its result as JSON: a registered
    // function of sendable arguments, called by the library's registered trampoline.
    std::string key, arguments;
    if constexpr (std::is_pointer_v<std::decay_t<F>> &&
                  std::is_function_v<std::remove_pointer_t<std::decay_t<F>>>) {
      if constexpr ((detail::sendable_arg_v<std::decay_t<Args>> && ...)) {
        const std::tuple<std::decay_t<Args>...> a(std::forward<Args>(args)...);
        detail::prepare_apply(reinterpret_cast<const void*>(static_cast<std::decay_t<F>>(f)), a,
                              key, arguments);
      } else {
        throw std::logic_error(
            "apply_async: an argument cannot be sent to the new process: arguments travel as "
            "typed messages (JSON)");
      }
    } else {
      throw std::logic_error(
          "apply_async: under spawn and forkserver the function must be registered with "
          "COPROC_TARGET (a lambda or function object cannot be found in the new process)");
    }
    process child(process_options{.method = method}, detail::apply_in_child, std::move(writer),
                  std::move(key), std::move(arguments));
    child.start();
    return async_result<R>(
        std::make_shared<detail::apply_state>(std::move(child), std::move(reader)));
  }
  process child(
      [](std::decay_t<F> fn, std::tuple<std::decay_t<Args>...> a, connection out) {
        try {
          if constexpr (std::is_void_v<R>) {
            std::apply(fn, a);
            detail::send_result(out, as_bytes("null"));
          } else {
            detail::send_result(out, detail::to_message(std::apply(fn, a)));
          }
        } catch (...) {
          if (detail::exception_ends_child()) throw;
          detail::send_current_exception(out);
        }
      },
      std::forward<F>(f), std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...),
      std::move(writer));
  child.start();
  return async_result<R>(
      std::make_shared<detail::apply_state>(std::move(child), std::move(reader)));
}

}  // namespace coproc
