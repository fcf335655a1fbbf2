// coproc: a pool of worker processes that survives its workers (Python's multiprocessing.Pool,
// with deadlines, crash recovery and awaitable twins). docs/pool.md tells the whole story.
#pragma once

#include <charconv>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <stdexcept>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/system/error_code.hpp>

#include <coproc/apply_async.hpp>
#include <coproc/detail/async_support.hpp>
#include <coproc/detail/duration.hpp>
#include <coproc/detail/pool_core.hpp>
#include <coproc/error.hpp>
#include <coproc/start_method.hpp>

namespace coproc {

/// What a pool is made of. An aggregate, as process_options: new members go last.
struct pool_options {
  std::optional<int> processes{};                          ///< unset: cpu_count()
  std::function<void()> initializer{};                     ///< run once in each worker first
  std::optional<std::size_t> maxtasksperchild{};           ///< unset: workers live as long as the pool
  std::optional<start_method> method{};                    ///< unset: get_start_method()
  std::optional<std::chrono::nanoseconds> task_timeout{};  ///< unset: no deadline
  /// Beyond Python: how long an idle worker, and a blocking caller waiting for its reply, poll
  /// their socket before they sleep (a wake-up across CPUs costs tens of microseconds; a poll
  /// that finds the message costs one). Unset: 50 us when this process may run on two CPUs or
  /// more, else 0. Polling happens only right after a message, so an idle pool is idle.
  std::optional<std::chrono::microseconds> spin{};
};

namespace detail {
template <class R>
using pool_item_t = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

template <class F>
using pool_result_t = typename task_traits<task_function_t<F>>::result;

// Python's default chunk size for map: len / (4 * workers), rounded up.
inline std::size_t default_chunksize(std::size_t n, int workers) {
  const std::size_t per = static_cast<std::size_t>(workers) * 4;
  return n / per + (n % per ? 1 : 0);
}

// Appends one chunk of at most `max` items to `out` as an array of argument arrays; returns how
// many were taken. Star: each item already is an argument array (a tuple or pair).
template <bool Star, class It, class End>
std::size_t append_chunk(bytes& out, It& it, const End& end, std::size_t max) {
  using item = std::remove_cvref_t<decltype(*it)>;
  if constexpr (!Star && json::fast_integer<item>::value) {
    // Integers, the common map: written straight into the buffer ("[[1],[2]]"), 24 bytes a
    // number at most, instead of through the general writer.
    const std::size_t start = out.size();
    std::size_t n = 0, at = start;
    out.push_back(std::byte{'['});
    ++at;
    for (; n < max && it != end; ++it, ++n) {
      if (out.size() < at + 28) out.resize(std::max(out.size() * 2, at + 28 * 64));
      char* p = reinterpret_cast<char*>(out.data()) + at;
      char* const first = p;
      if (n) *p++ = ',';
      *p++ = '[';
      p = std::to_chars(p, p + 24, static_cast<item>(*it)).ptr;
      *p++ = ']';
      at += static_cast<std::size_t>(p - first);
    }
    out.resize(at);
    out.push_back(std::byte{']'});
    return n;
  }
  json::writer w(out, typeid(void));
  w.open('[');
  std::size_t n = 0;
  for (; n < max && it != end; ++it, ++n) {
    if (n) w.raw(',');
    if constexpr (Star) {
      json::write(w, *it);
    } else {
      w.open('[');
      json::write(w, *it);
      w.close(']');
    }
  }
  w.close(']');
  return n;
}
}  // namespace detail

/// The results of imap and imap_unordered: an input range, read once, by one consumer at a
/// time. Inputs are read from the input range lazily, as results are taken, so that a bounded
/// number of tasks (pool::window) is in flight whatever the input's length.
template <class R>
class imap_result {
 public:
  using value_type = R;

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    R& operator*() const { return *owner_->current_; }
    R* operator->() const { return &*owner_->current_; }
    iterator& operator++() {
      owner_->current_ = owner_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& i, std::default_sentinel_t) { return i.done(); }

   private:
    friend class imap_result;
    explicit iterator(imap_result* o) : owner_(o) {}
    bool done() const noexcept { return !owner_ || !owner_->current_; }
    imap_result* owner_ = nullptr;
  };

  imap_result(imap_result&&) noexcept = default;
  imap_result& operator=(imap_result&&) noexcept = default;

