// coproc: byte buffers shared by connections and error types.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace coproc {

/// A message as it travels between processes.
using bytes = std::vector<std::byte>;

/// The bytes of `text`, for sending strings as byte messages.
bytes as_bytes(std::string_view text);

}  // namespace coproc
