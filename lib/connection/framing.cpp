#include "connection/framing.hpp"

#include <algorithm>
#include <system_error>

namespace coproc::detail {

namespace {
constexpr std::uint64_t short_limit = 0x7fffffff;
constexpr std::size_t growth_floor = 64 * 1024;

void put_be(std::byte* p, std::uint64_t v, int bytes) noexcept {
  for (int i = bytes - 1; i >= 0; --i) {
    p[i] = static_cast<std::byte>(v & 0xff);
    v >>= 8;
  }
}

std::uint64_t get_be(const std::byte* p, int bytes) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
  return v;
}
}  // namespace

frame_header encode_header(std::uint64_t length) noexcept {
  frame_header h{};
  if (length <= short_limit) {
    put_be(h.data.data(), length, 4);
    h.size = 4;
  } else {
    put_be(h.data.data(), 0xffffffff, 4);
    put_be(h.data.data() + 4, length, 8);
    h.size = 12;
  }
  return h;
}

std::span<std::byte> frame_reader::next() {
  if (!header_complete_)
    return {header_.data() + header_have_, header_want_ - header_have_};
  if (in_place_) return into_.subspan(have_, length_ - have_);
  if (payload_.size() == have_) {
    // Grow by what has come so far (at least 64 KiB), never past the announced length.
    const std::uint64_t left = length_ - have_;
    const std::uint64_t step =
        std::min<std::uint64_t>(left, std::max<std::uint64_t>(growth_floor, have_));
    payload_.resize(static_cast<std::size_t>(have_ + step));
  }
  return {payload_.data() + have_, payload_.size() - have_};
}

frame_reader::status frame_reader::advance(std::size_t n) {
  if (!header_complete_) {
    header_have_ += n;
    if (header_have_ < header_want_) return status::more;
    if (header_want_ == 4) {
      const auto first = get_be(header_.data(), 4);
      if (first == 0xffffffff) {
        header_want_ = 12;
        return status::more;
      }
      if (first > short_limit)
        throw std::system_error(std::make_error_code(std::errc::protocol_error),
                                "bad message header: negative length");
      length_ = first;
    } else {
      length_ = get_be(header_.data() + 4, 8);
    }
    return header_done();
  }
  have_ += n;
  return have_ == length_ ? status::complete : status::more;
}

frame_reader::status frame_reader::header_done() {
  header_complete_ = true;
  if (maxlength_ && length_ > *maxlength_) return status::too_long;
  if (length_ <= into_.size()) {
    in_place_ = true;
    into_ = into_.first(static_cast<std::size_t>(length_));
  }
  return length_ == 0 ? status::complete : status::more;
}

}  // namespace coproc::detail
