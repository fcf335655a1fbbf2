// The registry of targets that spawn and forkserver children find by name (COPROC_TARGET).
#include <atomic>
#include <charconv>
#include <string>
#include <string_view>

#include <coproc/start_method.hpp>

namespace coproc::detail {

namespace {
// Entries are linked by their static constructors, newest first; lookups walk from the head.
// Registration normally happens before main on one thread, but a shared library loaded later
// registers while other threads may look: the head is published with release/acquire and an
// entry is complete before it is published.
std::atomic<registered_target*> head{nullptr};

// The k of "name#k": how many entries under the same name were registered before `entry`
// (walking newest first, those that come after it in the list).
std::size_t ordinal(const registered_target& entry) noexcept {
  std::size_t k = 0;
  for (const registered_target* e = entry.next; e; e = e->next)
    if (std::string_view(e->name) == entry.name) ++k;
  return k;
}
}  // namespace

void register_target(registered_target& entry) noexcept {
  registered_target* h = head.load(std::memory_order_relaxed);
  do {
    entry.next = h;
  } while (!head.compare_exchange_weak(h, &entry, std::memory_order_release,
                                       std::memory_order_relaxed));
}

const registered_target* find_target(const void* address) noexcept {
  for (const registered_target* e = head.load(std::memory_order_acquire); e; e = e->next)
    if (e->address == address) return e;
  return nullptr;
}

std::string target_key(const registered_target& entry) {
  const std::size_t k = ordinal(entry);
  return k == 0 ? std::string(entry.name) : std::string(entry.name) + "#" + std::to_string(k);
}

const registered_target* find_target(std::string_view key) noexcept {
  std::string_view name = key;
  std::size_t k = 0;
  if (const auto hash = key.find('#'); hash != std::string_view::npos) {
    name = key.substr(0, hash);
    const std::string_view digits = key.substr(hash + 1);
    if (std::from_chars(digits.data(), digits.data() + digits.size(), k).ec != std::errc{})
      return nullptr;
  }
  // Oldest first is the order of registration: collect the matches, newest first, and count
  // from the end.
  std::size_t matches = 0;
  for (const registered_target* e = head.load(std::memory_order_acquire); e; e = e->next)
    if (std::string_view(e->name) == name) ++matches;
  if (k >= matches) return nullptr;
  std::size_t from_newest = matches - 1 - k;
  for (const registered_target* e = head.load(std::memory_order_acquire); e; e = e->next)
    if (std::string_view(e->name) == name && from_newest-- == 0) return e;
  return nullptr;
}

const char* registered_name(const void* address) noexcept {
  const registered_target* e = find_target(address);
  return e ? e->name : nullptr;
}

}  // namespace coproc::detail
