// Typed messages: the parts of <coproc/detail/json.hpp> that need no template (the parser into
// nodes, exact numbers, strings, error messages, type names, the Boost.JSON fallback).
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <memory_resource>
#include <string>
#include <system_error>
#include <vector>

#include <cxxabi.h>
#include <locale.h>
#include <stdlib.h>

#include <coproc/detail/json.hpp>
#include <coproc/error.hpp>

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value.hpp>

namespace coproc::detail::json {

namespace {

// ---------------------------------------------------------------------------------------------
// Type names.

struct type_tree {
  std::string head;
  std::vector<type_tree> args;
  bool has_args = false;
  std::unique_ptr<type_tree> next;  // what follows the arguments ("outer<int>::inner")
};

void trim(std::string& s) {
  const auto first = s.find_first_not_of(' ');
  const auto last = s.find_last_not_of(' ');
  s = first == std::string::npos ? std::string() : s.substr(first, last - first + 1);
}

// Parses s[i..] up to an unmatched ',' or '>' (or the end). False when it is not balanced.
bool parse_type(std::string_view s, std::size_t& i, type_tree& t, int depth) {
  if (depth > 200) return false;
  while (i < s.size() && s[i] != '<' && s[i] != ',' && s[i] != '>')
    t.head += s[i++];
  trim(t.head);
  if (i < s.size() && s[i] == '<') {
    t.has_args = true;
    ++i;
    for (;;) {
      t.args.emplace_back();
      if (!parse_type(s, i, t.args.back(), depth + 1)) return false;
      if (i >= s.size()) return false;
      if (s[i++] == '>') break;  // else ','
    }
    if (i < s.size() && s[i] != ',' && s[i] != '>') {
      t.next = std::make_unique<type_tree>();
      return parse_type(s, i, *t.next, depth + 1);
    }
  }
  return true;
}

std::string tidy_name(std::string name) {
  for (std::string_view inline_ns : {"std::__cxx11::", "std::__debug::", "std::__1::"}) {
    for (auto at = name.find(inline_ns); at != std::string::npos; at = name.find(inline_ns))
      name.replace(at, inline_ns.size(), "std::");
  }
  // East const to west const: "char const*" is "const char*".
  if (const auto at = name.find(" const"); at != std::string::npos && at != 0 &&
                                           name.find_first_of("*&") > at &&
                                           name.compare(at + 6, std::string::npos, " const") != 0) {
    name = "const " + name.substr(0, at) + name.substr(at + 6);
  }
  // A number with a literal suffix (std::array<int, 3ul>): the number.
  if (!name.empty() && (std::isdigit(static_cast<unsigned char>(name[0])) || name[0] == '-')) {
    while (!name.empty() && (name.back() == 'u' || name.back() == 'l'))
      name.pop_back();
  }
  return name;
}

std::string print_type(const type_tree& t) {
  const std::string head = tidy_name(t.head);
  std::string out = head;
  if (t.has_args) {
    std::vector<std::string> args;
    for (const auto& a : t.args)
      args.push_back(print_type(a));
    if ((head == "std::basic_string" || head == "std::basic_string_view") && !args.empty() &&
        args[0] == "char") {
      out = head == "std::basic_string" ? "std::string" : "std::string_view";
      args.clear();
    } else {
      // The std containers' defaulted arguments (comparators, hashes, allocators) left out.
      struct keep {
        std::string_view name;
        std::size_t count;
      };
      static constexpr keep kept[] = {
          {"std::vector", 1},        {"std::deque", 1},
          {"std::list", 1},          {"std::forward_list", 1},
          {"std::set", 1},           {"std::multiset", 1},
          {"std::unordered_set", 1}, {"std::unordered_multiset", 1},
          {"std::map", 2},           {"std::multimap", 2},
          {"std::unordered_map", 2}, {"std::unordered_multimap", 2},
      };
      for (const auto& k : kept) {
        if (head == k.name && args.size() > k.count) args.resize(k.count);
      }
    }
    if (out == head) {
      out += '<';
      for (std::size_t i = 0; i < args.size(); ++i) {
        if (i != 0) out += ", ";
        out += args[i];
      }
      out += '>';
    }
  }
  if (t.next) {
    std::string rest = print_type(*t.next);
    if (!rest.empty() && rest[0] != ':' && rest[0] != ' ' && rest[0] != '*' && rest[0] != '&')
      out += ' ';
    out += rest;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text.

// The length of the UTF-8 sequence at p (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF), or 0 if it is not one.
std::size_t utf8_length(const unsigned char* p, const unsigned char* end) noexcept {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  std::size_t n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (static_cast<std::size_t>(end - p) < n) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (std::size_t i = 2; i < n; ++i) {
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  }
  return n;
}

// For error messages: at most `limit` bytes of s, escaped as JSON would, invalid bytes as \xNN.
std::string quoted(std::string_view s, std::size_t limit = 40) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  std::size_t shown = 0;
  while (p < end) {
    if (shown >= limit) {
      out += "...";
      break;
    }
    const unsigned char c = *p;
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++p;
    } else if (c < 0x20 || c == 0x7F) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++p;
    } else if (const std::size_t n = utf8_length(p, end); n != 0) {
      out.append(reinterpret_cast<const char*>(p), n);
      p += n;
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
      ++p;
    }
    ++shown;
  }
  out += '"';
  return out;
}

// A number's text for error messages (a hostile one may be very long).
std::string shown_number(const node& n) {
  std::string_view t = n.str();
  if (t.size() <= 40) return std::string(t);
  return std::string(t.substr(0, 37)) + "...";
}

bool identifier(std::string_view s) noexcept {
  if (s.empty() || s.size() > 64) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i != 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

const char* kind_name(kind k) noexcept {
  switch (k) {
    case kind::null:
      return "null";
    case kind::boolean:
      return "a boolean";
    case kind::integer:
      return "an integer";
    case kind::number:
      return "a number";
    case kind::string:
      return "a string";
    case kind::array:
      return "an array";
    case kind::object:
      return "an object";
  }
  return "a value";
}

// Numbers: std::from_chars rounds correctly; below the smallest subnormal it reports
// result_out_of_range without a value, where strtod (also correctly rounded in glibc) gives 0 or
// the subnormal, as Python does. strtod_l with the "C" locale: the program's locale may have
// another decimal point.
locale_t c_locale() {
  static const locale_t loc = newlocale(LC_ALL_MASK, "C", locale_t{});
  return loc;
}

enum class parsed { ok, overflow, invalid };

template <class F>
parsed parse_floating(std::string_view text, F& out) {
  F v{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc{} && end == text.data() + text.size()) {
    out = v;
    return parsed::ok;
  }
  if (ec != std::errc::result_out_of_range) return parsed::invalid;
  const std::string copy(text);
  errno = 0;
  char* stop = nullptr;
  const locale_t loc = c_locale();
  if (loc == locale_t{}) return parsed::invalid;
  if constexpr (std::is_same_v<F, float>)
    v = strtof_l(copy.c_str(), &stop, loc);
  else
    v = strtod_l(copy.c_str(), &stop, loc);
  if (stop != copy.c_str() + copy.size()) return parsed::invalid;
  if (std::isinf(v)) return parsed::overflow;
  out = v;  // underflow: zero or a subnormal, correctly rounded
  return parsed::ok;
}

template <class F>
std::string_view shortest(std::span<char, 64> buffer, F v) {
  const auto [end, ec] = std::to_chars(buffer.data(), buffer.data() + buffer.size() - 2, v);
  std::size_t size = static_cast<std::size_t>(end - buffer.data());
  // "1" would read as an integer: "1.0" reads as a float, and is what Python writes.
  if (std::string_view(buffer.data(), size).find_first_of(".e") == std::string_view::npos) {
    buffer[size++] = '.';
    buffer[size++] = '0';
  }
  (void)ec;  // 62 characters are more than any shortest form needs
  return {buffer.data(), size};
}

// ---------------------------------------------------------------------------------------------
// The parser: Boost.JSON's basic_parser into nodes. Depth is bounded by the parser (max_depth);
// memory is linear in the message (a node per value, strings and numbers that need no
// unescaping point into the message itself).

class builder {
 public:
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);

  builder(std::pmr::memory_resource* arena, const char* begin, const char* end)
      : arena_(arena), begin_(begin), end_(end) {}

  node root() const { return stack_.back(); }

  bool on_document_begin(boost::json::error_code&) { return true; }
  bool on_document_end(boost::json::error_code&) { return true; }
  bool on_array_begin(boost::json::error_code&) { return true; }
  bool on_object_begin(boost::json::error_code&) { return true; }
  bool on_array_end(std::size_t n, boost::json::error_code&) {
    push_container(kind::array, n, n);
    return true;
  }
  bool on_object_end(std::size_t n, boost::json::error_code&) {
    push_container(kind::object, n, 2 * n);
    return true;
  }
  bool on_string_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    part_.append(s.data(), s.size());
    return true;
  }
  bool on_string(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    push_text(kind::string, s);
    return true;
  }
  bool on_key_part(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    part_.append(s.data(), s.size());
    return true;
  }
  bool on_key(boost::json::string_view s, std::size_t, boost::json::error_code&) {
    push_text(kind::string, s);
    return true;
  }
  bool on_number_part(boost::json::string_view s, boost::json::error_code&) {
    part_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t i, boost::json::string_view s, boost::json::error_code&) {
    node& n = push_text(kind::integer, s);
    n.negative = i < 0;
    n.magnitude = i < 0 ? static_cast<std::uint64_t>(-(i + 1)) + 1 : static_cast<std::uint64_t>(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, boost::json::string_view s, boost::json::error_code&) {
    push_text(kind::integer, s).magnitude = u;
    return true;
  }
  bool on_double(double, boost::json::string_view s, boost::json::error_code&) {
    // Boost.JSON 1.81's own double may be one unit in the last place off: the text is read
    // again, exactly, when a float or double asks for it.
    push_text(kind::number, s).magnitude = 0;
    return true;
  }
  bool on_bool(bool b, boost::json::error_code&) {
    node n = blank(kind::boolean);
    n.boolean = b;
    stack_.push_back(n);
    return true;
  }
  bool on_null(boost::json::error_code&) {
    stack_.push_back(blank(kind::null));
    return true;
  }
  bool on_comment_part(boost::json::string_view, boost::json::error_code&) { return true; }
  bool on_comment(boost::json::string_view, boost::json::error_code&) { return true; }

 private:
  static node blank(kind k) {
    node n;
    n.type = k;
    n.negative = false;
    n.boolean = false;
    n.text = nullptr;
    n.size = 0;
    n.magnitude = 0;
    return n;
  }

  node& push_text(kind k, boost::json::string_view s) {
    node n = blank(k);
    const std::less<const char*> before;
    if (part_.empty() && !before(s.data(), begin_) && !before(end_, s.data() + s.size())) {
      n.text = s.data();  // as it is in the message
      n.size = s.size();
    } else {
      part_.append(s.data(), s.size());
      char* copy = static_cast<char*>(arena_->allocate(part_.size() + 1, 1));
      std::memcpy(copy, part_.data(), part_.size());
      copy[part_.size()] = '\0';
      n.text = copy;
      n.size = part_.size();
      part_.clear();
    }
    stack_.push_back(n);
    return stack_.back();
  }

  void push_container(kind k, std::size_t members, std::size_t count) {
    node n = blank(k);
    n.size = members;
    n.elements = nullptr;
    if (count != 0) {
      auto* block = static_cast<node*>(arena_->allocate(count * sizeof(node), alignof(node)));
      std::uninitialized_copy(stack_.end() - static_cast<std::ptrdiff_t>(count), stack_.end(),
                              block);
      stack_.resize(stack_.size() - count);
      n.elements = block;
    }
    stack_.push_back(n);
  }

  std::pmr::memory_resource* arena_;
  const char* begin_;
  const char* end_;
  std::vector<node> stack_;
  std::string part_;
};

[[noreturn]] void throw_read_error(const std::type_info& type, std::string_view what) {
  throw message_error("cannot read " + type_name(type) + " from a message: " + std::string(what));
}

}  // namespace