  /// Reads the first result (throws as next() does).
  iterator begin() {
    current_ = next();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

  /// The next result, or nullopt after the last. A chunk whose task threw (or whose worker
  /// died, or ran past its deadline) throws that exception once, in its place; the results
  /// after it still come (Python's IMapIterator).
  std::optional<R> next() { return next_until(std::nullopt); }
  /// As next(), waiting at most `timeout`: then timeout_error, and the result still comes later.
  template <class Rep, class Period>
  std::optional<R> next(std::chrono::duration<Rep, Period> timeout) {
    return next_until(detail::deadline_after(detail::saturating_ns(timeout)));
  }

  /// @par Completion Signature
  /// `void(boost::system::error_code, std::optional<R>)`: nullopt after the last result; a
  /// failed chunk reports its error once (coproc::errc::remote_error, child_died,
  /// task_timed_out, pool_terminated). Cancelling the wait leaves the tasks running.
  template <class Token>
  auto async_next(Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::optional<R>)>(
        [this](auto handler) {
          auto ex = boost::asio::get_associated_executor(handler, boost::asio::system_executor());
          const bool buffered = pos_ < buffer_.size();
          if (buffered || !refill()) {
            // The input's own exception, after the results of the chunks sent before it.
            if (!buffered && input_error_) std::rethrow_exception(std::exchange(input_error_, nullptr));
            // Known now; never completed inside the initiating call.
            std::optional<R> item;
            if (pos_ < buffer_.size()) item.emplace(std::move(buffer_[pos_++]));
            boost::asio::post(ex, [h = std::move(handler), item = std::move(item)]() mutable {
              std::move(h)(boost::system::error_code{}, std::move(item));
            });
            return;
          }
          auto io = detail::io_executor_of(ex);
          window_->async_wait(
              std::move(io), std::nullopt,
              detail::adapt_handler(std::move(handler), [this](auto h, boost::system::error_code ec) {
                if (ec) return std::move(h)(ec, std::optional<R>{});
                auto o = window_->take(std::chrono::steady_clock::now());
                if (!o) return std::move(h)(make_error_code(boost::asio::error::timed_out), std::optional<R>{});
                if (o->what != detail::pool_outcome::kind::value)
                  return std::move(h)(detail::error_of(*o), std::optional<R>{});
                try {
                  load(*o);
                } catch (const message_error&) {
                  return std::move(h)(make_error_code(boost::system::errc::bad_message), std::optional<R>{});
                }
                std::optional<R> item;
                if (pos_ < buffer_.size()) item.emplace(std::move(buffer_[pos_++]));
                std::move(h)(boost::system::error_code{}, std::move(item));
              }));
        },
        token);
  }

 private:
  friend class pool;
  using feeder = std::function<std::size_t(bytes&)>;

  imap_result(std::shared_ptr<detail::pool_core> core, detail::pool_function fn, bool ordered,
              std::size_t chunksize, feeder feed)
      : core_(std::move(core)),
        fn_(fn),
        window_(std::make_shared<detail::imap_window>(ordered)),
        chunksize_(chunksize),
        feed_(std::move(feed)) {}

  // Submits chunks until the window is full or the input ends; false when nothing is left to
  // wait for.
  bool refill() {
    while (!exhausted_ && window_->outstanding() < core_->window()) {
      bytes request;
      core_->begin_request(request, true, fn_);
      std::size_t n = 0;
      try {
        n = feed_(request);
      } catch (...) {
        // The input itself threw (Python's exception_throwing_generator): the chunks already
        // sent still come, then this exception (once), then the end.
        input_error_ = std::current_exception();
        exhausted_ = true;
        feed_ = nullptr;
        break;
      }
      if (n == 0) {
        exhausted_ = true;
        feed_ = nullptr;  // the input (and what it holds) is released as soon as it ends
        break;
      }
      try {
        core_->submit({std::move(request), window_, index_, std::nullopt, true});
      } catch (...) {
        // Not sent (the pool was joined or terminated): the chunks already sent still come,
        // then this error (once), then the end.
        input_error_ = std::current_exception();
        exhausted_ = true;
        feed_ = nullptr;
        break;
      }
      // Counted once sent (this thread is the only consumer, so nothing is taken meanwhile).
      window_->expect(index_++);
    }
    return window_->outstanding() > 0;
  }

