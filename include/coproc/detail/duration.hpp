// coproc internals: turning any std::chrono::duration into a timeout without overflow.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <ratio>
#include <type_traits>

namespace coproc::detail {

// Saturates into nanoseconds: anything at or beyond nanoseconds::max() means "no limit",
// anything at or below zero (NaN included) means "poll once". Callers treat max() as forever.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds saturating_ns(std::chrono::duration<Rep, Period> d) {
  using std::chrono::nanoseconds;
  if constexpr (std::chrono::treat_as_floating_point_v<Rep>) {
    const long double ns = static_cast<long double>(d.count()) * Period::num * 1e9L / Period::den;
    if (!(ns > 0)) return nanoseconds{0};  // also NaN
    if (ns >= static_cast<long double>(nanoseconds::max().count())) return nanoseconds::max();
    return nanoseconds{static_cast<nanoseconds::rep>(ns)};
  } else {
    if (d.count() <= 0) return nanoseconds{0};
    if constexpr (std::ratio_less_equal_v<Period, std::nano>) {
      // Finer than (or equal to) a nanosecond: converting shrinks the number, no overflow.
      return std::chrono::duration_cast<nanoseconds>(d);
    } else {
      // Coarser: compare in the caller's unit (widened to intmax_t, whatever Rep is) first,
      // so the conversion to nanoseconds cannot overflow.
      using wide = std::chrono::duration<std::intmax_t, Period>;
      constexpr wide limit = std::chrono::duration_cast<wide>(nanoseconds::max());
      if constexpr (std::is_unsigned_v<Rep>) {
        if (d.count() >= static_cast<std::uintmax_t>(limit.count())) return nanoseconds::max();
      }
      const wide w{static_cast<std::intmax_t>(d.count())};
      if (w >= limit) return nanoseconds::max();
      return std::chrono::duration_cast<nanoseconds>(w);
    }
  }
}

// The moment `timeout` (from saturating_ns) ends; nullopt for "no limit" (max, or beyond what
// the clock can hold).
inline std::optional<std::chrono::steady_clock::time_point> deadline_after(
    std::chrono::nanoseconds timeout) {
  using clock = std::chrono::steady_clock;
  if (timeout == std::chrono::nanoseconds::max()) return std::nullopt;
  const auto now = clock::now();
  if (timeout > clock::time_point::max() - now) return std::nullopt;
  return now + std::chrono::duration_cast<clock::duration>(timeout);
}

}  // namespace coproc::detail
