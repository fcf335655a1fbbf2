// coproc: template bodies of async_accept and async_client. Included by listener.hpp.
//
// As for connection's operations, the templates only adapt the completion token; the
// operations (the accept or the connect, then the handshake) live in the compiled library.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/system/error_code.hpp>

#include <coproc/detail/async_support.hpp>

namespace coproc::detail {

using connect_signature = void(boost::system::error_code, connection);
using connect_handler = boost::asio::any_completion_handler<connect_signature>;

// Checks misuse ("listener is closed") so that it throws from the initiating call.
std::shared_ptr<listener_state> prepare_accept(const listener& l);
void start_async_accept(std::shared_ptr<listener_state> state, boost::asio::any_io_executor io,
                        connect_handler handler);
// `io`: the reactor's executor (empty: coproc's I/O thread).
void start_async_client(const address& where, std::optional<bytes> authkey,
                        std::chrono::nanoseconds handshake_timeout,
                        boost::asio::any_io_executor io, connect_handler handler);

struct initiate_accept {
  template <class Handler>
  void operator()(Handler&& handler, std::shared_ptr<listener_state> state) const {
    auto io = io_executor_of(boost::asio::get_associated_executor(handler));
    start_async_accept(std::move(state), std::move(io),
                       connect_handler(std::forward<Handler>(handler)));
  }
};

// The handler runs on its associated executor, `ex` when it has none of its own; the waits
// go to `ex`'s reactor.
template <class Executor>
struct initiate_client {
  Executor ex;
  template <class Handler>
  void operator()(Handler&& handler, const address& where, std::optional<bytes> authkey,
                  std::chrono::nanoseconds timeout) const {
    auto completion = boost::asio::get_associated_executor(handler, ex);
    start_async_client(where, std::move(authkey), timeout, io_executor_of(ex),
                       connect_handler(boost::asio::bind_executor(
                           std::move(completion), std::forward<Handler>(handler))));
  }
};

}  // namespace coproc::detail

namespace coproc {

template <class Token>
auto listener::async_accept(Token&& token) {
  auto state = detail::prepare_accept(*this);
  return boost::asio::async_initiate<Token, detail::connect_signature>(
      detail::initiate_accept{}, token, std::move(state));
}

template <detail::asio_executor Executor, class Token>
auto async_client(Executor ex, const address& where, std::optional<bytes> authkey,
                  std::chrono::nanoseconds handshake_timeout, Token&& token) {
  if (handshake_timeout <= std::chrono::nanoseconds::zero())
    throw std::invalid_argument("the handshake timeout must be positive");
  // Deferred tokens (use_awaitable, deferred) keep a copy of the arguments.
  return boost::asio::async_initiate<Token, detail::connect_signature>(
      detail::initiate_client<Executor>{std::move(ex)}, token, where, std::move(authkey),
      handshake_timeout);
}

template <detail::asio_executor Executor, class Token>
auto async_client(Executor ex, const address& where, std::optional<bytes> authkey,
                  Token&& token) {
  return async_client(std::move(ex), where, std::move(authkey),
                      std::chrono::nanoseconds(default_handshake_timeout),
                      std::forward<Token>(token));
}

}  // namespace coproc