std::string type_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  std::string raw = status == 0 && demangled ? demangled.get() : type.name();
  type_tree t;
  std::size_t i = 0;
  if (!parse_type(raw, i, t, 0) || i != raw.size()) return tidy_name(raw);
  return print_type(t);
}

std::string path::to_string() const {
  std::string out;
  for (std::size_t i = 0; i < std::min(depth_, segments_.size()); ++i) {
    const segment& s = segments_[i];
    if (!s.is_key) {
      out += '[' + std::to_string(s.size_or_index) + ']';
    } else if (const std::string_view key(s.key, s.size_or_index); identifier(key)) {
      out += '.';
      out += key;
    } else {
      out += '[' + quoted(key) + ']';
    }
  }
  return out;
}

std::string_view integer_text(std::span<char, 24> buffer, std::int64_t v) noexcept {
  const auto r = std::to_chars(buffer.data(), buffer.data() + buffer.size(), v);
  return {buffer.data(), static_cast<std::size_t>(r.ptr - buffer.data())};
}

std::string_view integer_text(std::span<char, 24> buffer, std::uint64_t v) noexcept {
  const auto r = std::to_chars(buffer.data(), buffer.data() + buffer.size(), v);
  return {buffer.data(), static_cast<std::size_t>(r.ptr - buffer.data())};
}

