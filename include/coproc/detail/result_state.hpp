// coproc internals: what an async_result waits on. A call has one outcome (a value as JSON
// text, or a failure); where it comes from is the state's business: a child per call
// (apply_async) or a message to a pool worker (pool::apply_async, map_async).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/system/error_code.hpp>

namespace coproc {
struct exit_status;
}

namespace coproc::detail {

class result_state {
 public:
  virtual ~result_state() = default;
  // Blocks until the outcome is known or the deadline passed; true when known.
  virtual bool wait(std::optional<std::chrono::steady_clock::time_point> deadline) = 0;
  virtual bool ready() = 0;
  // After wait(): the result's JSON text, or throws the failure (remote_error, process_error,
  // timeout_error).
  virtual std::span<const std::byte> value() const = 0;
  // Completes with the outcome: no error (value() then has the result), or the failure's code;
  // boost::asio::error::timed_out when `timeout` passed first (the call goes on).
  virtual void async_wait(
      boost::asio::any_io_executor io, std::optional<std::chrono::nanoseconds> timeout,
      boost::asio::any_completion_handler<void(boost::system::error_code)> handler) = 0;
  // What the kernel measured for the call (its child's, or its worker's for this task), once
  // ready; nullopt when not measured.
  virtual std::optional<exit_status> status() const = 0;
};

}  // namespace coproc::detail
