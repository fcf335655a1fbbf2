// coproc: typed messages, the JSON text of C++ values (what connection::send<T> sends and
// connection::recv<T> receives). docs/connections.md, "Typed messages", has the mapping.
//
// coproc converts the std types and described structs itself, recursively, and uses Boost.JSON
// only for its parser (lib/connection/json.cpp) and, as a fallback, for user types that have
// Boost.JSON's own tag_invoke conversions. It never calls boost::json::value_to or value_from
// for std containers: in Boost 1.81 those fail to compile for std::map and std::set when
// <boost/range.hpp> (which Boost.Test pulls in) comes first (boostorg/json#887), and a typed
// message must compile whatever the include order.
//
// This header stays light: it needs Boost.JSON's forward declarations only. A user type with
// tag_invoke conversions brings in Boost.JSON's value itself (its tag_invoke takes one).
// BOOST_DESCRIBE_STRUCT and BOOST_DESCRIBE_ENUM come with it (boost/describe/class.hpp, enum.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>

#include <coproc/bytes.hpp>

#include <boost/describe/class.hpp>
#include <boost/describe/enum.hpp>
#include <boost/describe/enumerators.hpp>
#include <boost/describe/members.hpp>
#include <boost/describe/modifiers.hpp>
#include <boost/json/fwd.hpp>

namespace coproc::detail {

/// `value` as a typed message: UTF-8 JSON text, as Python's json.loads reads it.
/// Throws coproc::message_error (naming T, and where in the value) for what JSON cannot say:
/// NaN and infinities, strings that are not UTF-8, nesting deeper than json::max_depth.
template <class T>
bytes to_message(const T& value);

/// The T that the JSON text `text` describes. Throws coproc::message_error, naming T and where
/// in the value, for text that is not JSON or does not describe a T (a wrong kind of value, a
/// number out of T's range, a missing struct field, ...).
template <class T>
T from_message(std::span<const std::byte> text);

namespace json {

/// Arrays and objects nest at most this deep in a typed message, both ways (deeper is an error).
inline constexpr std::size_t max_depth = 64;

/// A C++ type's name for error messages: demangled, std::string for std::basic_string<char>,
/// the std containers' default template arguments left out.
std::string type_name(const std::type_info& type);

// ---------------------------------------------------------------------------------------------
// Where in a value: ".field[3]".

class path {
 public:
  void push_key(std::string_view key) noexcept { push({key.data(), key.size(), true}); }
  void push_index(std::size_t index) noexcept { push({nullptr, index, false}); }
  void pop() noexcept { --depth_; }
  std::size_t depth() const noexcept { return depth_; }
  void truncate(std::size_t depth) noexcept { depth_ = depth; }
  /// ".field[3]", or "" at the top.
  std::string to_string() const;

 private:
  struct segment {
    const char* key;
    std::size_t size_or_index;
    bool is_key;
  };
  void push(segment s) noexcept {
    if (depth_ < segments_.size()) segments_[depth_] = s;
    ++depth_;
  }
  std::array<segment, max_depth + 1> segments_;
  std::size_t depth_ = 0;
};

class path_scope {
 public:
  path_scope(path& p, std::string_view key) noexcept : path_(p) { p.push_key(key); }
  path_scope(path& p, std::size_t index) noexcept : path_(p) { p.push_index(index); }
  ~path_scope() { path_.pop(); }
  path_scope(const path_scope&) = delete;
  path_scope& operator=(const path_scope&) = delete;

 private:
  path& path_;
};

// ---------------------------------------------------------------------------------------------
// Writing: JSON text straight into the message's bytes.

class writer {
 public:
  writer(bytes& out, const std::type_info& type) noexcept : out_(out), type_(type) {}

