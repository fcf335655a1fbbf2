#include <cstring>
#include <string>

#include <coproc/bytes.hpp>
#include <coproc/error.hpp>

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

}  // namespace coproc