  void load(const detail::pool_outcome& o) {
    buffer_ = detail::from_message<std::vector<R>>(o.value);
    pos_ = 0;
  }

  std::optional<R> next_until(std::optional<std::chrono::steady_clock::time_point> deadline) {
    for (;;) {
      if (pos_ < buffer_.size()) return std::move(buffer_[pos_++]);
      if (!refill()) {
        if (input_error_) std::rethrow_exception(std::exchange(input_error_, nullptr));
        return std::nullopt;
      }
      auto o = window_->take(deadline);
      if (!o) throw timeout_error("the next result did not come in time");
      if (o->what != detail::pool_outcome::kind::value) detail::raise(*o);
      load(*o);
    }
  }

  std::shared_ptr<detail::pool_core> core_;
  detail::pool_function fn_;
  std::shared_ptr<detail::imap_window> window_;
  std::size_t chunksize_;
  feeder feed_;
  bool exhausted_ = false;
  std::exception_ptr input_error_;  // the input threw: raised once its sent chunks are taken
  std::size_t index_ = 0;
  std::vector<R> buffer_;
  std::size_t pos_ = 0;
  std::optional<R> current_;
};

/// A pool of worker processes: Python's multiprocessing.Pool. Tasks are registered functions
/// (COPROC_TARGET) or, under fork, plain function pointers (and lambdas without captures);
/// arguments and results travel as typed messages (JSON).
///
/// Beyond Python: a worker that dies fails only its task (process_error naming the exit code)
/// and is replaced; a task past `task_timeout` fails with timeout_error and its worker is
/// killed and replaced; no task is ever lost or left waiting forever.
///
/// @par Thread Safety
/// Every member may be called from any number of threads at once (and from coroutines on any
/// executor), except the destructor and moves.
class pool {
 public:
  explicit pool(pool_options opts = {}) : core_(std::make_shared<detail::pool_core>(opts)) {}
  /// Does what Python's `with Pool() as p:` does on leaving the block: terminate() (the
  /// workers are killed; unfinished tasks fail), then the workers are reaped. Call close() and
  /// join() first to let the tasks finish.
  ~pool() {
    if (core_) {
      core_->terminate();
      core_->join();
    }
  }
  pool(pool&&) noexcept = default;
  pool& operator=(pool&&) = delete;
  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  /// f(args...) in a worker, waited for here.
  template <class F, class... A>
  auto apply(F&& f, A&&... args) -> detail::pool_result_t<F> {
    using R = detail::pool_result_t<F>;
    auto outcome = core_->call(request_one(f, args...));
    if (outcome.what != detail::pool_outcome::kind::value) detail::raise(outcome);
    if constexpr (!std::is_void_v<R>) return detail::from_message<R>(outcome.value);
  }

  template <class F, class... A>
  auto apply_async(F&& f, A&&... args) -> async_result<detail::pool_result_t<F>> {
    return submit_one<detail::pool_result_t<F>>(request_one(f, args...), std::nullopt);
  }

  /// Beyond Python: apply, apply_async and async_apply with this task's own deadline instead of
  /// pool_options::task_timeout. Past it the task fails with timeout_error (task_timed_out)
  /// and its worker is killed and replaced.
  template <class Rep, class Period, class F, class... A>
  auto apply_within(std::chrono::duration<Rep, Period> deadline, F&& f, A&&... args)
      -> detail::pool_result_t<F> {
    using R = detail::pool_result_t<F>;
    auto outcome = core_->call(request_one(f, args...), checked_deadline(deadline));
    if (outcome.what != detail::pool_outcome::kind::value) detail::raise(outcome);
    if constexpr (!std::is_void_v<R>) return detail::from_message<R>(outcome.value);
  }
  template <class Rep, class Period, class F, class... A>
  auto apply_async_within(std::chrono::duration<Rep, Period> deadline, F&& f, A&&... args)
      -> async_result<detail::pool_result_t<F>> {
    return submit_one<detail::pool_result_t<F>>(request_one(f, args...), checked_deadline(deadline));
  }
  template <class Rep, class Period, class F, class... A, class Token>
  auto async_apply_within(std::chrono::duration<Rep, Period> deadline, F&& f,
                          std::tuple<A...> args, Token&& token) {
    auto result = std::apply(
        [&](auto&... a) { return apply_async_within(deadline, f, a...); }, args);
    return result.async_get(std::forward<Token>(token));
  }

