// coproc internals: Python's authentication handshake (multiprocessing.connection's
// deliver_challenge / answer_challenge), 3.11 and 3.12+, as pure code over byte spans.
//
// Nothing here does I/O: the functions take and return bytes, and `handshake` is a state
// machine that says what to send and what it expects to receive. The blocking and the
// asynchronous drivers (connection/handshake.hpp) move its messages; a fuzzer drives it
// directly. The cryptography is OpenSSL's (HMAC, RAND_bytes, CRYPTO_memcmp).
//
// The protocol (docs/connections.md, "Authentication"; every arrow one framed message of at
// most 256 bytes):
//
//   deliverer                                   answerer
//   "#CHALLENGE#" "{sha256}" 40 random bytes  ─►  checks the tag; answers with HMAC over
//                                                 everything after the tag:
//                                                 "{name}" digest, or a raw HMAC-MD5 when
//                                                 the rest is 20 bytes long (Python <= 3.11)
//   verifies (a 16-byte answer is a raw MD5) ◄─
//   "#WELCOME#" or "#FAILURE#"               ─►   anything but "#WELCOME#": rejected
//
// A listener delivers then answers; a client answers then delivers (mutual authentication).
#pragma once

#include "core/private.hpp"

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <coproc/bytes.hpp>

namespace coproc::detail::auth {

inline constexpr std::size_t max_message = 256;           // every handshake receive
inline constexpr std::size_t random_length = 40;          // Python 3.12+'s MESSAGE_LENGTH
inline constexpr std::size_t legacy_random_length = 20;   // Python <= 3.11's
inline constexpr std::size_t md5_length = 16;
inline constexpr std::string_view challenge_tag = "#CHALLENGE#";
inline constexpr std::string_view welcome = "#WELCOME#";
inline constexpr std::string_view failure = "#FAILURE#";

// Python's repr() of a bytes object: b'...' with its escapes (for the error texts).
std::string python_repr(std::span<const std::byte> b);

// HMAC-`digest` of `data` under `key`: "md5", "sha256", "sha384", "sha3_256", "sha3_384".
// nullopt when the digest is not one of these or OpenSSL refuses it (MD5 under FIPS).
std::optional<bytes> hmac(std::string_view digest, std::span<const std::byte> key,
                          std::span<const std::byte> data);

// A challenge message: "#CHALLENGE#" + "{digest}" + random. An empty digest gives the form of
// Python <= 3.11: "#CHALLENGE#" + random (20 bytes there).
bytes build_challenge(std::span<const std::byte> random, std::string_view digest = "sha256");
// The challenge coproc delivers: "{sha256}" and 40 bytes from RAND_bytes. Throws
// std::runtime_error when OpenSSL has no randomness.
bytes make_challenge();

// Python's _create_response: the answer to `message`, what followed "#CHALLENGE#". Throws
// authentication_error ("unsupported message length, missing digest prefix, or unsupported
// digest: message=b'...'").
bytes create_response(std::span<const std::byte> key, std::span<const std::byte> message);
// Python's answer_challenge up to the answer: `received` is the whole challenge message.
// Throws authentication_error: "Protocol error, expected challenge: message=b'...'",
// "challenge too short: N bytes", or create_response's.
bytes answer(std::span<const std::byte> key, std::span<const std::byte> received);
// Python's _verify_challenge: `message` is what followed "#CHALLENGE#" in the challenge we
// sent, `response` the answer. Compares in constant time (CRYPTO_memcmp). Throws
// authentication_error: "digest received was wrong", "expected 'sha256' of length 32 got N",
// "response_digest='md5' unsupported", or the unsupported-prefix text.
void verify_response(std::span<const std::byte> key, std::span<const std::byte> message,
                     std::span<const std::byte> response);
// The answerer's last step: anything but "#WELCOME#" throws authentication_error("digest sent
// was rejected").
void check_welcome(std::span<const std::byte> received);

// The whole exchange of one side, message by message.
class handshake {
 public:
  enum class role {
    deliver,   // deliver_challenge alone
    answer,    // answer_challenge alone
    listener,  // deliver, then answer (Listener.accept)
    client,    // answer, then deliver (Client)
  };
  enum class want { send, receive, done, failed };

  // The challenge this side delivers is make_challenge()'s.
  handshake(role r, std::span<const std::byte> key);
  // ... or `challenge`, a whole challenge message (tests, fuzzers; build_challenge()).
  handshake(role r, std::span<const std::byte> key, bytes challenge);

  want next() const noexcept { return want_; }
  // want::send: the message to send; then sent().
  std::span<const std::byte> outgoing() const noexcept { return out_; }
  void sent();
  // want::receive: a whole message (the driver receives at most max_message bytes).
  void received(std::span<const std::byte> message);
  // want::failed: Python's AuthenticationError text.
  const std::string& error() const noexcept { return error_; }

 private:
  enum class step { deliver_challenge, deliver_verify, deliver_verdict,
                    answer_challenge, answer_response, answer_verdict, finished };
  void enter(step s);
  void after(step s);  // what follows `s` for this role

  role role_;
  bytes key_;
  bytes challenge_;  // the whole message this side delivers
  step step_ = step::finished;
  want want_ = want::done;
  bytes out_;
  std::string error_;
  bool failing_ = false;  // "#FAILURE#" goes out, then the handshake fails
};

}  // namespace coproc::detail::auth
