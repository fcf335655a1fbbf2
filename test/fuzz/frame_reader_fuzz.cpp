// libFuzzer target: the frame reader on hostile streams (tools/fuzz.sh builds and runs it).
//
// The input is a byte stream as a peer could send it. The first byte chooses how the stream is
// cut into reads (1..256 bytes each) and the second a maxlength (or none); the reader must end
// every frame with a payload of exactly the announced length, refuse what Python never sends,
// and never allocate more than the bytes that arrived can back (libFuzzer's -malloc_limit_mb
// catches an allocation of the announced length).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <system_error>

#include "connection/framing.hpp"

using coproc::detail::frame_reader;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t chunk = 1 + data[0];
  const std::optional<std::size_t> maxlength =
      data[1] == 0xff ? std::nullopt : std::optional<std::size_t>(data[1] * 64u);
  std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data) + 2, size - 2);
  std::byte into_storage[300];
  const bool use_into = data[0] & 1;
  while (!stream.empty()) {
    frame_reader r(maxlength, use_into ? std::span<std::byte>(into_storage) : std::span<std::byte>());
    for (;;) {
      auto buf = r.next();
      const std::size_t n = std::min({buf.size(), chunk, stream.size()});
      if (n == 0) return 0;  // end of stream inside a frame (or before one)
      std::copy_n(stream.begin(), n, buf.begin());
      stream = stream.subspan(n);
      frame_reader::status st;
      try {
        st = r.advance(n);
      } catch (const std::system_error&) {
        return 0;  // a header no Python sends: the connection stops reading
      }
      if (st == frame_reader::status::too_long) {
        if (!maxlength || r.length() <= *maxlength) std::abort();
        return 0;
      }
      if (st == frame_reader::status::complete) {
        if (r.in_place()) {
          if (r.length() > sizeof into_storage) std::abort();
        } else if (r.take().size() != r.length()) {
          std::abort();
        }
        break;
      }
    }
  }
  return 0;
}
