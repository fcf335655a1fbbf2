// coproc internals: a pool worker's side. It reads requests, calls the function each names and
// answers with the outcome, until its socket ends (close, or the pool's process is gone) or it
// has run maxtasksperchild messages.
//
// A reply's head: 'v' (the value's JSON follows), 'e' (an exception: {"type","message"}) or 'i'
// (the initializer threw; the worker then ends), then the task's user and system CPU time in
// microseconds and the worker's peak RSS in KiB (8 bytes each).
#pragma once

#include "core/private.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <coproc/connection.hpp>

namespace coproc::detail {

inline constexpr std::size_t pool_reply_head = 25;

// `init`, when set, runs first (fork); else `init_key` names a registered initializer.
void serve_pool(connection& channel, const std::function<void()>* init, std::string_view init_key,
                std::uint64_t maxtasks, std::chrono::microseconds spin);

// The worker's registered entry, for spawn and forkserver.
void pool_worker(connection channel, std::string init_key, std::uint64_t maxtasks,
                 std::int64_t spin_us);

}  // namespace coproc::detail
