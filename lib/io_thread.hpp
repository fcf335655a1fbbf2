// coproc internals: where asynchronous waits are registered.
#pragma once

#ifndef COPROC_BUILDING
#error "lib/ headers are private to the coproc library"
#endif

#include <boost/asio/any_io_executor.hpp>

namespace coproc::detail {

// The executor whose reactor watches a wait: the handler's own when its context runs a
// scheduler (io_context, thread_pool), coproc's I/O thread otherwise (the system executor:
// plain callbacks, use_future).
boost::asio::any_io_executor reactor_for(boost::asio::any_io_executor handler_io);

}  // namespace coproc::detail
