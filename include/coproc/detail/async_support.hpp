// coproc internals: what every public asynchronous template needs (the handler's I/O executor,
// handler adapters that keep the handler's associated executor, allocator and cancellation
// slot).
#pragma once

#include <type_traits>
#include <utility>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associator.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/system/error_code.hpp>

namespace boost::asio::detail {
template <typename T, typename Blocking>
class promise_executor;  // use_future's (boost/asio/impl/use_future.hpp)
}  // namespace boost::asio::detail

namespace coproc::detail {

// Executors that stand for "no executor of your own": the system executor, and
// use_future's, which runs handlers where they complete and reports the system context
// (as execution_context&, so its type alone does not tell).
template <class T>
struct runs_anywhere : std::false_type {};
template <class B, class R, class A>
struct runs_anywhere<boost::asio::basic_system_executor<B, R, A>> : std::true_type {};
template <class F, class B>
struct runs_anywhere<boost::asio::detail::promise_executor<F, B>> : std::true_type {};

// The handler's executor, when its context can run a reactor: an io_context, a thread_pool, a
// strand of either, an any_io_executor. Empty otherwise: those waits go to coproc's own I/O
// thread. Decided from the type, so that nothing asks such an executor for its context
// (which would start the system context's thread pool).
template <class Executor>
boost::asio::any_io_executor io_executor_of(const Executor& ex) {
  if constexpr (runs_anywhere<Executor>::value ||
                !std::is_constructible_v<boost::asio::any_io_executor, const Executor&>) {
    return {};
  } else {
    return boost::asio::any_io_executor(ex);
  }
}

// A handler seen through another completion signature: `adapt` receives the handler and the
// arguments of the new signature and calls the handler. The handler's associated executor,
// allocator and cancellation slot are the adapter's (see the associator below), so per-operation
// cancellation and executors work through it.
template <class Handler, class Adapt>
struct adapted_handler {
  Handler handler;
  Adapt adapt;
  template <class... Args>
  void operator()(Args&&... args) && {
    std::move(adapt)(std::move(handler), std::forward<Args>(args)...);
  }
};

template <class Handler, class Adapt>
adapted_handler<std::decay_t<Handler>, Adapt> adapt_handler(Handler&& h, Adapt a) {
  return {std::forward<Handler>(h), std::move(a)};
}

// void(error_code) seen as void(error_code, std::size_t): typed sends report no size.
template <class Handler>
auto drop_size(Handler&& h) {
  return adapt_handler(std::forward<Handler>(h), [](auto handler, boost::system::error_code ec,
                                                    std::size_t) { std::move(handler)(ec); });
}

}  // namespace coproc::detail

namespace boost::asio {
template <template <class, class> class Associator, class Handler, class Adapt, class Default>
struct associator<Associator, coproc::detail::adapted_handler<Handler, Adapt>, Default> {
  using type = typename Associator<Handler, Default>::type;
  static type get(
      const coproc::detail::adapted_handler<Handler, Adapt>& h) noexcept {
    return Associator<Handler, Default>::get(h.handler);
  }
  static auto get(const coproc::detail::adapted_handler<Handler, Adapt>& h,
                  const Default& d) noexcept
      -> decltype(Associator<Handler, Default>::get(h.handler, d)) {
    return Associator<Handler, Default>::get(h.handler, d);
  }
};
}  // namespace boost::asio