  void raw(char c) { out_.push_back(static_cast<std::byte>(c)); }
  void raw(std::string_view s) {
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out_.insert(out_.end(), p, p + s.size());
  }
  void null() { raw("null"); }
  void boolean(bool b) { raw(b ? std::string_view("true") : std::string_view("false")); }
  void integer(std::int64_t v);
  void integer(std::uint64_t v);
  /// Shortest text that reads back as the same value; ".0" added where that text would read as
  /// an integer (Python's json then reads a float, as json.dumps writes 1.0). NaN, infinities:
  /// an error (JSON has neither).
  void number(double v);
  void number(float v);
  /// A JSON string; `s` must be UTF-8 (an error otherwise).
  void string(std::string_view s);
  /// A struct field's name (an identifier: written as it is).
  void field(const char* name, bool first);

  /// '[' or '{', one level deeper (an error beyond max_depth).
  void open(char bracket) {
    if (++depth_ > max_depth) too_deep();
    raw(bracket);
  }
  void close(char bracket) {
    --depth_;
    raw(bracket);
  }

  path& where() noexcept { return path_; }
  /// Throws message_error: "cannot send T as a message: at .where: reason".
  [[noreturn]] void fail(std::string_view reason) const;

 private:
  [[noreturn]] void too_deep() const;

  bytes& out_;
  const std::type_info& type_;
  std::size_t depth_ = 0;
  path path_;
};

// ---------------------------------------------------------------------------------------------
// Reading: a message parsed into nodes (lib/connection/json.cpp), then converted to C++.

enum class kind : std::uint8_t { null, boolean, integer, number, string, array, object };

/// One value of a parsed message. Integers that fit 64 bits are `integer` (sign and magnitude);
/// every other number is `number` (its text is read exactly when a float or double asks).
struct node {
  kind type;
  bool negative;     ///< integer: below zero
  bool boolean;      ///< boolean: the value
  const char* text;  ///< string: its UTF-8; integer, number: its JSON text
  std::size_t size;  ///< string, integer, number: text length; array: elements; object: members
  union {
    std::uint64_t magnitude;  ///< integer
    const node* elements;     ///< array: size elements; object: key, value, key, value, ...
  };

  std::string_view str() const noexcept { return {text, size}; }
  const node& element(std::size_t i) const noexcept { return elements[i]; }
  const node& key(std::size_t i) const noexcept { return elements[2 * i]; }
  const node& value(std::size_t i) const noexcept { return elements[2 * i + 1]; }
};

/// A parsed message. Throws message_error naming `type` for text that is not JSON, not UTF-8,
/// or nested deeper than max_depth.
class document {
 public:
  document(std::span<const std::byte> text, const std::type_info& type);
  ~document();
  document(const document&) = delete;
  document& operator=(const document&) = delete;
  const node& root() const noexcept { return *root_; }

 private:
  struct storage;
  storage* storage_;
  const node* root_;
};

/// The last member named `name` in an object (as Python's json, the last of duplicates wins),
/// or nullptr.
const node* find_member(const node& object, std::string_view name) noexcept;

/// Converts nodes to C++ values. A failure is recorded (the first one, unless quiet, as while
/// trying the alternatives of a variant) and reported as false up to from_message, which throws.
class reader {
 public:
  explicit reader(const std::type_info& type) noexcept : type_(type) {}

  path& where() noexcept { return path_; }
  int quiet = 0;

  /// Records "at .where: reason"; returns false.
  bool fail(std::string_view reason);
  /// "expected <what>, got <n's kind>".
  bool expected(const node& n, const char* what);
  bool wrong_size(const node& n, std::size_t size);
  bool out_of_range(const node& n, const std::type_info& target);
  /// A non-integer number where an integer was expected.
  bool not_integer(const node& n, const std::type_info& target);
  bool key_out_of_range(const node& key, const std::type_info& target);
  bool missing_field(const char* name);
  bool no_alternative(const node& n, const std::type_info& variant);
  bool not_enumerator(const node& n, const std::type_info& target);
  /// An integer or number node as a double or float: exactly the nearest one to its text.
  bool number(const node& n, double& out);
  bool number(const node& n, float& out);
  /// A map key in the canonical decimal form ("12", "-3", not "012", "+3" or "-0").
  bool integer_key(const node& key, const std::type_info& target, bool& negative,
                   std::uint64_t& magnitude);
  /// The node as a Boost.JSON value (for tag_invoke conversions).
  bool to_boost(const node& n, boost::json::value& out);