// ---------------------------------------------------------------------------------------------
// writer

void writer::integer(std::int64_t v) {
  std::array<char, 24> buffer;
  raw(integer_text(buffer, v));
}

void writer::integer(std::uint64_t v) {
  std::array<char, 24> buffer;
  raw(integer_text(buffer, v));
}

void writer::number(double v) {
  if (std::isnan(v)) fail("NaN has no JSON form");
  if (std::isinf(v)) fail(v > 0 ? "infinity has no JSON form" : "-infinity has no JSON form");
  std::array<char, 64> buffer;
  raw(shortest(buffer, v));
}

void writer::number(float v) {
  if (std::isnan(v)) fail("NaN has no JSON form");
  if (std::isinf(v)) fail(v > 0 ? "infinity has no JSON form" : "-infinity has no JSON form");
  std::array<char, 64> buffer;
  raw(shortest(buffer, v));
}

void writer::string(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  raw('"');
  const auto* run = p;  // bytes written as they are
  auto flush = [&](const unsigned char* to) {
    raw(std::string_view(reinterpret_cast<const char*>(run), static_cast<std::size_t>(to - run)));
  };
  while (p < end) {
    const unsigned char c = *p;
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++p;
      continue;
    }
    if (c >= 0x80) {
      const std::size_t n = utf8_length(p, end);
      if (n == 0) {
        fail("string is not valid UTF-8 (byte " +
             std::to_string(p - reinterpret_cast<const unsigned char*>(s.data())) + " of " +
             std::to_string(s.size()) + ")");
      }
      p += n;
      continue;
    }
    flush(p);
    raw('\\');
    switch (c) {
      case '"':
        raw('"');
        break;
      case '\\':
        raw('\\');
        break;
      case '\b':
        raw('b');
        break;
      case '\f':
        raw('f');
        break;
      case '\n':
        raw('n');
        break;
      case '\r':
        raw('r');
        break;
      case '\t':
        raw('t');
        break;
      default:
        raw("u00");
        raw(hex[c >> 4]);
        raw(hex[c & 15]);
    }
    run = ++p;
  }
  flush(p);
  raw('"');
}

