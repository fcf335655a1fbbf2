// Python's authentication handshake, rule by rule (Lib/multiprocessing/connection.py of 3.13;
// the 3.11 form is what a 20-byte challenge and a 16-byte answer stand for).
#include "connection/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <coproc/error.hpp>

namespace coproc::detail::auth {

namespace {

constexpr std::size_t max_digest_name = 8;  // "sha3_256": Python's _MAX_DIGEST_LEN

std::span<const std::byte> view(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

bool starts_with(std::span<const std::byte> b, std::string_view prefix) noexcept {
  return b.size() >= prefix.size() &&
         std::memcmp(b.data(), prefix.data(), prefix.size()) == 0;
}

bool equals(std::span<const std::byte> b, std::string_view s) noexcept {
  return b.size() == s.size() && starts_with(b, s);
}

void append(bytes& out, std::span<const std::byte> b) { out.insert(out.end(), b.begin(), b.end()); }
void append(bytes& out, std::string_view s) { append(out, view(s)); }

const EVP_MD* digest_by_name(std::string_view name) noexcept {
  if (name == "md5") return EVP_md5();
  if (name == "sha256") return EVP_sha256();
  if (name == "sha384") return EVP_sha384();
  if (name == "sha3_256") return EVP_sha3_256();
  if (name == "sha3_384") return EVP_sha3_384();
  return nullptr;
}

bool allowed(std::string_view name) noexcept { return digest_by_name(name) != nullptr; }

// Python's _get_digest_name_and_payload: a 16- or 20-byte message is the legacy form (no
// name: HMAC-MD5, unprefixed); anything else must start with "{name}", the closing brace
// within the first ten bytes and the name allowed.
std::pair<std::string, std::span<const std::byte>> digest_name_and_payload(
    std::span<const std::byte> message) {
  if (message.size() == legacy_random_length || message.size() == md5_length)
    return {std::string(), message};
  if (!message.empty() && message[0] == std::byte{'{'}) {
    const std::size_t end = std::min(message.size(), max_digest_name + 2);
    for (std::size_t i = 1; i < end; ++i) {
      if (message[i] != std::byte{'}'}) continue;
      const std::string name(reinterpret_cast<const char*>(message.data()) + 1, i - 1);
      if (allowed(name)) return {name, message.subspan(i + 1)};
      break;
    }
  }
  throw authentication_error(
      "unsupported message length, missing digest prefix, or unsupported digest: message=" +
      python_repr(message));
}

}  // namespace

std::string python_repr(std::span<const std::byte> b) {
  bool single = false, dbl = false;
  for (std::byte c : b) {
    single |= c == std::byte{'\''};
    dbl |= c == std::byte{'"'};
  }
  const char quote = single && !dbl ? '"' : '\'';
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "b";
  out.reserve(b.size() + 3);
  out += quote;
  for (std::byte byte : b) {
    const auto c = std::to_integer<unsigned char>(byte);
    if (c == static_cast<unsigned char>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

std::optional<bytes> hmac(std::string_view digest, std::span<const std::byte> key,
                          std::span<const std::byte> data) {
  const EVP_MD* md = digest_by_name(digest);
  if (!md) return std::nullopt;
  if (key.size() > static_cast<std::size_t>(INT_MAX))
    throw std::invalid_argument("authkey too long");
  // An empty key (Python 3.13 accepts b'') still gets a valid pointer: OpenSSL reads a null
  // key as "keep the previous one".
  static const unsigned char no_key = 0;
  const auto* k = key.empty() ? &no_key : reinterpret_cast<const unsigned char*>(key.data());
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  unsigned int n = 0;
  static const unsigned char no_data = 0;
  const auto* d = data.empty() ? &no_data : reinterpret_cast<const unsigned char*>(data.data());
  if (!::HMAC(md, k, static_cast<int>(key.size()), d, data.size(), out.data(), &n))
    return std::nullopt;  // e.g. MD5 where the FIPS provider is the only one
  bytes result(n);
  std::memcpy(result.data(), out.data(), n);
  return result;
}

bytes build_challenge(std::span<const std::byte> random, std::string_view digest) {
  bytes out;
  out.reserve(challenge_tag.size() + digest.size() + 2 + random.size());
  append(out, challenge_tag);
  if (!digest.empty()) {
    append(out, "{");
    append(out, digest);
    append(out, "}");
  }
  append(out, random);
  return out;
}

bytes make_challenge() {
  std::array<std::byte, random_length> random{};
  if (::RAND_bytes(reinterpret_cast<unsigned char*>(random.data()),
                   static_cast<int>(random.size())) != 1)
    throw std::runtime_error("RAND_bytes failed: no randomness for the authentication challenge");
  bytes out = build_challenge(random);
  ::OPENSSL_cleanse(random.data(), random.size());
  return out;
}

bytes create_response(std::span<const std::byte> key, std::span<const std::byte> message) {
  std::string name = digest_name_and_payload(message).first;
  // The MAC covers the whole message, the "{name}" prefix included.
  if (name.empty()) {
    if (auto raw = hmac("md5", key, message)) return std::move(*raw);  // Python <= 3.11
    name = "sha256";  // no MD5 here (FIPS): answer in the modern form, as Python does
  }
  auto mac = hmac(name, key, message);
  if (!mac) throw authentication_error("digest_name='" + name + "' unsupported");
  bytes out;
  out.reserve(name.size() + 2 + mac->size());
  append(out, "{");
  append(out, name);
  append(out, "}");
  append(out, *mac);
  return out;
}

bytes answer(std::span<const std::byte> key, std::span<const std::byte> received) {
  if (!starts_with(received, challenge_tag))
    throw authentication_error("Protocol error, expected challenge: message=" +
                               python_repr(received));
  const auto message = received.subspan(challenge_tag.size());
  if (message.size() < legacy_random_length)
    throw authentication_error("challenge too short: " + std::to_string(message.size()) +
                               " bytes");
  return create_response(key, message);
}

void verify_response(std::span<const std::byte> key, std::span<const std::byte> message,
                     std::span<const std::byte> response) {
  auto [name, mac] = digest_name_and_payload(response);
  if (name.empty()) name = "md5";  // an unprefixed answer: Python <= 3.11's raw HMAC-MD5
  const auto expected = hmac(name, key, message);
  if (!expected) throw authentication_error("response_digest='" + name + "' unsupported");
  if (expected->size() != mac.size())
    throw authentication_error("expected '" + name + "' of length " +
                               std::to_string(expected->size()) + " got " +
                               std::to_string(mac.size()));
  if (::CRYPTO_memcmp(expected->data(), mac.data(), mac.size()) != 0)
    throw authentication_error("digest received was wrong");
}

void check_welcome(std::span<const std::byte> received) {
  if (!equals(received, welcome)) throw authentication_error("digest sent was rejected");
}

// ---------------------------------------------------------------------------------------

handshake::handshake(role r, std::span<const std::byte> key)
    : handshake(r, key, r == role::answer ? bytes() : make_challenge()) {}

handshake::handshake(role r, std::span<const std::byte> key, bytes challenge)
    : role_(r), key_(key.begin(), key.end()), challenge_(std::move(challenge)) {
  enter(r == role::deliver || r == role::listener ? step::deliver_challenge
                                                  : step::answer_challenge);
}

void handshake::enter(step s) {
  step_ = s;
  switch (s) {
    case step::deliver_challenge:
      want_ = want::send;
      out_ = challenge_;
      break;
    case step::deliver_verdict:
    case step::answer_response:
      want_ = want::send;  // out_ was set by received()
      break;
    case step::deliver_verify:
    case step::answer_challenge:
    case step::answer_verdict:
      want_ = want::receive;
      out_.clear();
      break;
    case step::finished:
      want_ = want::done;
      out_.clear();
      break;
  }
}

void handshake::after(step s) {
  switch (s) {
    case step::deliver_challenge:
      return enter(step::deliver_verify);
    case step::deliver_verify:
      return enter(step::deliver_verdict);
    case step::deliver_verdict:
      return enter(role_ == role::listener ? step::answer_challenge : step::finished);
    case step::answer_challenge:
      return enter(step::answer_response);
    case step::answer_response:
      return enter(step::answer_verdict);
    case step::answer_verdict:
      return enter(role_ == role::client ? step::deliver_challenge : step::finished);
    case step::finished:
      break;
  }
}

void handshake::sent() {
  if (want_ != want::send) throw std::logic_error("handshake: nothing to send");
  if (step_ == step::deliver_verdict && failing_) {
    want_ = want::failed;
    out_.clear();
    return;
  }
  after(step_);
}

void handshake::received(std::span<const std::byte> message) {
  if (want_ != want::receive) throw std::logic_error("handshake: no message expected");
  try {
    switch (step_) {
      case step::deliver_verify:
        try {
          verify_response(key_, std::span<const std::byte>(challenge_).subspan(challenge_tag.size()),
                          message);
          out_.assign(view(welcome).begin(), view(welcome).end());
        } catch (const authentication_error& e) {
          // Python sends "#FAILURE#" first, then raises.
          error_ = e.what();
          failing_ = true;
          out_.assign(view(failure).begin(), view(failure).end());
        }
        return after(step_);
      case step::answer_challenge:
        out_ = answer(key_, message);
        return after(step_);
      case step::answer_verdict:
        check_welcome(message);
        return after(step_);
      default:
        break;
    }
  } catch (const authentication_error& e) {
    error_ = e.what();
    want_ = want::failed;
    out_.clear();
  }
}

}  // namespace coproc::detail::auth
