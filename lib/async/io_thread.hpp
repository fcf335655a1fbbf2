// coproc internals: where asynchronous waits are registered.
#pragma once

#include "core/private.hpp"

#include <boost/asio/any_io_executor.hpp>

namespace coproc::detail {

struct reactor {
  boost::asio::any_io_executor executor;  // the context's own executor (not a strand of it)
  const void* key;                        // the execution context: one watch per child here
};

// The reactor that watches a wait whose handler has executor `handler_io`: that executor's
// context when it runs a scheduler (io_context, thread_pool), coproc's own I/O thread otherwise
// (the system executor: plain callbacks, use_future). Throws std::system_error when the I/O
// thread cannot start; there is then no executor to report the error on.
reactor reactor_for(const boost::asio::any_io_executor& handler_io);

}  // namespace coproc::detail
