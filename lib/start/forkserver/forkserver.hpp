// coproc internals: the forkserver start method (start/forkserver/client.cpp).
#pragma once

#include "core/private.hpp"

#include <sys/types.h>

#include <optional>

namespace coproc::detail {

// The server's main, entered from init() in a program started with forkserver_flag. Never
// returns.
[[noreturn]] void forkserver_main();

// This process's server while it runs (testing::forkserver_pid).
std::optional<pid_t> forkserver_pid();

}  // namespace coproc::detail
