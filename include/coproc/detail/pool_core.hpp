// coproc internals: the pool's engine as the public templates see it. The templates turn a
// call into a request (which function, its arguments as JSON) and hand it here with a sink
// that receives its outcome; everything else (workers, the queue, deadlines, replacing the
// dead) lives in lib/pool/.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/system/error_code.hpp>

#include <coproc/bytes.hpp>
#include <coproc/detail/json.hpp>
#include <coproc/detail/registered.hpp>
#include <coproc/detail/result_state.hpp>
#include <coproc/process.hpp>
#include <coproc/start_method.hpp>

namespace coproc {
struct pool_options;
}

namespace coproc::detail {

// The outcome of one request (one task, or one chunk of a map).
struct pool_outcome {
  enum class kind : std::uint8_t {
    value,        // `value` holds the JSON text
    remote,       // the function threw: `type`, `message`
    died,         // the worker ended under it: `exitcode`, `status`
    timed_out,    // past the deadline: its worker was killed (`timeout` says which deadline)
    terminated,   // terminate() came first
    init_failed,  // the initializer threw (`type`, `message`): the pool cannot run tasks
    not_started,  // no worker could be started: `message`
  };
  kind what = kind::value;
  bytes value;
  std::string type, message;
  int exitcode = 0;
  std::chrono::nanoseconds timeout{0};
  std::optional<exit_status> status;
};

// Throws the exception the outcome stands for (not for kind::value).
[[noreturn]] void raise(const pool_outcome& o);
// The error_code the asynchronous forms report for it.
boost::system::error_code error_of(const pool_outcome& o) noexcept;

// Where outcomes go. Called once per submitted request, from whichever thread learnt it (the
// pool's own thread, a blocking caller, terminate()); never under the pool's lock.
class pool_sink {
 public:
  virtual ~pool_sink() = default;
  virtual void deliver(std::size_t index, pool_outcome&& outcome) noexcept = 0;
};

// A request: which function (header) and its arguments.
//   byte 0: 's' one call (the rest is its argument array) or 'm' a chunk (an array of them)
//   byte 1: 'p' then the invoker's and the function's addresses (8 bytes each): fork workers are
//           copies of this program image; or 'k' then a 2-byte length and the registered key.
struct pool_request {
  bytes message;
  std::shared_ptr<pool_sink> sink;
  std::size_t index = 0;
  std::optional<std::chrono::nanoseconds> timeout{};  // unset: the pool's task_timeout
  // A later message of a call made while the pool ran (an imap's next chunk): accepted after
  // close() until join(), as Python's eager imap would have queued it before close().
  bool continuation = false;
};

// How a task's function reaches a worker: by address under fork, by registered key otherwise.
struct pool_function {
  using invoker = bytes (*)(const void*, std::span<const std::byte>);
  invoker one = nullptr, many = nullptr;
  const void* address = nullptr;
};

class pool_core {
 public:
  explicit pool_core(const pool_options& opts);
  ~pool_core();
  pool_core(const pool_core&) = delete;
  pool_core& operator=(const pool_core&) = delete;

  start_method method() const noexcept;
  int size() const noexcept;
  // How many requests an imap keeps in flight.
  std::size_t window() const noexcept;

  // Misuse checks for a new task: "Pool not running", a pool used from another process.
  void check_running() const;
  // The request's header for `fn` (throws std::logic_error for an unregistered function under
  // spawn and forkserver).
  void begin_request(bytes& out, bool chunk, const pool_function& fn) const;

