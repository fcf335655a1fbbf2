// coproc internals: pieces shared by the asynchronous operations (join, wait).
#pragma once

#ifndef COPROC_BUILDING
#error "lib/ headers are private to the coproc library"
#endif

#include <memory>
#include <system_error>
#include <utility>

#include <boost/asio/cancellation_type.hpp>
#include <boost/system/error_code.hpp>

namespace coproc::detail {

// The slot handler of an operation whose waiting has no side effects to undo: every kind of
// cancellation (terminal, partial, total) may stop it. It holds the operation weakly: a signal
// emitted after the operation completed finds nothing to cancel.
template <class Op>
struct cancel_any_type {
  explicit cancel_any_type(std::weak_ptr<Op> p) : op(std::move(p)) {}
  std::weak_ptr<Op> op;
  void operator()(boost::asio::cancellation_type type) const {
    using boost::asio::cancellation_type;
    if ((type & (cancellation_type::terminal | cancellation_type::partial |
                 cancellation_type::total)) == cancellation_type::none)
      return;
    if (auto p = op.lock()) p->cancel();
  }
};

// What an operation's handler receives for a failed system call.
inline boost::system::error_code to_error_code(const std::system_error& e) {
  return {e.code().value(), boost::system::generic_category()};
}

}  // namespace coproc::detail
