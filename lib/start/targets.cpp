// The registry of targets that spawn and forkserver children find by name (COPROC_TARGET).
#include <algorithm>
#include <atomic>
#include <cstddef>

#include <coproc/start_method.hpp>

namespace coproc::detail {

namespace {
struct target_entry {
  const char* name;
  const void* address;
};
// Filled by static initialisers (before main, one thread), read later: a fixed array needs no
// allocation during static initialisation and no lock afterwards.
constexpr std::size_t max_targets = 1024;
target_entry targets[max_targets];
std::atomic<std::size_t> target_count{0};
}  // namespace

void register_target(const char* name, const void* address) noexcept {
  const std::size_t i = target_count.fetch_add(1);
  if (i < max_targets) targets[i] = {name, address};
}

const char* registered_name(const void* address) noexcept {
  const std::size_t n = std::min(target_count.load(), max_targets);
  for (std::size_t i = 0; i < n; ++i)
    if (targets[i].address == address) return targets[i].name;
  return nullptr;
}

}  // namespace coproc::detail
