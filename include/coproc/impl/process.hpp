// coproc: template bodies of process's asynchronous operations. Included by process.hpp.
//
// The templates only adapt the completion token: the handler is type-erased into an
// any_completion_handler (which keeps its executor, allocator and cancellation slot) and the
// operation itself lives in the compiled library, so users do not compile the reactor.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/system/error_code.hpp>

#include <coproc/detail/async_support.hpp>

namespace coproc::detail {

using join_signature = void(boost::system::error_code, int);
using timed_join_signature = void(boost::system::error_code, std::optional<int>);
using join_handler = boost::asio::any_completion_handler<join_signature>;
using timed_join_handler = boost::asio::any_completion_handler<timed_join_signature>;

// `io` is the handler's executor when it can carry I/O objects (an io_context's executor, a
// strand of one, a thread pool's); empty otherwise, and for the system executor. The wait is
// registered with that executor's reactor, or with coproc's own I/O thread when it is empty.
void start_async_join(std::shared_ptr<child_state> state, boost::asio::any_io_executor io,
                      join_handler handler);
void start_async_join(std::shared_ptr<child_state> state, boost::asio::any_io_executor io,
                      std::chrono::nanoseconds timeout, timed_join_handler handler);

struct initiate_join {
  template <class Handler>
  void operator()(Handler&& handler, std::shared_ptr<child_state> state) const {
    auto io = io_executor_of(boost::asio::get_associated_executor(handler));
    start_async_join(std::move(state), std::move(io),
                     join_handler(std::forward<Handler>(handler)));
  }
};

struct initiate_timed_join {
  template <class Handler>
  void operator()(Handler&& handler, std::shared_ptr<child_state> state,
                  std::chrono::nanoseconds timeout) const {
    auto io = io_executor_of(boost::asio::get_associated_executor(handler));
    start_async_join(std::move(state), std::move(io), timeout,
                     timed_join_handler(std::forward<Handler>(handler)));
  }
};

}  // namespace coproc::detail

namespace coproc {

template <class Token>
auto process::async_join(Token&& token) {
  auto state = prepare_async_join(false);
  return boost::asio::async_initiate<Token, detail::join_signature>(
      detail::initiate_join{}, token, std::move(state));
}

template <class Rep, class Period, class Token>
auto process::async_join(std::chrono::duration<Rep, Period> timeout, Token&& token) {
  auto state = prepare_async_join(true);
  return boost::asio::async_initiate<Token, detail::timed_join_signature>(
      detail::initiate_timed_join{}, token, std::move(state), detail::saturating_ns(timeout));
}

}  // namespace coproc
