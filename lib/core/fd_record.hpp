// coproc internals: the record of the descriptors that are coproc's own, which every child it
// starts closes before its target runs.
#pragma once

#include "core/private.hpp"

#include <span>

namespace coproc::detail::fds {

// Both need the shared fork lock (or the exclusive one).
void record(int fd) noexcept;
void forget(int fd) noexcept;

// In a freshly forked child: closes every recorded descriptor except `keep`, then records only
// `keep`. Lock-free and allocation-free.
void close_recorded_in_child(std::span<const int> keep) noexcept;

}  // namespace coproc::detail::fds