  /// @par Completion Signature
  /// `void(boost::system::error_code, R)` (`void(boost::system::error_code)` for void f):
  /// coproc::errc::remote_error, child_died, task_timed_out, pool_terminated, init_failed.
  /// Per-operation cancellation ends the wait, never the task (terminate() ends tasks).
  template <class F, class... A, class Token>
  auto async_apply(F&& f, std::tuple<A...> args, Token&& token) {
    auto result = std::apply(
        [&](auto&... a) { return apply_async(f, a...); }, args);
    return result.async_get(std::forward<Token>(token));
  }

  /// Python's map: the results in input order; chunksize 0 is Python's default
  /// (len / (4 * size()), rounded up). The first failed chunk's exception is thrown.
  template <class F, class Range>
  auto map(F&& f, Range&& inputs, std::size_t chunksize = 0) {
    return map_async(std::forward<F>(f), std::forward<Range>(inputs), chunksize).get();
  }
  template <class F, class Range>
  auto map_async(F&& f, Range&& inputs, std::size_t chunksize = 0) {
    return map_impl<false>(f, std::forward<Range>(inputs), chunksize);
  }
  /// As map, each input being the tuple (or pair) of one call's arguments.
  template <class F, class Range>
  auto starmap(F&& f, Range&& tuples, std::size_t chunksize = 0) {
    return starmap_async(std::forward<F>(f), std::forward<Range>(tuples), chunksize).get();
  }
  template <class F, class Range>
  auto starmap_async(F&& f, Range&& tuples, std::size_t chunksize = 0) {
    return map_impl<true>(f, std::forward<Range>(tuples), chunksize);
  }
  /// The awaitable twins of map and starmap: `void(boost::system::error_code, std::vector<R>)`.
  template <class F, class Range, class Token>
  auto async_map(F&& f, Range&& inputs, std::size_t chunksize, Token&& token) {
    return map_async(std::forward<F>(f), std::forward<Range>(inputs), chunksize)
        .async_get(std::forward<Token>(token));
  }
  template <class F, class Range, class Token>
  auto async_starmap(F&& f, Range&& tuples, std::size_t chunksize, Token&& token) {
    return starmap_async(std::forward<F>(f), std::forward<Range>(tuples), chunksize)
        .async_get(std::forward<Token>(token));
  }

  /// Results in input order, as they are taken; the input is read lazily.
  template <class F, class Range>
  auto imap(F&& f, Range&& inputs, std::size_t chunksize = 1) {
    return imap_impl(f, std::forward<Range>(inputs), chunksize, true);
  }
  /// Results as they come.
  template <class F, class Range>
  auto imap_unordered(F&& f, Range&& inputs, std::size_t chunksize = 1) {
    return imap_impl(f, std::forward<Range>(inputs), chunksize, false);
  }

