#include <coproc/bytes.hpp>

#include <cstring>

namespace coproc {

bytes as_bytes(std::string_view text) {
  bytes out(text.size());
  if (!text.empty()) std::memcpy(out.data(), text.data(), text.size());
  return out;
}

}  // namespace coproc
