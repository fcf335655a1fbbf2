// PLACEHOLDER until the typed-message layer lands (helper-4 writes the real one): lets the
// connection core compile. Replace wholesale.
#pragma once

#include <span>

#include <coproc/bytes.hpp>

namespace coproc::detail {
template <class T>
bytes to_message(const T&);
template <class T>
T from_message(std::span<const std::byte>);
}  // namespace coproc::detail