  /// No new tasks; the workers end once the queued ones are done.
  void close() { core_->close(); }
  /// Kills the workers at once; every unfinished task fails (pool_terminated).
  void terminate() { core_->terminate(); }
  /// Waits for the workers to end; after close() or terminate(), else misuse ("Pool is still
  /// running").
  void join() { core_->join(); }
  /// @par Completion Signature
  /// `void(boost::system::error_code)`. Misuse as join(), thrown from here.
  template <class Token>
  auto async_join(Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
        [core = core_](auto handler) {
          auto io = detail::io_executor_of(
              boost::asio::get_associated_executor(handler, boost::asio::system_executor()));
          core->async_join(std::move(io), std::move(handler));
        },
        token);
  }
  /// The number of workers.
  int size() const { return core_->size(); }
  /// How many messages (tasks, or chunks) an imap keeps in flight: twice the workers.
  std::size_t window() const { return core_->window(); }

 private:
  template <class Rep, class Period>
  static std::chrono::nanoseconds checked_deadline(std::chrono::duration<Rep, Period> d) {
    const auto ns = detail::saturating_ns(d);
    if (ns.count() <= 0) throw std::invalid_argument("a task's deadline must be positive");
    return ns;
  }

  template <class R>
  async_result<R> submit_one(bytes request, std::optional<std::chrono::nanoseconds> deadline) {
    std::shared_ptr<detail::pool_sink> sink;
    auto state = detail::make_pool_result(sink);
    core_->submit({std::move(request), std::move(sink), 0, deadline});
    return async_result<R>(std::move(state));
  }

  template <class F>
  static detail::pool_function function_of(F& f) {
    static_assert(detail::pool_callable<F>,
                  "coproc::pool: a task is a registered function (COPROC_TARGET) or, under fork, "
                  "a plain function pointer or a lambda without captures");
    return detail::pool_function_of(f);
  }

  template <class F, class... A>
  bytes request_one(F& f, const A&... args) {
    static_assert(((detail::sendable_arg_v<std::decay_t<A>> &&
                    !detail::handed_type<std::decay_t<A>>) && ...),
                  "coproc::pool: a task's arguments travel as typed messages (JSON)");
    bytes request;  // call() and submit() check that the pool runs
    core_->begin_request(request, false, function_of(f));
    detail::append_arguments(request, args...);
    return request;
  }

  template <bool Star, class F, class Range>
  auto map_impl(F& f, Range&& inputs, std::size_t chunksize) {
    using R = detail::pool_item_t<detail::pool_result_t<F>>;
    const detail::pool_function fn = function_of(f);
    core_->check_running();
    if constexpr (std::ranges::sized_range<Range> && std::ranges::forward_range<Range>) {
      return map_chunks<Star, R>(fn, inputs, chunksize);
    } else {
      // Python's map makes a list of an iterable without a length.
      std::vector<std::ranges::range_value_t<Range>> all;
      for (auto&& v : inputs) all.push_back(std::forward<decltype(v)>(v));
      return map_chunks<Star, R>(fn, all, chunksize);
    }
  }

  template <bool Star, class R, class Range>
  async_result<std::vector<R>> map_chunks(const detail::pool_function& fn, Range& inputs,
                                          std::size_t chunksize) {
    const std::size_t n = static_cast<std::size_t>(std::ranges::size(inputs));
    if (chunksize == 0) chunksize = detail::default_chunksize(n, core_->size());
    const std::size_t chunks = n == 0 ? 0 : (n + chunksize - 1) / chunksize;
    std::shared_ptr<detail::pool_sink> sink;
    auto state = detail::make_map_result(chunks, sink);
    auto it = std::ranges::begin(inputs);
    const auto end = std::ranges::end(inputs);
    std::size_t i = 0;
    try {
      for (; i < chunks; ++i) {
        bytes request;
        request.reserve(64 + chunksize * 8);  // growing a megabyte chunk costs copies and faults
        core_->begin_request(request, true, fn);
        detail::append_chunk<Star>(request, it, end, chunksize);
        core_->submit({std::move(request), sink, i});
      }
    } catch (...) {
      // The chunks not sent fail, so that the result is never left waiting for them.
      for (; i < chunks; ++i) {
        detail::pool_outcome o;
        o.what = detail::pool_outcome::kind::terminated;
        sink->deliver(i, std::move(o));
      }
      throw;
    }
    return async_result<std::vector<R>>(std::move(state));
  }

  template <class F, class Range>
  auto imap_impl(F& f, Range&& inputs, std::size_t chunksize, bool ordered) {
    using R = detail::pool_item_t<detail::pool_result_t<F>>;
    if (chunksize < 1) throw std::invalid_argument("Chunksize must be 1+, not 0");
    const detail::pool_function fn = function_of(f);
    core_->check_running();
    auto view = std::views::all(std::forward<Range>(inputs));
    using View = decltype(view);
    struct reader {
      View view;
      std::optional<std::ranges::iterator_t<View>> it;
    };
    auto input = std::make_shared<reader>(reader{std::move(view), std::nullopt});
    auto feed = [input, chunksize](bytes& out) -> std::size_t {
      if (!input->it) input->it.emplace(std::ranges::begin(input->view));
      const auto size_before = out.size();
      const std::size_t n =
          detail::append_chunk<false>(out, *input->it, std::ranges::end(input->view), chunksize);
      if (n == 0) out.resize(size_before);
      return n;
    };
    return imap_result<R>(core_, fn, ordered, chunksize, std::move(feed));
  }

  std::shared_ptr<detail::pool_core> core_;
};

}  // namespace coproc
