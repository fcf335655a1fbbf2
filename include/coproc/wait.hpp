// coproc: waiting for the first of several objects (Python's multiprocessing.connection.wait).
#pragma once

#include <chrono>
#include <optional>
#include <variant>
#include <vector>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/error_code.hpp>

#include <coproc/detail/duration.hpp>
#include <coproc/process.hpp>

namespace coproc {

class connection;

/// What wait() watches: a connection (readable, or end of stream), a process (its sentinel:
/// the child ended) or a raw file descriptor (readable, hung up, or invalid).
using waitable = std::variant<connection*, process*, int>;

/// Waits until at least one object is ready and returns the ready ones, in the order given.
/// No timeout blocks; a zero or negative one polls once; on timeout the result is empty.
/// Nothing is read or reaped. A process that is not started is misuse ("process not started").
std::vector<waitable> wait(std::vector<waitable> objects,
                           std::optional<std::chrono::nanoseconds> timeout = {});

template <class Rep, class Period>
std::vector<waitable> wait(std::vector<waitable> objects,
                           std::chrono::duration<Rep, Period> timeout) {
  const auto ns = detail::saturating_ns(timeout);
  return wait(std::move(objects),
              ns == std::chrono::nanoseconds::max() ? std::nullopt : std::optional(ns));
}

namespace detail {
using wait_signature = void(boost::system::error_code, std::vector<waitable>);
using wait_handler = boost::asio::any_completion_handler<wait_signature>;

void start_async_wait(std::vector<waitable> objects, boost::asio::any_io_executor io,
                      std::optional<std::chrono::nanoseconds> timeout, wait_handler handler);
// Checks misuse at initiation and turns the objects into descriptors.
std::vector<waitable> prepare_wait(std::vector<waitable> objects);

struct initiate_wait {
  template <class Handler>
  void operator()(Handler&& handler, std::vector<waitable> objects,
                  std::optional<std::chrono::nanoseconds> timeout) const {
    auto io = io_executor_of(boost::asio::get_associated_executor(handler));
    start_async_wait(std::move(objects), std::move(io), timeout,
                     wait_handler(std::forward<Handler>(handler)));
  }
};
}  // namespace detail

/// Waits asynchronously until at least one object is ready.
///
/// @par Completion Signature
/// `void(boost::system::error_code, std::vector<waitable> ready)`
///
/// @par Per-Operation Cancellation
/// terminal, partial and total; completes with operation_aborted. Never completes inside this
/// call; misuse throws from here.
template <class Token>
auto async_wait(std::vector<waitable> objects, Token&& token) {
  auto checked = detail::prepare_wait(std::move(objects));
  return boost::asio::async_initiate<Token, detail::wait_signature>(
      detail::initiate_wait{}, token, std::move(checked),
      std::optional<std::chrono::nanoseconds>{});
}

/// As above, completing with an empty vector once `timeout` passed (a zero or negative
/// timeout polls).
template <class Rep, class Period, class Token>
auto async_wait(std::vector<waitable> objects, std::chrono::duration<Rep, Period> timeout,
                Token&& token) {
  auto checked = detail::prepare_wait(std::move(objects));
  const auto ns = detail::saturating_ns(timeout);
  return boost::asio::async_initiate<Token, detail::wait_signature>(
      detail::initiate_wait{}, token, std::move(checked),
      ns == std::chrono::nanoseconds::max() ? std::nullopt : std::optional(ns));
}

}  // namespace coproc
