#include "pool/worker.hpp"

#include <sys/resource.h>

#include <array>
#include <cstring>
#include <stdexcept>

#include <coproc/apply_async.hpp>
#include <coproc/detail/pool_core.hpp>
#include <coproc/detail/registered.hpp>

#include "pool/wire.hpp"
#include "remote_exception.hpp"

namespace coproc::detail {

namespace {

std::uint64_t micros(const timeval& t) {
  return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000u + static_cast<std::uint64_t>(t.tv_usec);
}

void put64(std::byte* p, std::uint64_t v) { std::memcpy(p, &v, sizeof v); }

// The head of a reply of `kind`, with what the task cost since `before`.
std::array<std::byte, pool_reply_head> reply_head(char kind, const rusage& before) {
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  std::array<std::byte, pool_reply_head> h{};
  h[0] = static_cast<std::byte>(kind);
  put64(h.data() + 1, micros(after.ru_utime) - micros(before.ru_utime));
  put64(h.data() + 9, micros(after.ru_stime) - micros(before.ru_stime));
  put64(h.data() + 17, static_cast<std::uint64_t>(after.ru_maxrss));
  return h;
}

// A registered function by key, remembered: a worker runs the same few functions many times.
const registered_target& target_by_key(std::string_view key) {
  static std::string last_key;
  static const registered_target* last = nullptr;
  if (last && key == last_key) return *last;
  const registered_target* t = find_target(key);
  if (!t || !t->invoke_many)
    throw std::logic_error("pool worker: no function is registered as '" + std::string(key) + "'");
  last_key.assign(key);
  last = t;
  return *t;
}

}  // namespace

void serve_pool(connection& channel, const std::function<void()>* init, std::string_view init_key,
                std::uint64_t maxtasks, std::chrono::microseconds spin) {
  const int fd = channel.fileno();
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  try {
    if (init && *init) {
      (*init)();
    } else if (!init_key.empty()) {
      const registered_target* t = find_target(init_key);
      if (!t) throw std::logic_error("no initializer is registered as '" + std::string(init_key) + "'");
      const auto none = as_bytes("[]");
      t->invoke(t->address, none);
    }
  } catch (...) {
    if (exception_ends_child()) throw;
    const bytes body = current_exception_text();
    try {
      pool_wire::send(fd, reply_head('i', before), body);
    } catch (const std::system_error&) {
    }
    return;
  }

  bytes in;
  std::uint64_t done = 0;
  bool served = false;
  for (;;) {
    // Poll only right after a reply: the next request of a busy caller is then a read away,
    // and a worker that has been idle for `spin` sleeps.
    const auto g = pool_wire::receive(fd, in, served ? spin : std::chrono::microseconds(0));
    if (g != pool_wire::got::frame) return;  // the pool closed it, or is gone
    ::getrusage(RUSAGE_SELF, &before);
    char kind = 'v';
    bytes body;
    try {
      if (in.size() < 2) throw std::logic_error("pool worker: a malformed request");
      const bool chunk = in[0] == std::byte{'m'};
      std::size_t at = 2;
      pool_function::invoker call = nullptr;
      const void* address = nullptr;
      if (in[1] == std::byte{'p'}) {
        // A fork worker is a copy of this program image: the addresses are the parent's.
        if (in.size() < 26) throw std::logic_error("pool worker: a malformed request");
        std::uintptr_t fn_one, fn_many, fn_addr;
        std::memcpy(&fn_one, in.data() + 2, 8);
        std::memcpy(&fn_many, in.data() + 10, 8);
        std::memcpy(&fn_addr, in.data() + 18, 8);
        at = 26;
        call = reinterpret_cast<pool_function::invoker>(chunk ? fn_many : fn_one);
        address = reinterpret_cast<const void*>(fn_addr);
      } else {
        if (in.size() < 4) throw std::logic_error("pool worker: a malformed request");
        std::uint16_t n;
        std::memcpy(&n, in.data() + 2, 2);
        const std::string_view key(reinterpret_cast<const char*>(in.data()) + 4, n);
        const registered_target& t = target_by_key(key);
        call = chunk ? t.invoke_many : t.invoke_result;
        address = t.address;
        at = 4 + n;
      }
      body = call(address, std::span<const std::byte>(in).subspan(at));
    } catch (...) {
      if (exception_ends_child()) throw;
      kind = 'e';
      body = current_exception_text();
    }
    try {
      pool_wire::send(fd, reply_head(kind, before), body);
    } catch (const std::system_error&) {
      return;  // the pool is gone
    }
    served = true;
    if (maxtasks && ++done >= maxtasks) return;
  }
}

void pool_worker(connection channel, std::string init_key, std::uint64_t maxtasks,
                 std::int64_t spin_us) {
  serve_pool(channel, nullptr, init_key, maxtasks, std::chrono::microseconds(spin_us));
}
COPROC_TARGET(pool_worker);

}  // namespace coproc::detail