  /// Throws message_error: "cannot read T from a message: at .where: reason".
  [[noreturn]] void raise() const;

 private:
  const std::type_info& type_;
  path path_;
  std::string error_;
};

/// Writes a Boost.JSON value (the tag_invoke fallback) as coproc writes its own values.
void write_boost_value(writer& w, const boost::json::value& v);

// ---------------------------------------------------------------------------------------------
// What a type is.

template <class>
inline constexpr bool always_false = false;

// Named through a template parameter, so that an incomplete Boost.JSON type is only needed
// where a tag_invoke conversion (or boost::json::value itself) is used.
template <class X, class T>
struct dependent {
  using type = X;
};
template <class X, class T>
using dependent_t = typename dependent<X, T>::type;

template <class T>
concept char_like = std::same_as<T, char> || std::same_as<T, wchar_t> || std::same_as<T, char8_t> ||
    std::same_as<T, char16_t> || std::same_as<T, char32_t>;
template <class T>
concept integer = std::integral<T> && !std::same_as<T, bool> && !char_like<T> && sizeof(T) <= 8;
template <class T>
concept floating = std::same_as<T, float> || std::same_as<T, double>;

template <class T>
struct is_string : std::false_type {};
template <class Tr, class A>
struct is_string<std::basic_string<char, Tr, A>> : std::true_type {};
template <class T>
struct is_string_view : std::false_type {};
template <class Tr>
struct is_string_view<std::basic_string_view<char, Tr>> : std::true_type {};
template <class T>
concept char_array = std::is_array_v<T> && std::rank_v<T>
== 1 && std::same_as<std::remove_cv_t<std::remove_extent_t<T>>, char>;
template <class T>
concept char_pointer = std::same_as<T, const char*> || std::same_as<T, char*>;

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_variant : std::false_type {};
template <class... Ts>
struct is_variant<std::variant<Ts...>> : std::true_type {};
template <class T>
struct is_tuple : std::false_type {};
template <class A, class B>
struct is_tuple<std::pair<A, B>> : std::true_type {};
template <class... Ts>
struct is_tuple<std::tuple<Ts...>> : std::true_type {};
template <class T>
struct is_std_array : std::false_type {};
template <class T, std::size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};

template <class T>
concept boost_json_value = std::same_as<T, boost::json::value>;

template <class T>
concept described_struct =
    std::is_class_v<T> && !std::is_union_v<T> && boost::describe::has_describe_members<T>::value;
template <class T>
concept described_enum = std::is_enum_v<T> && boost::describe::has_describe_enumerators<T>::value;

template <class T>
concept iterable = requires(const T& c) {
  c.begin();
  c.end();
};
template <class T>
concept map_like = iterable<T> && requires {
  typename T::key_type;
  typename T::mapped_type;
};
template <class T>
concept set_like = iterable<T> && requires {
  typename T::key_type;
  typename T::value_type;
} && !map_like<T>;
template <class T>
concept sequence = iterable<T> && requires(T& c, typename T::value_type v) {
  c.push_back(std::move(v));
  c.clear();
};

template <class K>
concept string_key = is_string<K>::value;
template <class K>
concept sendable_key = string_key<K> || is_string_view<K>::value || integer<K>;
template <class K>
concept receivable_key = string_key<K> || integer<K>;

// Boost.JSON's customisation: tag_invoke found by argument-dependent lookup.
template <class T>
concept user_from = requires(dependent_t<boost::json::value, T>& jv, const T& t) {
  tag_invoke(dependent_t<boost::json::value_from_tag, T>{}, jv, t);
};
template <class T>
concept user_to = requires(const dependent_t<boost::json::value, T>& jv) {
  { tag_invoke(boost::json::value_to_tag<T>{}, jv) } -> std::convertible_to<T>;
};
template <class T>
concept user_try_to = requires(const dependent_t<boost::json::value, T>& jv) {
  tag_invoke(boost::json::try_value_to_tag<T>{}, jv).has_value();
};

template <template <class...> class L, class... D, class F>
bool for_each_described(L<D...>*, F&& f) {
  return (... && f(D{}));
}

template <class T>
using public_members = boost::describe::describe_members<T, boost::describe::mod_public |
                                                                boost::describe::mod_inherited>;
template <class T>
using other_members = boost::describe::describe_members<T, boost::describe::mod_protected |
                                                               boost::describe::mod_private |
                                                               boost::describe::mod_inherited>;

template <class L>
struct list_size;
template <template <class...> class L, class... D>
struct list_size<L<D...>> : std::integral_constant<std::size_t, sizeof...(D)> {};

// ---------------------------------------------------------------------------------------------
// Writing.

template <class T>
void write(writer& w, const T& v);

template <class T>
void write_user(writer& w, const T& v) {
  dependent_t<boost::json::value, T> jv;
  try {
    tag_invoke(dependent_t<boost::json::value_from_tag, T>{}, jv, v);
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    w.fail(std::string("its tag_invoke conversion failed: ") + e.what());
  }
  write_boost_value(w, jv);
}

template <class T>
void write_struct(writer& w, const T& v) {
  static_assert(list_size<other_members<T>>::value == 0,
                "coproc: a typed message converts the public members of a described class; "
                "this class describes protected or private members");
  w.open('{');
  bool first = true;
  for_each_described(static_cast<public_members<T>*>(nullptr), [&](auto d) {
    w.field(d.name, first);
    first = false;
    path_scope at(w.where(), std::string_view(d.name));
    write(w, v.*d.pointer);
    return true;
  });
  w.close('}');
}

template <class T>
void write_enum(writer& w, const T& v) {
  const char* name = nullptr;
  for_each_described(static_cast<boost::describe::describe_enumerators<T>*>(nullptr), [&](auto d) {
    if (v != d.value) return true;
    name = d.name;
    return false;
  });
  if (name == nullptr) {
    std::string reason = std::to_string(static_cast<std::underlying_type_t<T>>(v));
    w.fail(reason + " is not a described enumerator of " + type_name(typeid(T)));
  }
  w.string(name);
}

template <class T, std::size_t... I>
void write_tuple(writer& w, [[maybe_unused]] const T& v, std::index_sequence<I...>) {
  w.open('[');
  (([&] {
     if (I != 0) w.raw(',');
     path_scope at(w.where(), I);
     write(w, std::get<I>(v));
   }()),
   ...);
  w.close(']');
}

template <class T>
void write_array(writer& w, const T& v) {
  using element = typename T::value_type;
  w.open('[');
  std::size_t i = 0;
  for (const auto& e : v) {
    if (i != 0) w.raw(',');
    path_scope at(w.where(), i++);
    write<element>(w, e);  // vector<bool>'s proxies become bools here
  }
  w.close(']');
}

std::string_view integer_text(std::span<char, 24> buffer, std::int64_t v) noexcept;
std::string_view integer_text(std::span<char, 24> buffer, std::uint64_t v) noexcept;

template <class T>
void write_map(writer& w, const T& v) {
  using key = std::remove_cv_t<typename T::key_type>;
  static_assert(sendable_key<key>,
                "coproc: a map in a typed message needs string or integer keys (a JSON object)");
  w.open('{');
  bool first = true;
  for (const auto& [k, e] : v) {
    if (!first) w.raw(',');
    first = false;
    std::array<char, 24> buffer;
    std::string_view name;
    if constexpr (integer<key>) {
      if constexpr (std::is_signed_v<key>)
        name = integer_text(buffer, static_cast<std::int64_t>(k));
      else
        name = integer_text(buffer, static_cast<std::uint64_t>(k));
    } else {
      name = std::string_view(k.data(), k.size());
    }
    path_scope at(w.where(), name);
    w.string(name);
    w.raw(':');
    write(w, e);
  }
  w.close('}');
}

template <class T>
void write(writer& w, const T& v) {
  if constexpr (boost_json_value<T>) {
    write_boost_value(w, v);
  } else if constexpr (std::same_as<T, bool>) {
    w.boolean(v);
  } else if constexpr (char_like<T>) {
    static_assert(always_false<T>,
                  "coproc: a character is neither a string nor a number in a "
                  "typed message: send a std::string or an integer type");
  } else if constexpr (integer<T>) {
    if constexpr (std::is_signed_v<T>)
      w.integer(static_cast<std::int64_t>(v));
    else
      w.integer(static_cast<std::uint64_t>(v));
  } else if constexpr (floating<T>) {
    w.number(v);
  } else if constexpr (is_string<T>::value || is_string_view<T>::value) {
    w.string(std::string_view(v.data(), v.size()));
  } else if constexpr (char_array<T>) {
    // Up to the first NUL (a string literal's terminator), or all of it.
    constexpr std::size_t n = std::extent_v<T>;
    std::size_t size = 0;
    while (size < n && v[size] != '\0')
      ++size;
    w.string(std::string_view(v, size));
  } else if constexpr (char_pointer<T>) {
    if (v == nullptr) w.fail("a null char pointer is not a string");
    w.string(std::string_view(v));
  } else if constexpr (std::same_as<T, std::monostate> || std::same_as<T, std::nullopt_t>) {
    w.null();
  } else if constexpr (is_optional<T>::value) {
    if (v)
      write(w, *v);
    else
      w.null();
  } else if constexpr (is_variant<T>::value) {
    if (v.valueless_by_exception()) w.fail("the variant is valueless (an exception emptied it)");
    std::visit([&w](const auto& alternative) { write(w, alternative); }, v);
  } else if constexpr (user_from<T>) {
    write_user(w, v);
  } else if constexpr (described_enum<T>) {
    write_enum(w, v);
  } else if constexpr (described_struct<T>) {
    write_struct(w, v);
  } else if constexpr (is_tuple<T>::value) {
    write_tuple(w, v, std::make_index_sequence<std::tuple_size_v<T>>());
  } else if constexpr (is_std_array<T>::value) {
    write_array(w, v);
  } else if constexpr (map_like<T>) {
    write_map(w, v);
  } else if constexpr (set_like<T> || sequence<T>) {
    write_array(w, v);
  } else {
    static_assert(always_false<T>,
                  "coproc: this type cannot be sent as a typed message. Supported: bool, "
                  "integers, float, double, strings, std containers, optional, pair, tuple, "
                  "variant, structs described with BOOST_DESCRIBE_STRUCT, types with Boost.JSON "
                  "tag_invoke conversions (docs/connections.md, \"Typed messages\")");
  }
}

// ---------------------------------------------------------------------------------------------
// Reading.

template <class T>
bool read(reader& r, const node& n, T& out);

/// A new T read from `n` (nullopt on failure). T must be default-constructible, or have a
/// tag_invoke conversion.
template <class T>
std::optional<T> read_new(reader& r, const node& n);

template <class T>
bool fit_integer(bool negative, std::uint64_t magnitude, T& out) noexcept {
  if (negative) {
    if constexpr (std::is_signed_v<T>) {
      // magnitude >= 1; -magnitude fits when magnitude - 1 <= max.
      if (magnitude - 1 <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
        out = static_cast<T>(-static_cast<std::int64_t>(magnitude - 1) - 1);
        return true;
      }
    }
    return false;
  }
  if (magnitude > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) return false;
  out = static_cast<T>(magnitude);
  return true;
}

template <class T>
bool read_integer(reader& r, const node& n, T& out) {
  if (n.type == kind::integer) {
    if (fit_integer(n.negative, n.magnitude, out)) return true;
    return r.out_of_range(n, typeid(T));
  }
  if (n.type == kind::number) return r.not_integer(n, typeid(T));
  return r.expected(n, "an integer");
}

template <class T>
std::optional<T> read_user(reader& r, const node& n) {
  dependent_t<boost::json::value, T> jv;
  if (!r.to_boost(n, jv)) return std::nullopt;
  const auto& cjv = jv;
  try {
    if constexpr (user_try_to<T>) {
      auto result = tag_invoke(boost::json::try_value_to_tag<T>{}, cjv);
      if (result.has_value()) return std::optional<T>(std::move(*result));
      r.fail("its tag_invoke conversion failed: " + result.error().message());
      return std::nullopt;
    } else {
      return std::optional<T>(tag_invoke(boost::json::value_to_tag<T>{}, cjv));
    }
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    r.fail(std::string("its tag_invoke conversion failed: ") + e.what());
    return std::nullopt;
  }
}

template <class T>
bool read_struct(reader& r, const node& n, T& out) {
  static_assert(list_size<other_members<T>>::value == 0,
                "coproc: a typed message converts the public members of a described class; "
                "this class describes protected or private members");
  if (n.type != kind::object) return r.expected(n, "an object");
  return for_each_described(static_cast<public_members<T>*>(nullptr), [&](auto d) {
    auto& member = out.*d.pointer;
    using member_type = std::remove_cvref_t<decltype(member)>;
    const node* value = find_member(n, d.name);
    if (value == nullptr) {
      if constexpr (is_optional<member_type>::value) {
        member.reset();  // an optional field may be left out
        return true;
      } else {
        return r.missing_field(d.name);
      }
    }
    path_scope at(r.where(), std::string_view(d.name));
    return read(r, *value, member);
  });
}

template <class T>
bool read_enum(reader& r, const node& n, T& out) {
  if (n.type != kind::string) return r.expected(n, "a string");
  const std::string_view name = n.str();
  const bool found = !for_each_described(
      static_cast<boost::describe::describe_enumerators<T>*>(nullptr), [&](auto d) {
        if (name != d.name) return true;
        out = d.value;
        return false;
      });
  return found || r.not_enumerator(n, typeid(T));
}

template <class T, std::size_t... I>
bool read_tuple(reader& r, const node& n, [[maybe_unused]] T& out, std::index_sequence<I...>) {
  if (n.type != kind::array) return r.expected(n, "an array");
  if (n.size != sizeof...(I)) return r.wrong_size(n, sizeof...(I));
  return (... && [&] {
    path_scope at(r.where(), I);
    return read(r, n.element(I), std::get<I>(out));
  }());
}

template <class T>
bool read_fixed(reader& r, const node& n, T& out) {
  if (n.type != kind::array) return r.expected(n, "an array");
  if (n.size != out.size()) return r.wrong_size(n, out.size());
  for (std::size_t i = 0; i < n.size; ++i) {
    path_scope at(r.where(), i);
    if (!read(r, n.element(i), out[i])) return false;
  }
  return true;
}

template <class T>
bool read_sequence(reader& r, const node& n, T& out) {
  using element = typename T::value_type;
  if (n.type != kind::array) return r.expected(n, "an array");
  out.clear();
  // At most 1 MiB ahead of the elements that did convert: a hostile message of small wrong
  // elements must not make a vector of big ones reserve a multiple of its own size.
  if constexpr (requires { out.reserve(n.size); })
    out.reserve(std::min(n.size, (std::size_t(1) << 20) / sizeof(element) + 1));
  for (std::size_t i = 0; i < n.size; ++i) {
    path_scope at(r.where(), i);
    auto e = read_new<element>(r, n.element(i));
    if (!e) return false;
    if constexpr (set_like<T>)
      out.insert(std::move(*e));
    else
      out.push_back(std::move(*e));
  }
  return true;
}

template <class T>
bool read_map(reader& r, const node& n, T& out) {
  using key = std::remove_cv_t<typename T::key_type>;
  using mapped = typename T::mapped_type;
  static_assert(receivable_key<key>,
                "coproc: a map received as a typed message needs std::string or integer keys");
  if (n.type != kind::object) return r.expected(n, "an object");
  out.clear();
  for (std::size_t i = 0; i < n.size; ++i) {
    const node& name = n.key(i);
    path_scope at(r.where(), name.str());
    key k{};
    if constexpr (integer<key>) {
      bool negative = false;
      std::uint64_t magnitude = 0;
      if (!r.integer_key(name, typeid(key), negative, magnitude)) return false;
      if (!fit_integer(negative, magnitude, k)) return r.key_out_of_range(name, typeid(key));
    } else {
      k.assign(name.text, name.size);
    }
    auto e = read_new<mapped>(r, n.value(i));
    if (!e) return false;
    if constexpr (requires { out.insert_or_assign(std::move(k), std::move(*e)); })
      out.insert_or_assign(std::move(k), std::move(*e));  // the last of duplicates wins
    else
      out.emplace(std::move(k), std::move(*e));
  }
  return true;
}

template <class V, std::size_t I>
bool read_alternative(reader& r, const node& n, V& out) {
  using alternative = std::variant_alternative_t<I, V>;
  const std::size_t depth = r.where().depth();
  auto v = read_new<alternative>(r, n);
  r.where().truncate(depth);
  if (!v) return false;
  out.template emplace<I>(std::move(*v));
  return true;
}

template <class V, std::size_t... I>
bool read_variant(reader& r, const node& n, V& out, std::index_sequence<I...>) {
  // Untagged: the first alternative, in order, that reads the value.
  ++r.quiet;
  const bool found = (... || read_alternative<V, I>(r, n, out));
  --r.quiet;
  return found || r.no_alternative(n, typeid(V));
}

template <class T>
bool read(reader& r, const node& n, T& out) {
  if constexpr (boost_json_value<T>) {
    return r.to_boost(n, out);
  } else if constexpr (std::same_as<T, bool>) {
    if (n.type != kind::boolean) return r.expected(n, "a boolean");
    out = n.boolean;
    return true;
  } else if constexpr (char_like<T>) {
    static_assert(always_false<T>,
                  "coproc: a character is neither a string nor a number in a "
                  "typed message: receive a std::string or an integer type");
    return false;
  } else if constexpr (integer<T>) {
    return read_integer(r, n, out);
  } else if constexpr (floating<T>) {
    return r.number(n, out);
  } else if constexpr (is_string<T>::value) {
    if (n.type != kind::string) return r.expected(n, "a string");
    out.assign(n.text, n.size);
    return true;
  } else if constexpr (is_string_view<T>::value || char_array<T> || char_pointer<T>) {
    static_assert(always_false<T>,
                  "coproc: a received string would not outlive the message: "
                  "receive a std::string");
    return false;
  } else if constexpr (std::same_as<T, std::monostate>) {
    return n.type == kind::null || r.expected(n, "null");
  } else if constexpr (is_optional<T>::value) {
    if (n.type == kind::null) {
      out.reset();
      return true;
    }
    auto v = read_new<typename T::value_type>(r, n);
    if (!v) return false;
    out.emplace(std::move(*v));
    return true;
  } else if constexpr (is_variant<T>::value) {
    return read_variant(r, n, out, std::make_index_sequence<std::variant_size_v<T>>());
  } else if constexpr (user_to<T> || user_try_to<T>) {
    auto v = read_user<T>(r, n);
    if (!v) return false;
    out = std::move(*v);
    return true;
  } else if constexpr (described_enum<T>) {
    return read_enum(r, n, out);
  } else if constexpr (described_struct<T>) {
    return read_struct(r, n, out);
  } else if constexpr (is_tuple<T>::value) {
    return read_tuple(r, n, out, std::make_index_sequence<std::tuple_size_v<T>>());
  } else if constexpr (is_std_array<T>::value) {
    return read_fixed(r, n, out);
  } else if constexpr (map_like<T>) {
    return read_map(r, n, out);
  } else if constexpr (set_like<T> || sequence<T>) {
    return read_sequence(r, n, out);
  } else {
    static_assert(always_false<T>,
                  "coproc: this type cannot be received as a typed message. Supported: bool, "
                  "integers, float, double, std::string, std containers, optional, pair, tuple, "
                  "variant, structs described with BOOST_DESCRIBE_STRUCT, types with Boost.JSON "
                  "tag_invoke conversions (docs/connections.md, \"Typed messages\")");
    return false;
  }
}

template <class T>
std::optional<T> read_new(reader& r, const node& n) {
  if constexpr ((user_to<T> || user_try_to<T>)&&!is_optional<T>::value && !is_variant<T>::value) {
    return read_user<T>(r, n);
  } else {
    static_assert(std::is_default_constructible_v<T>,
                  "coproc: a type received as a typed message must be default-constructible "
                  "(or have a Boost.JSON tag_invoke conversion)");
    std::optional<T> v(std::in_place);
    if (!read(r, n, *v)) return std::nullopt;
    return v;
  }
}

}  // namespace json

