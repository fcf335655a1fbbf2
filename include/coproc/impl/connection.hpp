// coproc: template bodies of connection's asynchronous operations. Included by connection.hpp.
//
// As for process::async_join, the templates only adapt the completion token; the operations
// live in the compiled library.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <utility>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <coproc/detail/async_support.hpp>

namespace coproc::detail {

using send_signature = void(boost::system::error_code, std::size_t);
using recv_signature = void(boost::system::error_code, bytes);
using recv_into_signature = void(boost::system::error_code, std::size_t);

// Check misuse (closed, wrong direction, another operation in progress) and return the state,
// so that misuse throws from the initiating call.
std::shared_ptr<connection_state> prepare_send(const connection& c);
std::shared_ptr<connection_state> prepare_recv(const connection& c);

// `message` is either owned (typed messages) or the caller's span (async_send_bytes).
void start_async_send(std::shared_ptr<connection_state> state, boost::asio::any_io_executor io,
                      std::span<const std::byte> message, std::shared_ptr<const bytes> owned,
                      boost::asio::any_completion_handler<send_signature> handler);
void start_async_recv(std::shared_ptr<connection_state> state, boost::asio::any_io_executor io,
                      boost::asio::any_completion_handler<recv_signature> handler);
void start_async_recv_into(std::shared_ptr<connection_state> state,
                           boost::asio::any_io_executor io, std::span<std::byte> buf,
                           boost::asio::any_completion_handler<recv_into_signature> handler);

// void(error_code, T) seen as void(error_code, bytes): the message is converted on the way to
// the handler. A message that does not convert completes with errc::bad_message and a
// default-constructed T (the message is consumed; the connection stays usable).
template <class T, class Handler>
auto convert_received(Handler&& h) {
  return adapt_handler(std::forward<Handler>(h), [](auto handler, boost::system::error_code ec,
                                                    bytes message) {
    if (ec) return std::move(handler)(ec, T{});
    std::optional<T> value;
    try {
      value.emplace(from_message<T>(message));
    } catch (const message_error&) {
      return std::move(handler)(make_error_code(boost::system::errc::bad_message), T{});
    }
    std::move(handler)(ec, std::move(*value));
  });
}

struct initiate_send {
  template <class Handler>
  void operator()(Handler&& handler, std::shared_ptr<connection_state> state,
                  std::span<const std::byte> message, std::shared_ptr<const bytes> owned) const {
    auto io = io_executor_of(boost::asio::get_associated_executor(handler));
    start_async_send(std::move(state), std::move(io), message, std::move(owned),
                     boost::asio::any_completion_handler<send_signature>(
                         std::forward<Handler>(handler)));
  }
};

struct initiate_recv {
  template <class Handler>
  void operator()(Handler&& handler, std::shared_ptr<connection_state> state) const {
    auto io = io_executor_of(boost::asio::get_associated_executor(handler));
    start_async_recv(std::move(state), std::move(io),
                     boost::asio::any_completion_handler<recv_signature>(
                         std::forward<Handler>(handler)));
  }
};

struct initiate_recv_into {
  template <class Handler>
  void operator()(Handler&& handler, std::shared_ptr<connection_state> state,
                  std::span<std::byte> buf) const {
    auto io = io_executor_of(boost::asio::get_associated_executor(handler));
    start_async_recv_into(std::move(state), std::move(io), buf,
                          boost::asio::any_completion_handler<recv_into_signature>(
                              std::forward<Handler>(handler)));
  }
};

}  // namespace coproc::detail

namespace coproc {

template <class Token>
auto connection::async_send_bytes(std::span<const std::byte> buf, Token&& token) {
  auto state = detail::prepare_send(*this);
  return boost::asio::async_initiate<Token, detail::send_signature>(
      detail::initiate_send{}, token, std::move(state), buf, std::shared_ptr<const bytes>());
}

template <class Token>
auto connection::async_recv_bytes(Token&& token) {
  auto state = detail::prepare_recv(*this);
  return boost::asio::async_initiate<Token, detail::recv_signature>(detail::initiate_recv{},
                                                                     token, std::move(state));
}

template <class Token>
auto connection::async_recv_bytes_into(std::span<std::byte> buf, Token&& token) {
  auto state = detail::prepare_recv(*this);
  return boost::asio::async_initiate<Token, detail::recv_into_signature>(
      detail::initiate_recv_into{}, token, std::move(state), buf);
}

// Typed messages: the value is converted at initiation (a value that does not convert throws
// message_error from here); the message travels owned by the operation.
template <class T, class Token>
auto connection::async_send(const T& value, Token&& token) {
  auto state = detail::prepare_send(*this);
  auto owned = std::make_shared<const bytes>(detail::to_message(value));
  std::span<const std::byte> message(*owned);
  return boost::asio::async_initiate<Token, void(boost::system::error_code)>(
      [](auto handler, std::shared_ptr<detail::connection_state> st,
         std::span<const std::byte> m, std::shared_ptr<const bytes> o) {
        detail::initiate_send{}(
            detail::drop_size(std::move(handler)), std::move(st), m, std::move(o));
      },
      token, std::move(state), message, std::move(owned));
}

// A message that does not convert completes with errc::bad_message (consumed; the connection
// stays usable). T must be default-constructible: the handler receives a T with every error.
template <class T, class Token>
auto connection::async_recv(Token&& token) {
  auto state = detail::prepare_recv(*this);
  return boost::asio::async_initiate<Token, void(boost::system::error_code, T)>(
      [](auto handler, std::shared_ptr<detail::connection_state> st) {
        detail::initiate_recv{}(detail::convert_received<T>(std::move(handler)), std::move(st));
      },
      token, std::move(state));
}

}  // namespace coproc
