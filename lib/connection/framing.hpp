// coproc internals: the wire format of Python's multiprocessing.connection.
//
//   n <= 0x7fffffff:  int32 big-endian n          || payload
//   n >  0x7fffffff:  int32 BE -1 || uint64 BE n   || payload
//
// Pure code over byte spans (no descriptors), so the fuzzer drives it directly.
#pragma once

#include "core/private.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include <coproc/bytes.hpp>

namespace coproc::detail {

struct frame_header {
  std::array<std::byte, 12> data;
  std::size_t size;  // 4 or 12
  std::span<const std::byte> bytes() const noexcept { return {data.data(), size}; }
};
frame_header encode_header(std::uint64_t length) noexcept;

// Reads one frame incrementally: next() says where the next bytes go (never past the end of
// the frame, so nothing is read ahead of the message returned), advance() says how many came.
// The payload grows as bytes arrive, by at most doubling (at least 64 KiB at a time), so a
// header announcing 2 GiB followed by the end of the stream allocates what came, not 2 GiB.
class frame_reader {
 public:
  enum class status {
    more,      // feed more bytes
    complete,  // the frame is here: payload() / take()
    too_long,  // the header announced more than `maxlength`: the payload was not read
  };

  // `into`: read a payload that fits there directly into it (recv_bytes_into); a longer one
  // goes to an owned buffer.
  explicit frame_reader(std::optional<std::size_t> maxlength = {},
                        std::span<std::byte> into = {}) noexcept
      : maxlength_(maxlength), into_(into) {}

  std::span<std::byte> next();
  // Throws std::system_error(errc::protocol_error) for a header no Python sends (a negative
  // length other than -1), std::bad_alloc when memory runs out.
  status advance(std::size_t n);

  // Any byte of the frame consumed: the stream is out of step if the read stops now.
  bool started() const noexcept { return header_have_ > 0; }
  std::uint64_t length() const noexcept { return length_; }
  // After complete: true when the payload went to `into`.
  bool in_place() const noexcept { return in_place_; }
  bytes take() noexcept { return std::move(payload_); }

 private:
  status header_done();

  std::optional<std::size_t> maxlength_;
  std::span<std::byte> into_;
  std::array<std::byte, 12> header_{};
  std::size_t header_have_ = 0;
  std::size_t header_want_ = 4;
  std::uint64_t length_ = 0;
  std::uint64_t have_ = 0;  // payload bytes received
  bool header_complete_ = false;
  bool in_place_ = false;
  bytes payload_;
};

}  // namespace coproc::detail
