// libFuzzer target: both sides of the authentication handshake on hostile messages
// (tools/fuzz.sh builds and runs it).
//
// The input is a key length, then messages as a peer could send them (each a length byte and
// that many bytes). Every role's state machine must end in done or failed, never crash, never
// read past a message, and fail with a message whenever it does.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <stdexcept>

#include <coproc/error.hpp>

#include "connection/auth.hpp"

namespace auth = coproc::detail::auth;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t key_length = data[0] % 64;
  const auto role = static_cast<auth::handshake::role>(data[1] % 4);
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data) + 2, size - 2);
  if (in.size() < key_length) return 0;
  const auto key = in.first(key_length);
  in = in.subspan(key_length);

  // A fixed challenge keeps runs reproducible (make_challenge() would draw random bytes).
  std::byte random[auth::random_length] = {};
  auth::handshake hs(role, key, auth::build_challenge(random));
  for (int steps = 0; steps < 16; ++steps) {
    switch (hs.next()) {
      case auth::handshake::want::send:
        if (hs.outgoing().size() > auth::max_message) std::abort();
        hs.sent();
        continue;
      case auth::handshake::want::receive: {
        if (in.empty()) return 0;
        const std::size_t n = std::min<std::size_t>(std::to_integer<std::size_t>(in[0]), in.size() - 1);
        const auto message = in.subspan(1, n);
        in = in.subspan(1 + n);
        try {
          hs.received(message);
        } catch (const coproc::authentication_error&) {
          return 0;
        }
        continue;
      }
      case auth::handshake::want::failed:
        if (hs.error().empty()) std::abort();
        return 0;
      case auth::handshake::want::done:
        return 0;
    }
  }
  std::abort();  // a handshake has at most six steps
}
