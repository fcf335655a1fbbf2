// Free functions, start-method settings, error types and test hooks.
#include <unistd.h>

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

void init(int, char**) {
  (void)detail::rt();  // the module state exists before any thread is started
}

namespace testing {
void force_pipe_sentinel(bool on) { detail::force_pipe(on); }
bool pidfd_sentinels() { return detail::use_pidfd(); }
}  // namespace testing

}  // namespace coproc