  // One call, waited for on this thread: when a worker is idle the request goes straight to it
  // and this thread reads the reply (no other thread wakes); otherwise it is queued.
  pool_outcome call(bytes request, std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // Queues (or sends at once to an idle worker); the outcome reaches the sink.
  void submit(pool_request request);

  void close();
  void terminate();
  void join();
  void async_join(boost::asio::any_io_executor io,
                  boost::asio::any_completion_handler<void(boost::system::error_code)> handler);

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

// A single call's outcome, as async_result waits for it.
std::shared_ptr<result_state> make_pool_result(std::shared_ptr<pool_sink>& sink);
// A map's: `chunks` outcomes whose values are JSON arrays, joined into one array in order. The
// first failure is the result's (Python's map_async).
std::shared_ptr<result_state> make_map_result(std::size_t chunks, std::shared_ptr<pool_sink>& sink);

// The outcomes of an imap's chunks, taken by its consumer in order or as they come.
class imap_window : public pool_sink {
 public:
  explicit imap_window(bool ordered);
  ~imap_window() override;
  void deliver(std::size_t index, pool_outcome&& outcome) noexcept override;
  // Counts a chunk about to be submitted under `index`.
  void expect(std::size_t index);
  // Submitted and not yet taken.
  std::size_t outstanding() const;
  // The next chunk's outcome (in index order when ordered), waiting until the deadline;
  // nullopt on timeout. Requires outstanding() > 0.
  std::optional<pool_outcome> take(std::optional<std::chrono::steady_clock::time_point> deadline);
  // Completes when take() would not wait (or on timeout / cancellation, as async_result's).
  void async_wait(boost::asio::any_io_executor io, std::optional<std::chrono::nanoseconds> timeout,
                  boost::asio::any_completion_handler<void(boost::system::error_code)> handler);

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

// ---------------------------------------------------------------------------------------
// A callable as a pool task: a function pointer, a function, or a lambda without captures.

template <class F, class = void>
struct task_signature {};
template <class R, class... P>
struct task_signature<R (*)(P...)> {
  using type = R(P...);
};
template <class R, class... P>
struct task_signature<R (*)(P...) noexcept> {
  using type = R(P...);
};
template <class C, class R, class... P>
struct member_signature {
  using type = R(P...);
};
template <class M>
struct member_call;
template <class C, class R, class... P>
struct member_call<R (C::*)(P...) const> : member_signature<C, R, P...> {};
template <class C, class R, class... P>
struct member_call<R (C::*)(P...) const noexcept> : member_signature<C, R, P...> {};
template <class F>
struct task_signature<F, std::void_t<decltype(&F::operator())>>
    : member_call<decltype(&F::operator())> {};

template <class F>
concept pool_callable = requires { typename task_signature<std::decay_t<F>>::type; } &&
                        std::is_convertible_v<std::decay_t<F>,
                                              std::add_pointer_t<typename task_signature<std::decay_t<F>>::type>>;

template <class F>
using task_function_t = typename task_signature<std::decay_t<F>>::type;

template <class Sig>
struct task_traits;
template <class R, class... P>
struct task_traits<R(P...)> {
  using result = R;
  static constexpr bool sendable =
      (!handed_type<std::decay_t<P>> && ...) && (sendable_arg_v<std::decay_t<P>> && ...) &&
      (std::is_void_v<R> || sendable_arg_v<R>);
};

template <class F>
pool_function pool_function_of(F&& f) {
  using Sig = task_function_t<F>;
  static_assert(task_traits<Sig>::sendable,
                "coproc::pool: a task's parameters and result travel as typed messages (JSON): "
                "each must be one (a connection cannot be a pool task's argument)");
  Sig* fn = static_cast<Sig*>(f);
  return {&function_parameters<Sig>::invoke_result, &function_parameters<Sig>::invoke_many,
          reinterpret_cast<const void*>(fn)};
}

// Appends `args` as a JSON array of the values (as a spawned child reads them).
template <class... A>
void append_arguments(bytes& out, const A&... args) {
  json::writer w(out, typeid(std::tuple<A...>));
  w.open('[');
  bool first = true;
  [[maybe_unused]] auto one = [&](const auto& a) {
    if (!first) w.raw(',');
    first = false;
    json::write(w, a);
  };
  (one(args), ...);
  w.close(']');
}

}  // namespace coproc::detail