void writer::field(const char* name, bool first) {
  if (!first) raw(',');
  raw('"');
  raw(std::string_view(name));
  raw("\":");
}

void writer::fail(std::string_view reason) const {
  const std::string where = path_.to_string();
  std::string what = "cannot send " + type_name(type_) + " as a message: ";
  if (!where.empty()) what += "at " + where + ": ";
  what += reason;
  throw message_error(what);
}

void writer::too_deep() const {
  fail("nested deeper than " + std::to_string(max_depth) + " levels");
}

void write_boost_value(writer& w, const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::null:
      w.null();
      break;
    case boost::json::kind::bool_:
      w.boolean(v.get_bool());
      break;
    case boost::json::kind::int64:
      w.integer(v.get_int64());
      break;
    case boost::json::kind::uint64:
      w.integer(v.get_uint64());
      break;
    case boost::json::kind::double_:
      w.number(v.get_double());
      break;
    case boost::json::kind::string: {
      const auto& s = v.get_string();
      w.string(std::string_view(s.data(), s.size()));
      break;
    }
    case boost::json::kind::array: {
      w.open('[');
      std::size_t i = 0;
      for (const auto& e : v.get_array()) {
        if (i != 0) w.raw(',');
        path_scope at(w.where(), i++);
        write_boost_value(w, e);
      }
      w.close(']');
      break;
    }
    case boost::json::kind::object: {
      w.open('{');
      bool first = true;
      for (const auto& m : v.get_object()) {
        if (!first) w.raw(',');
        first = false;
        const std::string_view key(m.key().data(), m.key().size());
        path_scope at(w.where(), key);
        w.string(key);
        w.raw(':');
        write_boost_value(w, m.value());
      }
      w.close('}');
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// document

struct document::storage {
  std::pmr::monotonic_buffer_resource arena;
  node root;
};

document::document(std::span<const std::byte> text, const std::type_info& type)
    : storage_(new storage), root_(&storage_->root) {
  std::unique_ptr<storage> owner(storage_);
  const char* begin = reinterpret_cast<const char*>(text.data());
  const char* end = begin + text.size();
  boost::json::parse_options options;
  options.max_depth = max_depth;
  boost::json::basic_parser<builder> parser(options, &storage_->arena, begin, end);
  boost::json::error_code ec;
  const std::size_t used = parser.write_some(false, begin, text.size(), ec);
  if (ec) {
    if (ec == boost::json::error::too_deep)
      throw_read_error(type, "nested deeper than " + std::to_string(max_depth) + " levels");
    if (text.empty()) throw_read_error(type, "the message is empty (not JSON)");
    throw_read_error(type, "not valid JSON (" + ec.message() + " at byte " + std::to_string(used) +
                               " of " + std::to_string(text.size()) + ")");
  }
  if (used != text.size()) {
    throw_read_error(type, "not valid JSON (more after the value, at byte " + std::to_string(used) +
                               " of " + std::to_string(text.size()) + ")");
  }
  storage_->root = parser.handler().root();
  owner.release();
}

document::~document() {
  delete storage_;
}

const node* find_member(const node& object, std::string_view name) noexcept {
  for (std::size_t i = object.size; i-- > 0;) {
    if (object.key(i).str() == name) return &object.value(i);
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// reader

bool reader::fail(std::string_view reason) {
  if (quiet == 0 && error_.empty()) {
    const std::string where = path_.to_string();
    if (!where.empty()) error_ = "at " + where + ": ";
    error_ += reason;
  }
  return false;
}

bool reader::expected(const node& n, const char* what) {
  if (quiet != 0) return false;
  return fail(std::string("expected ") + what + ", got " + kind_name(n.type));
}

bool reader::wrong_size(const node& n, std::size_t size) {
  if (quiet != 0) return false;
  return fail("expected an array of " + std::to_string(size) + " elements, got " +
              std::to_string(n.size));
}

bool reader::out_of_range(const node& n, const std::type_info& target) {
  if (quiet != 0) return false;
  return fail(shown_number(n) + " does not fit in " + type_name(target));
}

bool reader::not_integer(const node& n, const std::type_info& target) {
  if (quiet != 0) return false;
  // Without '.', 'e' or 'E' the text is an integer, one too large for 64 bits.
  if (n.str().find_first_of(".eE") == std::string_view::npos) return out_of_range(n, target);
  return fail("expected an integer, got the number " + shown_number(n) + " (for " +
              type_name(target) + ")");
}

bool reader::key_out_of_range(const node& key, const std::type_info& target) {
  if (quiet != 0) return false;
  return fail("key " + quoted(key.str()) + " does not fit in " + type_name(target));
}

bool reader::missing_field(const char* name) {
  if (quiet != 0) return false;
  return fail("missing field " + quoted(name));
}

bool reader::no_alternative(const node& n, const std::type_info& variant) {
  if (quiet != 0) return false;
  return fail(std::string("no alternative of ") + type_name(variant) + " reads " +
              kind_name(n.type));
}

bool reader::not_enumerator(const node& n, const std::type_info& target) {
  if (quiet != 0) return false;
  return fail(quoted(n.str()) + " is not an enumerator of " + type_name(target));
}

namespace {
template <class F>
bool read_floating(reader& r, const node& n, F& out) {
  if (n.type != kind::integer && n.type != kind::number) return r.expected(n, "a number");
  switch (parse_floating(n.str(), out)) {
    case parsed::ok:
      return true;
    case parsed::overflow:
      if (r.quiet != 0) return false;
      return r.fail(shown_number(n) + " does not fit in " + type_name(typeid(F)));
    case parsed::invalid:
      break;
  }
  return r.fail("cannot read the number " + shown_number(n));  // not reached: the parser checked
}
}  // namespace

bool reader::number(const node& n, double& out) {
  return read_floating(*this, n, out);
}
bool reader::number(const node& n, float& out) {
  return read_floating(*this, n, out);
}

bool reader::integer_key(const node& key, const std::type_info& target, bool& negative,
                         std::uint64_t& magnitude) {
  const std::string_view s = key.str();
  std::string_view digits = s;
  negative = !digits.empty() && digits[0] == '-';
  if (negative) digits.remove_prefix(1);
  // What Python's str(int) writes: no sign but '-', no leading zero, no "-0".
  const bool canonical = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) {
    return c >= '0' && c <= '9';
  }) && (digits[0] != '0' || (digits.size() == 1 && !negative));
  if (!canonical) {
    if (quiet != 0) return false;
    return fail("key " + quoted(s) + " is not an integer in decimal (for " + type_name(target) +
                ")");
  }
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude);
  if (ec != std::errc{} || end != digits.data() + digits.size())
    return key_out_of_range(key, target);
  return true;
}

bool reader::to_boost(const node& n, boost::json::value& out) {
  switch (n.type) {
    case kind::null:
      out = nullptr;
      return true;
    case kind::boolean:
      out = n.boolean;
      return true;
    case kind::integer:
      if (n.negative)
        out = static_cast<std::int64_t>(-static_cast<std::int64_t>(n.magnitude - 1) - 1);
      else if (n.magnitude <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        out = static_cast<std::int64_t>(n.magnitude);
      else
        out = n.magnitude;
      return true;
    case kind::number: {
      double d = 0;
      if (!number(n, d)) return false;
      out = d;
      return true;
    }
    case kind::string:
      out = boost::json::string_view(n.text, n.size);
      return true;
    case kind::array: {
      boost::json::array& a = out.emplace_array();
      a.reserve(n.size);
      for (std::size_t i = 0; i < n.size; ++i) {
        path_scope at(path_, i);
        if (!to_boost(n.element(i), a.emplace_back(nullptr))) return false;
      }
      return true;
    }
    case kind::object: {
      boost::json::object& o = out.emplace_object();
      o.reserve(n.size);
      for (std::size_t i = 0; i < n.size; ++i) {
        const std::string_view key = n.key(i).str();
        path_scope at(path_, key);
        boost::json::value v;
        if (!to_boost(n.value(i), v)) return false;
        o.insert_or_assign(boost::json::string_view(key.data(), key.size()), std::move(v));
      }
      return true;
    }
  }
  return false;
}

void reader::raise() const {
  throw_read_error(type_, error_.empty() ? std::string("conversion failed") : error_);
}

}  // namespace coproc::detail::json