template <class T>
bytes to_message(const T& value) {
  bytes out;
  json::writer w(out, typeid(T));
  json::write(w, value);
  return out;
}

namespace json {

// A fast path for the messages of a pool's map: an array of integers, or of arrays of
// integers (a chunk of argument lists). Read straight from the text, without the parse tree;
// anything unusual (whitespace, a number that is not a plain integer, out of range) returns
// false and the general reader takes over, with its exact errors.
template <class T>
struct fast_integer
    : std::bool_constant<std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                         !std::is_same_v<T, char> && !std::is_same_v<T, wchar_t> &&
                         !std::is_same_v<T, char8_t> && !std::is_same_v<T, char16_t> &&
                         !std::is_same_v<T, char32_t>> {};
template <class T>
struct fast_element : fast_integer<T> {};
template <class... Is>
struct fast_element<std::tuple<Is...>> : std::bool_constant<(fast_integer<Is>::value && ...)> {};
template <class T>
struct fast_array : std::false_type {};
template <class T, class A>
struct fast_array<std::vector<T, A>> : fast_element<T> {};

template <class I>
bool fast_read_integer(const char*& p, const char* end, I& out) noexcept {
  bool negative = false;
  if (p < end && *p == '-') {
    negative = true;
    ++p;
  }
  const char* first = p;
  std::uint64_t m = 0;
  while (p < end && *p >= '0' && *p <= '9') {
    if (p - first >= 18) return false;  // long numbers: the general reader checks the range
    m = m * 10 + static_cast<std::uint64_t>(*p - '0');
    ++p;
  }
  if (p == first || (*first == '0' && p - first > 1)) return false;
  if (negative) {
    if constexpr (std::is_unsigned_v<I>) {
      if (m != 0) return false;
      out = 0;
    } else {
      if (m > static_cast<std::uint64_t>(std::numeric_limits<I>::max()) + 1) return false;
      out = static_cast<I>(-static_cast<std::int64_t>(m));
    }
  } else {
    if (m > static_cast<std::uint64_t>(std::numeric_limits<I>::max())) return false;
    out = static_cast<I>(m);
  }
  return true;
}

template <class T>
bool fast_read_element(const char*& p, const char* end, T& out) noexcept {
  if constexpr (fast_integer<T>::value) {
    return fast_read_integer(p, end, out);
  } else {
    if (p == end || *p != '[') return false;
    ++p;
    bool ok = true;
    std::size_t i = 0;
    std::apply(
        [&](auto&... v) {
          ((ok = ok && (i++ == 0 || (p < end && *p++ == ',')) && fast_read_integer(p, end, v)),
           ...);
        },
        out);
    if (!ok || p == end || *p != ']') return false;
    ++p;
    return true;
  }
}

template <class V>
bool fast_read_array(std::span<const std::byte> text, V& out) {
  const char* p = reinterpret_cast<const char*>(text.data());
  const char* const end = p + text.size();
  if (p == end || *p != '[') return false;
  ++p;
  if (p < end && *p == ']') return p + 1 == end;
  out.reserve(text.size() / 8);
  for (;;) {
    typename V::value_type v{};
    if (!fast_read_element(p, end, v)) return false;
    out.push_back(v);
    if (p == end) return false;
    if (*p == ']') return p + 1 == end;
    if (*p++ != ',') return false;
  }
}

}  // namespace json

template <class T>
T from_message(std::span<const std::byte> text) {
  static_assert(!std::is_reference_v<T> && !std::is_const_v<T>,
                "coproc: receive a typed message as a plain value type");
  if constexpr (json::fast_array<T>::value) {
    T out;
    if (json::fast_read_array(text, out)) return out;
  }
  const json::document doc(text, typeid(T));
  json::reader r(typeid(T));
  std::optional<T> v = json::read_new<T>(r, doc.root());
  if (!v) r.raise();
  return std::move(*v);
}

}  // namespace coproc::detail
