// Free functions, start-method settings, error types and test hooks.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include <coproc/bytes.hpp>
#include <coproc/error.hpp>
#include <coproc/start_method.hpp>
#include <coproc/testing.hpp>

#include "runtime.hpp"

namespace coproc {

bytes as_bytes(std::string_view text) {
  bytes out(text.size());
  if (!text.empty()) std::memcpy(out.data(), text.data(), text.size());
  return out;
}

buffer_too_short::buffer_too_short(bytes message)
    : process_error("message of " + std::to_string(message.size()) +
                    " bytes is too long for the buffer"),
      message_(std::move(message)) {}

void exit(int code) {
  code &= 0xFF;
  auto& r = detail::rt();
  if (r.in_child) {
    if (std::this_thread::get_id() == r.bootstrap_thread) throw system_exit{code};
    detail::finish_child(code);
  }
  std::exit(code);
}

namespace {
std::atomic<start_method> default_method{start_method::fork};
}

void set_start_method(start_method method) { default_method = method; }
start_method get_start_method() { return default_method; }

std::string_view to_string(start_method method) {
  switch (method) {
    case start_method::fork:
      return "fork";
    case start_method::spawn:
      return "spawn";
    case start_method::forkserver:
      return "forkserver";
  }
  return "unknown";
}

namespace detail {
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
}  // namespace detail

void init(int, char**) {
  (void)detail::rt();  // the module state exists before any thread is started
}

namespace testing {
void force_pipe_sentinel(bool on) { detail::force_pipe(on); }
bool pidfd_sentinels() { return detail::use_pidfd(); }
}  // namespace testing

}  // namespace coproc
