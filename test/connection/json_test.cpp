// Typed messages: coproc::detail::to_message / from_message, what connection::send<T> and
// recv<T> exchange. Every supported type both ways and its exact JSON text, described structs,
// the tag_invoke fallback, every error (the message names the C++ type, and where), exact
// doubles, integer ranges, hostile input, and round trips through a real Python's json module.
#include <algorithm>
#include <array>
#include <bit>
#include <cfloat>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <numbers>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <coproc/coproc.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_to.hpp>
#include <boost/test/unit_test.hpp>

extern char** environ;

namespace msg {

struct point {
  int x = 0;
  double y = 0;
  std::optional<std::string> label;
  bool operator==(const point&) const = default;
};
BOOST_DESCRIBE_STRUCT(point, (), (x, y, label))

struct shape {
  std::string name;
  std::vector<point> corners;
  std::map<std::string, std::vector<int>> attributes;
  bool operator==(const shape&) const = default;
};
BOOST_DESCRIBE_STRUCT(shape, (), (name, corners, attributes))

struct base {
  int id = 0;
  bool operator==(const base&) const = default;
};
BOOST_DESCRIBE_STRUCT(base, (), (id))

struct derived : base {
  std::string extra;
  bool operator==(const derived&) const = default;
};
BOOST_DESCRIBE_STRUCT(derived, (base), (extra))

struct empty {
  bool operator==(const empty&) const = default;
};
BOOST_DESCRIBE_STRUCT(empty, (), ())

struct tree {
  int value = 0;
  std::vector<tree> children;
  bool operator==(const tree&) const = default;
};
BOOST_DESCRIBE_STRUCT(tree, (), (value, children))

enum class color { red, green, blue };
BOOST_DESCRIBE_ENUM(color, red, green, blue)

// Boost.JSON tag_invoke conversions: a fallback for types coproc does not know.
struct money {
  std::int64_t cents = 0;
  std::string currency;
  bool operator==(const money&) const = default;
};
void tag_invoke(boost::json::value_from_tag, boost::json::value& jv, const money& m) {
  jv = {{"cents", m.cents}, {"currency", m.currency}};
}
money tag_invoke(boost::json::value_to_tag<money>, const boost::json::value& jv) {
  const auto& o = jv.as_object();  // throws when it is not an object
  return money{o.at("cents").to_number<std::int64_t>(), std::string(o.at("currency").as_string())};
}

// Only the non-throwing form, and no default constructor.
struct celsius {
  explicit celsius(double d) : degrees(d) {}
  double degrees;
};
void tag_invoke(boost::json::value_from_tag, boost::json::value& jv, const celsius& c) {
  jv = c.degrees;
}
boost::system::result<celsius> tag_invoke(boost::json::try_value_to_tag<celsius>,
                                          const boost::json::value& jv) {
  if (!jv.is_double()) return boost::json::make_error_code(boost::json::error::not_number);
  return celsius(jv.get_double());
}

// Described AND with tag_invoke: the user's own conversion wins.
struct version {
  int major = 0;
  int minor = 0;
};
BOOST_DESCRIBE_STRUCT(version, (), (major, minor))
void tag_invoke(boost::json::value_from_tag, boost::json::value& jv, const version& v) {
  jv = std::to_string(v.major) + "." + std::to_string(v.minor);
}
version tag_invoke(boost::json::value_to_tag<version>, const boost::json::value& jv) {
  const std::string s(jv.as_string());
  const auto dot = s.find('.');
  if (dot == std::string::npos) throw std::invalid_argument("no dot in \"" + s + "\"");
  return version{std::stoi(s.substr(0, dot)), std::stoi(s.substr(dot + 1))};
}

// Copying it throws: a variant holding it can be left valueless.
struct boom {
  boom() = default;
  boom(const boom&) { throw std::runtime_error("boom"); }
  boom& operator=(const boom&) = default;
};
BOOST_DESCRIBE_STRUCT(boom, (), ())

}  // namespace msg

namespace {

using coproc::detail::from_message;
using coproc::detail::to_message;

coproc::bytes bytes_of(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return coproc::bytes(p, p + s.size());
}

std::string text_of(const coproc::bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

template <class T>
std::string json_of(const T& v) {
  return text_of(to_message(v));
}

template <class T>
T read(std::string_view s) {
  return from_message<T>(bytes_of(s));
}

template <class T>
T round_trip(const T& v) {
  return from_message<T>(to_message(v));
}

// what() of the message_error that reading `s` as T throws ("" when it reads).
template <class T>
std::string read_error(std::string_view s) {
  try {
    (void)read<T>(s);
  } catch (const coproc::message_error& e) {
    return e.what();
  }
  return "";
}

template <class T>
std::string send_error(const T& v) {
  try {
    (void)to_message(v);
  } catch (const coproc::message_error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

#define CHECK_CONTAINS(s, part) \
  BOOST_TEST(contains((s), (part)), "\"" << (s) << "\" should contain \"" << (part) << "\"")

std::uint64_t bits(double d) {
  return std::bit_cast<std::uint64_t>(d);
}
std::uint32_t bits(float f) {
  return std::bit_cast<std::uint32_t>(f);
}

// An allocator that records the largest allocation (bytes) it was asked for.
std::size_t largest_allocation = 0;
template <class T>
struct counting_allocator {
  using value_type = T;
  counting_allocator() = default;
  template <class U>
  counting_allocator(const counting_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    largest_allocation = std::max(largest_allocation, n * sizeof(T));
    return std::allocator<T>().allocate(n);
  }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  friend bool operator==(const counting_allocator&, const counting_allocator&) = default;
};

// ---- Python ----------------------------------------------------------------------------------

// Runs `python3 -c script file` where `file` holds `input`; returns its standard output.
std::string run_python(const std::string& script, const std::string& input) {
  char path[] = "/tmp/coproc_json_test_XXXXXX";
  const int fd = mkstemp(path);
  BOOST_REQUIRE(fd >= 0);
  BOOST_REQUIRE(::write(fd, input.data(), input.size()) == static_cast<ssize_t>(input.size()));
  ::close(fd);
  int out[2];
  BOOST_REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  std::string arg0 = "python3", arg1 = "-c";
  std::vector<char*> argv{arg0.data(), arg1.data(), const_cast<char*>(script.c_str()), path,
                          nullptr};
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, "python3", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  std::string output;
  if (rc == 0) {
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n > 0) {
        output.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
  }
  ::close(out[0]);
  ::unlink(path);
  BOOST_REQUIRE_MESSAGE(rc == 0, "python3 could not be started: " << std::strerror(rc));
  int status = 0;
  BOOST_REQUIRE(::waitpid(pid, &status, 0) == pid);
  BOOST_REQUIRE_MESSAGE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                        "python3 failed (status " << status << ")");
  return output;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

// For each input line (one message): the line json.loads reads it back as, json.dumps'ed
// (compact), and its repr.
constexpr const char* python_echo = R"PY(
import json, sys
with open(sys.argv[1], 'rb') as f:
    for line in f.read().split(b'\n'):
        if not line:
            continue
        v = json.loads(line)
        print(json.dumps(v, separators=(',', ':'), ensure_ascii=False))
        print(repr(v))
)PY";

}  // namespace

// =============================================================================================

BOOST_AUTO_TEST_SUITE(json_values)

BOOST_AUTO_TEST_CASE(booleans_and_null) {
  BOOST_TEST(json_of(true) == "true");
  BOOST_TEST(json_of(false) == "false");
  BOOST_TEST(read<bool>("true") == true);
  BOOST_TEST(read<bool>(" false ") == false);
  BOOST_TEST(json_of(std::monostate{}) == "null");
  BOOST_TEST(json_of(std::nullopt) == "null");
  BOOST_TEST((read<std::monostate>("null") == std::monostate{}));
}

template <class T>
void integer_limits() {
  constexpr T lo = std::numeric_limits<T>::min();
  constexpr T hi = std::numeric_limits<T>::max();
  BOOST_TEST(json_of(lo) == std::to_string(lo));
  BOOST_TEST(json_of(hi) == std::to_string(hi));
  BOOST_TEST(round_trip(lo) == lo);
  BOOST_TEST(round_trip(hi) == hi);
  BOOST_TEST(round_trip(T(0)) == T(0));
  BOOST_TEST(round_trip(T(1)) == T(1));
  // One past each end: an error naming the type, never a wrapped value.
  const std::string name = coproc::detail::json::type_name(typeid(T));
  auto past = [](std::string digits, bool negative) {
    // digits + 1, in decimal
    for (auto i = digits.size(); i-- > 0;) {
      if (digits[i] != '9') {
        ++digits[i];
        return (negative ? "-" : "") + digits;
      }
      digits[i] = '0';
    }
    return (negative ? "-1" : "1") + digits;
  };
  const std::string above = past(std::to_string(hi), false);
  CHECK_CONTAINS(read_error<T>(above),
                 "cannot read " + name + " from a message: " + above + " does not fit in " + name);
  if constexpr (std::is_signed_v<T>) {
    const std::string below = past(std::to_string(lo).substr(1), true);
    CHECK_CONTAINS(read_error<T>(below), below + " does not fit in " + name);
  } else {
    CHECK_CONTAINS(read_error<T>("-1"), "-1 does not fit in " + name);
  }
}

BOOST_AUTO_TEST_CASE(integers_every_type_to_its_limits) {
  integer_limits<signed char>();
  integer_limits<unsigned char>();
  integer_limits<short>();
  integer_limits<unsigned short>();
  integer_limits<int>();
  integer_limits<unsigned int>();
  integer_limits<long>();
  integer_limits<unsigned long>();
  integer_limits<long long>();
  integer_limits<unsigned long long>();
  integer_limits<std::int8_t>();
  integer_limits<std::uint16_t>();
  integer_limits<std::int32_t>();
  integer_limits<std::uint64_t>();
}

BOOST_AUTO_TEST_CASE(integers_are_range_checked_never_wrapped) {
  CHECK_CONTAINS(read_error<std::uint8_t>("256"), "256 does not fit in unsigned char");
  CHECK_CONTAINS(read_error<std::int16_t>("70000"), "70000 does not fit in short");
  CHECK_CONTAINS(read_error<unsigned>("-1"), "-1 does not fit in unsigned int");
  CHECK_CONTAINS(read_error<std::int64_t>("9223372036854775808"),
                 "9223372036854775808 does not fit in long");
  CHECK_CONTAINS(read_error<std::uint64_t>("18446744073709551616"),
                 "18446744073709551616 does not fit in unsigned long");
  // Python's ints have no limit: 10**30 is an integer too large, not a float.
  CHECK_CONTAINS(read_error<std::int64_t>("1000000000000000000000000000000"),
                 "1000000000000000000000000000000 does not fit in long");
  CHECK_CONTAINS(read_error<std::int64_t>("-1000000000000000000000000000000"),
                 "does not fit in long");
  // A number with a fraction or an exponent is not an integer, even 1.0 (Python's float).
  CHECK_CONTAINS(read_error<int>("1.5"), "expected an integer, got the number 1.5 (for int)");
  CHECK_CONTAINS(read_error<int>("1.0"), "expected an integer, got the number 1.0");
  CHECK_CONTAINS(read_error<int>("1e2"), "expected an integer, got the number 1e2");
  CHECK_CONTAINS(read_error<int>("true"),
                 "cannot read int from a message: expected an integer, got a boolean");
  CHECK_CONTAINS(read_error<int>("\"1\""), "expected an integer, got a string");
  CHECK_CONTAINS(read_error<int>("null"), "expected an integer, got null");
  BOOST_TEST(read<int>("-0") == 0);
}

BOOST_AUTO_TEST_CASE(doubles_shortest_text_that_python_reads_as_floats) {
  BOOST_TEST(json_of(1.0) == "1.0");  // not "1": Python would read an int
  BOOST_TEST(json_of(-0.0) == "-0.0");
  BOOST_TEST(json_of(0.0) == "0.0");
  BOOST_TEST(json_of(0.1) == "0.1");
  BOOST_TEST(json_of(123456.0) == "123456.0");
  BOOST_TEST(json_of(1e300) == "1e+300");
  BOOST_TEST(json_of(2.5e-8) == "2.5e-08");
  BOOST_TEST(json_of(std::numeric_limits<double>::max()) == "1.7976931348623157e+308");
  BOOST_TEST(json_of(std::numeric_limits<double>::denorm_min()) == "5e-324");
  BOOST_TEST(json_of(0.1f) == "0.1");  // a float's own shortest form
  BOOST_TEST(json_of(16777216.0f) == "16777216.0");
  for (double d :
       {1.0, -0.0, 0.1, 1e300, 5e-324, DBL_MAX, DBL_MIN, -DBL_MIN, 1.0 / 3, std::numbers::pi})
    BOOST_TEST(bits(round_trip(d)) == bits(d));
  BOOST_TEST(std::signbit(round_trip(-0.0)));
  for (float f : {1.0f, -0.0f, 0.1f, FLT_MAX, FLT_MIN, FLT_TRUE_MIN, 1.0f / 3})
    BOOST_TEST(bits(round_trip(f)) == bits(f));
}

BOOST_AUTO_TEST_CASE(doubles_read_any_json_number_exactly) {
  BOOST_TEST(read<double>("1") == 1.0);
  BOOST_TEST(read<double>("-7") == -7.0);
  BOOST_TEST(read<double>("1E+16") == 1e16);
  BOOST_TEST(read<double>("0.1e1") == 1.0);
  BOOST_TEST(read<double>("1e-05") == 1e-5);
  BOOST_TEST(read<float>("0.1") == 0.1f);
  BOOST_TEST(read<float>("3") == 3.0f);
  // Integers beyond 64 bits (Python's ints) become the nearest double.
  BOOST_TEST(bits(read<double>("123456789012345678901234567890")) == bits(1.2345678901234568e+29));
  BOOST_TEST(bits(read<double>("18446744073709551617")) == bits(18446744073709551616.0));
  // Below the smallest subnormal: zero, as Python reads it.
  BOOST_TEST(bits(read<double>("1e-400")) == bits(0.0));
  BOOST_TEST(bits(read<double>("-1e-400")) == bits(-0.0));
  BOOST_TEST(bits(read<double>("2.5e-324")) == bits(5e-324));
  BOOST_TEST(bits(read<float>("1e-50")) == bits(0.0f));
  // Beyond the largest: an error (Python's json would read inf, which C++ cannot send back).
  CHECK_CONTAINS(read_error<double>("1e400"),
                 "cannot read double from a message: 1e400 does not fit in double");
  CHECK_CONTAINS(read_error<float>("1e39"), "1e39 does not fit in float");
  CHECK_CONTAINS(read_error<double>("1.7976931348623159e308"), "does not fit in double");
  CHECK_CONTAINS(read_error<double>("\"1.5\""), "expected a number, got a string");
  // The text, the long way: a number JSON allows but Boost.JSON 1.81 reads off by one ulp.
  const std::string long_text = "0.3000000000000000166533453693773481063544750213623046875";
  double expected = 0;
  std::from_chars(long_text.data(), long_text.data() + long_text.size(), expected);
  BOOST_TEST(bits(read<double>(long_text)) == bits(expected));
}

BOOST_AUTO_TEST_CASE(random_doubles_round_trip_bit_exact) {
  std::mt19937_64 rng(20240611);
  std::size_t boost_off = 0;
  std::vector<double> all;
  for (int i = 0; i < 200000; ++i) {
    const double d = std::bit_cast<double>(rng());
    if (!std::isfinite(d)) continue;
    all.push_back(d);
    const coproc::bytes m = to_message(d);
    BOOST_TEST_REQUIRE(bits(from_message<double>(m)) == bits(d), text_of(m));
    // What Boost.JSON 1.81 itself would have read (for the record; coproc does not use it).
    const auto jv = boost::json::parse(text_of(m));
    if (bits(jv.to_number<double>()) != bits(d)) ++boost_off;
  }
  BOOST_TEST_MESSAGE("Boost.JSON 1.81's parser read " << boost_off << " of " << all.size()
                                                      << " shortest doubles back differently");
  // The same through one message, and through 17 significant digits (not the shortest form).
  BOOST_TEST((round_trip(all) == all));
  for (std::size_t i = 0; i < 20000; ++i) {
    char buf[64];
    const int n = std::snprintf(buf, sizeof buf, "%.17g", all[i]);
    BOOST_TEST_REQUIRE(bits(read<double>(std::string_view(buf, n))) == bits(all[i]), buf);
  }
  std::mt19937 rng32(7);
  for (int i = 0; i < 200000; ++i) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(rng32()));
    if (!std::isfinite(f)) continue;
    const coproc::bytes m = to_message(f);
    BOOST_TEST_REQUIRE(bits(from_message<float>(m)) == bits(f), text_of(m));
  }
}

BOOST_AUTO_TEST_CASE(random_decimal_texts_read_as_strtod_does) {
  // Decimal texts of every length (as people and other programs write them), checked against
  // glibc's strtod, which rounds correctly.
  std::mt19937_64 rng(42);
  for (int i = 0; i < 100000; ++i) {
    std::string t = std::to_string(rng() % 10);
    const int digits = static_cast<int>(rng() % 30);
    if (digits > 0) t += '.';
    for (int k = 0; k < digits; ++k)
      t += static_cast<char>('0' + rng() % 10);
    t += 'e' + std::to_string(static_cast<int>(rng() % 640) - 330);
    const double expected = std::strtod(t.c_str(), nullptr);
    if (!std::isfinite(expected)) continue;
    BOOST_TEST_REQUIRE(bits(read<double>(t)) == bits(expected), t);
  }
}

BOOST_AUTO_TEST_CASE(nan_and_infinity_cannot_be_sent) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  BOOST_TEST(send_error(nan) == "cannot send double as a message: NaN has no JSON form");
  BOOST_TEST(send_error(inf) == "cannot send double as a message: infinity has no JSON form");
  BOOST_TEST(send_error(-inf) == "cannot send double as a message: -infinity has no JSON form");
  BOOST_TEST(send_error(std::numeric_limits<float>::quiet_NaN()) ==
             "cannot send float as a message: NaN has no JSON form");
  BOOST_TEST(send_error(std::vector<double>{1, nan}) ==
             "cannot send std::vector<double> as a message: at [1]: NaN has no JSON form");
  BOOST_TEST(send_error(msg::point{1, inf, {}}) ==
             "cannot send msg::point as a message: at .y: infinity has no JSON form");
  // And Python's NaN/Infinity extensions are not JSON.
  CHECK_CONTAINS(read_error<double>("NaN"), "cannot read double from a message: not valid JSON");
  CHECK_CONTAINS(read_error<double>("Infinity"), "not valid JSON");
  CHECK_CONTAINS(read_error<double>("-Infinity"), "not valid JSON");
}

BOOST_AUTO_TEST_CASE(strings_escaped_and_utf8) {
  BOOST_TEST(json_of(std::string("plain")) == R"("plain")");
  BOOST_TEST(json_of(std::string("q\"b\\s/")) == R"("q\"b\\s/")");
  BOOST_TEST(json_of(std::string("\n\t\r\b\f")) == R"("\n\t\r\b\f")");
  BOOST_TEST(json_of(std::string("\x01\x1f\x7f", 3)) == "\"\\u0001\\u001f\x7f\"");
  BOOST_TEST(json_of(std::string("a\0b", 3)) == R"("a\u0000b")");
  BOOST_TEST(json_of(std::string("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")) ==
             "\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  std::string every;
  for (int c = 0; c < 128; ++c)
    every += static_cast<char>(c);
  every += "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf";
  BOOST_TEST(round_trip(every) == every);
  // \u escapes (Python's ensure_ascii) become UTF-8, surrogate pairs included.
  BOOST_TEST(read<std::string>(R"("h\u00e9 \u20ac \ud83d\ude00")") ==
             "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  BOOST_TEST(read<std::string>(R"("a\u0000b")") == std::string("a\0b", 3));
  // Send only: std::string_view, char arrays (up to the first NUL), char pointers.
  BOOST_TEST(json_of(std::string_view("view")) == R"("view")");
  BOOST_TEST(json_of("literal") == R"("literal")");
  char buffer[8] = {'a', 'b', '\0', 'z'};
  BOOST_TEST(json_of(buffer) == R"("ab")");
  const char full[3] = {'x', 'y', 'z'};  // no NUL: all of it
  BOOST_TEST(json_of(full) == R"("xyz")");
  const char* pointer = "ptr";
  BOOST_TEST(json_of(pointer) == R"("ptr")");
  BOOST_TEST(send_error(static_cast<const char*>(nullptr)) ==
             "cannot send const char* as a message: a null char pointer is not a string");
  BOOST_TEST((read<std::vector<std::string>>(R"(["a", "", "c"])") ==
              std::vector<std::string>{"a", "", "c"}));
}

BOOST_AUTO_TEST_CASE(strings_that_are_not_utf8_are_errors) {
  for (std::string bad : {"\xff", "\x80", "\xc3(", "\xc0\x80", "\xe0\x80\xaf", "\xed\xa0\x80",
                          "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\xe2\x82"}) {
    const std::string e = send_error(std::string("ok") + bad);
    CHECK_CONTAINS(e, "cannot send std::string as a message: string is not valid UTF-8 (byte 2");
    CHECK_CONTAINS(read_error<std::string>("\"" + bad + "\""),
                   "cannot read std::string from a message: not valid JSON");
  }
  BOOST_TEST(send_error(std::map<std::string, int>{{"k\xff", 1}}) ==
             "cannot send std::map<std::string, int> as a message: at [\"k\\xff\"]: string is "
             "not valid UTF-8 (byte 1 of 2)");
  // Lone surrogates (Python's json.dumps writes them for such str): not valid here.
  CHECK_CONTAINS(read_error<std::string>(R"("\ud800")"), "not valid JSON");
  CHECK_CONTAINS(read_error<std::string>(R"("\udc00")"), "not valid JSON");
}

BOOST_AUTO_TEST_CASE(sequences) {
  BOOST_TEST(json_of(std::vector<int>{1, -2, 3}) == "[1,-2,3]");
  BOOST_TEST(json_of(std::vector<int>{}) == "[]");
  BOOST_TEST(json_of(std::deque<std::string>{"a", "b"}) == R"(["a","b"])");
  BOOST_TEST(json_of(std::list<double>{0.5}) == "[0.5]");
  BOOST_TEST(json_of(std::array<int, 3>{1, 2, 3}) == "[1,2,3]");
  BOOST_TEST(json_of(std::vector<bool>{true, false, true}) == "[true,false,true]");
  BOOST_TEST((round_trip(std::vector<bool>{true, false}) == std::vector<bool>{true, false}));
  BOOST_TEST((round_trip(std::deque<int>{4, 5}) == std::deque<int>{4, 5}));
  BOOST_TEST((round_trip(std::list<std::string>{"x"}) == std::list<std::string>{"x"}));
  BOOST_TEST(
      (round_trip(std::array<std::string, 2>{"a", "b"}) == std::array<std::string, 2>{"a", "b"}));
  BOOST_TEST((round_trip(std::array<int, 0>{}) == std::array<int, 0>{}));
  BOOST_TEST((read_error<std::array<int, 2>>("[1,2,3]")) ==
             "cannot read std::array<int, 2> from a message: expected an array of 2 elements, "
             "got 3");
  CHECK_CONTAINS(read_error<std::vector<int>>("{}"),
                 "cannot read std::vector<int> from a message: expected an array, got an object");
  BOOST_TEST(read_error<std::vector<int>>("[1, 2, \"3\"]") ==
             "cannot read std::vector<int> from a message: at [2]: expected an integer, got a "
             "string");
}

BOOST_AUTO_TEST_CASE(sets) {
  BOOST_TEST(json_of(std::set<int>{3, 1, 2}) == "[1,2,3]");
  BOOST_TEST((read<std::set<int>>("[3,3,1]") == std::set<int>{1, 3}));  // as Python's set(list)
  BOOST_TEST((round_trip(std::unordered_set<std::string>{"a", "b"}) ==
              std::unordered_set<std::string>{"a", "b"}));
  BOOST_TEST((round_trip(std::set<std::vector<int>>{{1}, {2, 3}}) ==
              std::set<std::vector<int>>{{1}, {2, 3}}));
  CHECK_CONTAINS(read_error<std::set<int>>("{\"a\":1}"),
                 "cannot read std::set<int> from a message: expected an array, got an object");
}

BOOST_AUTO_TEST_CASE(maps_with_string_keys) {
  const std::map<std::string, int> m{{"a", 1}, {"b c", 2}, {"", 3}};
  BOOST_TEST(json_of(m) == R"({"":3,"a":1,"b c":2})");
  BOOST_TEST((round_trip(m) == m));
  BOOST_TEST((round_trip(std::unordered_map<std::string, std::vector<int>>{{"x", {1}}}) ==
              std::unordered_map<std::string, std::vector<int>>{{"x", {1}}}));
  BOOST_TEST(json_of(std::map<std::string_view, int>{{"v", 1}}) == R"({"v":1})");
  // Duplicate keys: the last wins, as in Python.
  BOOST_TEST((read<std::map<std::string, int>>(R"({"k":1,"k":2})") ==
              std::map<std::string, int>{{"k", 2}}));
  BOOST_TEST((read_error<std::map<std::string, int>>("[1]")) ==
             "cannot read std::map<std::string, int> from a message: expected an object, got an "
             "array");
  BOOST_TEST((read_error<std::map<std::string, int>>(R"({"ok":1,"bad key":"x"})")) ==
             "cannot read std::map<std::string, int> from a message: at [\"bad key\"]: expected "
             "an integer, got a string");
}

BOOST_AUTO_TEST_CASE(maps_with_integer_keys_as_python_writes_them) {
  // Python's json.dumps({1: 'a'}) is {"1": "a"}: integer keys travel as decimal strings.
  const std::map<int, std::string> m{{-5, "neg"}, {0, "zero"}, {42, "x"}};
  BOOST_TEST(json_of(m) == R"({"-5":"neg","0":"zero","42":"x"})");
  BOOST_TEST((round_trip(m) == m));
  const std::map<std::uint64_t, int> big{{std::numeric_limits<std::uint64_t>::max(), 1}};
  BOOST_TEST(json_of(big) == R"({"18446744073709551615":1})");
  BOOST_TEST((round_trip(big) == big));
  const std::map<std::int64_t, int> small{{std::numeric_limits<std::int64_t>::min(), 1}};
  BOOST_TEST((round_trip(small) == small));
  BOOST_TEST((round_trip(std::unordered_map<short, bool>{{-3, true}}) ==
              std::unordered_map<short, bool>{{-3, true}}));
  // Only the canonical decimal form (what Python's str(int) writes): no two keys collide.
  for (const char* key : {"01", "+1", "-0", "1.0", "1e3", " 1", "1 ", "", "-", "abc", "0x10"}) {
    const std::string e = read_error<std::map<int, int>>("{\"" + std::string(key) + "\":1}");
    CHECK_CONTAINS(e, "cannot read std::map<int, int> from a message: at ");
    CHECK_CONTAINS(e, "is not an integer in decimal (for int)");
  }
  BOOST_TEST((read_error<std::map<unsigned char, int>>(R"({"256":1})")) ==
             "cannot read std::map<unsigned char, int> from a message: at [\"256\"]: key "
             "\"256\" does not fit in unsigned char");
  CHECK_CONTAINS((read_error<std::map<unsigned, int>>(R"({"-1":1})")),
                 "key \"-1\" does not fit in unsigned int");
  CHECK_CONTAINS(
      (read_error<std::map<std::int64_t, int>>(R"({"100000000000000000000000000000000000000":1})")),
      "does not fit in long");
}

BOOST_AUTO_TEST_CASE(optionals) {
  BOOST_TEST(json_of(std::optional<int>{}) == "null");
  BOOST_TEST(json_of(std::optional<int>{3}) == "3");
  BOOST_TEST(!read<std::optional<int>>("null").has_value());
  BOOST_TEST((read<std::optional<int>>("7") == std::optional<int>(7)));
  BOOST_TEST((round_trip(std::vector<std::optional<std::string>>{"a", std::nullopt}) ==
              std::vector<std::optional<std::string>>{"a", std::nullopt}));
  BOOST_TEST((round_trip(std::optional<std::vector<int>>{{1, 2}}) ==
              std::optional<std::vector<int>>{{1, 2}}));
  CHECK_CONTAINS(read_error<std::optional<int>>("\"x\""),
                 "cannot read std::optional<int> from a message: expected an integer, got a "
                 "string");
}

BOOST_AUTO_TEST_CASE(pairs_and_tuples) {
  BOOST_TEST(json_of(std::pair<int, std::string>{1, "a"}) == R"([1,"a"])");
  BOOST_TEST(json_of(std::tuple<>{}) == "[]");
  BOOST_TEST(json_of(std::tuple<int, double, bool, std::string>{1, 2.5, true, "s"}) ==
             R"([1,2.5,true,"s"])");
  const std::tuple<int, std::vector<int>, std::pair<bool, std::string>> t{1, {2}, {false, "x"}};
  BOOST_TEST((round_trip(t) == t));
  BOOST_TEST((read_error<std::pair<int, int>>("[1]")) ==
             "cannot read std::pair<int, int> from a message: expected an array of 2 elements, "
             "got 1");
  BOOST_TEST((read_error<std::tuple<int, std::string>>("[1, 2]")) ==
             "cannot read std::tuple<int, std::string> from a message: at [1]: expected a "
             "string, got an integer");
}

BOOST_AUTO_TEST_CASE(variants_untagged_first_match_in_order) {
  using v = std::variant<std::monostate, int, std::string, std::vector<int>, msg::point>;
  BOOST_TEST(json_of(v{}) == "null");
  BOOST_TEST(json_of(v{5}) == "5");
  BOOST_TEST(json_of(v{std::string("s")}) == R"("s")");
  BOOST_TEST(json_of(v{std::vector<int>{1}}) == "[1]");
  BOOST_TEST(json_of(v{msg::point{1, 2, {}}}) == R"({"x":1,"y":2.0,"label":null})");
  for (const v& x :
       {v{}, v{5}, v{std::string("s")}, v{std::vector<int>{1, 2}}, v{msg::point{1, 2, "p"}}}) {
    const v back = round_trip(x);
    BOOST_TEST(back.index() == x.index());
    BOOST_TEST((back == x));
  }
  // The first alternative that reads the value wins: order the alternatives.
  BOOST_TEST((read<std::variant<int, double>>("3")).index() == 0u);
  BOOST_TEST((read<std::variant<int, double>>("3.5")).index() == 1u);
  BOOST_TEST((read<std::variant<double, int>>("3")).index() == 0u);
  BOOST_TEST((read<std::variant<std::uint8_t, int>>("300")).index() == 1u);
  // A failed alternative leaves nothing behind (its path, its error).
  BOOST_TEST((read<std::variant<std::vector<int>, std::vector<std::string>>>(R"(["a"])")).index() ==
             1u);
  BOOST_TEST((read_error<std::vector<std::variant<int, std::string>>>(R"([1, "a", [1]])")) ==
             "cannot read std::vector<std::variant<int, std::string>> from a message: at [2]: no "
             "alternative of std::variant<int, std::string> reads an array");
  // A variant emptied by an exception cannot be sent.
  std::variant<int, msg::boom> empty;
  msg::boom b;
  try {
    empty.emplace<1>(b);
  } catch (const std::runtime_error&) {
  }
  BOOST_REQUIRE(empty.valueless_by_exception());
  CHECK_CONTAINS(send_error(empty), "the variant is valueless");
}

BOOST_AUTO_TEST_SUITE_END()

// =============================================================================================

BOOST_AUTO_TEST_SUITE(json_described)

BOOST_AUTO_TEST_CASE(described_structs_are_objects) {
  BOOST_TEST(json_of(msg::point{1, 2.5, "p"}) == R"({"x":1,"y":2.5,"label":"p"})");
  BOOST_TEST(json_of(msg::empty{}) == "{}");
  BOOST_TEST(json_of(msg::derived{{7}, "e"}) == R"({"id":7,"extra":"e"})");
  BOOST_TEST((round_trip(msg::derived{{7}, "e"}) == msg::derived{{7}, "e"}));
  BOOST_TEST((round_trip(msg::empty{}) == msg::empty{}));
  const msg::shape s{"tri", {{0, 0, {}}, {1, 0, "b"}, {0, 1, {}}}, {{"k", {1, 2}}, {"e", {}}}};
  BOOST_TEST(json_of(s) ==
             R"({"name":"tri","corners":[{"x":0,"y":0.0,"label":null},{"x":1,"y":0.0,)"
             R"("label":"b"},{"x":0,"y":1.0,"label":null}],"attributes":{"e":[],"k":[1,2]}})");
  BOOST_TEST((round_trip(s) == s));
  // Fields in any order; unknown fields ignored; optional fields may be left out; duplicates:
  // the last wins.
  BOOST_TEST(
      (read<msg::point>(R"({"label":"l","extra":[1,{}],"y":1,"x":2})") == msg::point{2, 1, "l"}));
  BOOST_TEST((read<msg::point>(R"({"x":1,"y":2})") == msg::point{1, 2, {}}));
  BOOST_TEST((read<msg::point>(R"({"x":1,"y":2,"x":3})") == msg::point{3, 2, {}}));
}

BOOST_AUTO_TEST_CASE(described_struct_errors_name_the_type_and_the_place) {
  BOOST_TEST(read_error<msg::point>(R"({"y":2})") ==
             "cannot read msg::point from a message: missing field \"x\"");
  BOOST_TEST(read_error<msg::point>("[]") ==
             "cannot read msg::point from a message: expected an object, got an array");
  BOOST_TEST(read_error<msg::shape>(
                 R"({"name":"n","corners":[{"x":1,"y":1},{"x":1,"y":1},{"x":1,"y":"s"}],)"
                 R"("attributes":{}})") ==
             "cannot read msg::shape from a message: at .corners[2].y: expected a number, got a "
             "string");
  BOOST_TEST(read_error<msg::shape>(R"({"name":"n","corners":[],"attributes":{"a":[1,2.5]}})") ==
             "cannot read msg::shape from a message: at .attributes.a[1]: expected an integer, "
             "got the number 2.5 (for int)");
  BOOST_TEST(read_error<std::vector<msg::point>>(R"([{"x":1,"y":1},{"y":1}])") ==
             "cannot read std::vector<msg::point> from a message: at [1]: missing field \"x\"");
}

BOOST_AUTO_TEST_CASE(recursive_described_structs) {
  msg::tree t{1, {{2, {}}, {3, {{4, {}}}}}};
  BOOST_TEST(json_of(t) ==
             R"({"value":1,"children":[{"value":2,"children":[]},{"value":3,"children":[)"
             R"({"value":4,"children":[]}]}]})");
  BOOST_TEST((round_trip(t) == t));
}

BOOST_AUTO_TEST_CASE(described_enums_are_their_names) {
  BOOST_TEST(json_of(msg::color::green) == R"("green")");
  BOOST_TEST((read<msg::color>(R"("blue")") == msg::color::blue));
  BOOST_TEST((round_trip(std::map<std::string, msg::color>{{"a", msg::color::red}}) ==
              std::map<std::string, msg::color>{{"a", msg::color::red}}));
  BOOST_TEST(read_error<msg::color>(R"("purple")") ==
             "cannot read msg::color from a message: \"purple\" is not an enumerator of "
             "msg::color");
  CHECK_CONTAINS(read_error<msg::color>("1"), "expected a string, got an integer");
  BOOST_TEST(send_error(static_cast<msg::color>(7)) ==
             "cannot send msg::color as a message: 7 is not a described enumerator of "
             "msg::color");
}

BOOST_AUTO_TEST_SUITE_END()

// =============================================================================================

BOOST_AUTO_TEST_SUITE(json_tag_invoke)

BOOST_AUTO_TEST_CASE(tag_invoke_types_as_a_fallback) {
  const msg::money m{1250, "EUR"};
  BOOST_TEST(json_of(m) == R"({"cents":1250,"currency":"EUR"})");
  BOOST_TEST((round_trip(m) == m));
  const std::map<std::string, std::vector<msg::money>> wallet{{"w", {m, {1, "USD"}}}};
  BOOST_TEST((round_trip(wallet) == wallet));
  BOOST_TEST((round_trip(std::optional<msg::money>(m)) == std::optional<msg::money>(m)));
  // Not default-constructible, try_value_to_tag only: works in containers and optionals.
  const auto temps = round_trip(std::vector<msg::celsius>{msg::celsius(21.5), msg::celsius(-3)});
  BOOST_REQUIRE(temps.size() == 2u);
  BOOST_TEST(temps[1].degrees == -3.0);
  BOOST_TEST(round_trip(std::optional<msg::celsius>(msg::celsius(0.1)))->degrees == 0.1);
  // A described struct with its own tag_invoke: the user's conversion wins.
  BOOST_TEST(json_of(msg::version{1, 2}) == R"("1.2")");
  BOOST_TEST(read<msg::version>(R"("3.4")").minor == 4);
}

BOOST_AUTO_TEST_CASE(tag_invoke_failures_are_message_errors) {
  BOOST_TEST(read_error<std::vector<msg::money>>(R"([{"cents":1,"currency":"X"},[]])")
                 .starts_with("cannot read std::vector<msg::money> from a message: at [1]: its "
                              "tag_invoke conversion failed: "));
  CHECK_CONTAINS(read_error<msg::version>(R"("12")"),
                 "cannot read msg::version from a message: its tag_invoke conversion failed: "
                 "no dot in \"12\"");
  CHECK_CONTAINS((read_error<std::map<std::string, msg::celsius>>(R"({"t":1})")),
                 "cannot read std::map<std::string, msg::celsius> from a message: at .t: its "
                 "tag_invoke conversion failed: ");
  // A number the double cannot hold fails before the user's conversion sees it.
  CHECK_CONTAINS(read_error<msg::money>(R"({"cents":1e999,"currency":"X"})"),
                 "at .cents: 1e999 does not fit in double");
}

BOOST_AUTO_TEST_CASE(boost_json_value_itself) {
  const boost::json::value v = {{"a", {1, -2, 0.1, nullptr, true}}, {"b", "s"}};
  BOOST_TEST(json_of(v) == R"({"a":[1,-2,0.1,null,true],"b":"s"})");
  BOOST_TEST(round_trip(v) == v);
  const auto big = read<boost::json::value>("[18446744073709551615, -9223372036854775808, 1e5]");
  BOOST_TEST(big.at(0).is_uint64());
  BOOST_TEST(big.at(1).is_int64());
  BOOST_TEST(big.at(2).as_double() == 1e5);
  CHECK_CONTAINS(send_error(boost::json::value(std::nan(""))),
                 "cannot send boost::json::value as a message: NaN has no JSON form");
}

BOOST_AUTO_TEST_SUITE_END()

// =============================================================================================

BOOST_AUTO_TEST_SUITE(json_hostile)

BOOST_AUTO_TEST_CASE(not_json_at_all) {
  BOOST_TEST(read_error<int>("") ==
             "cannot read int from a message: the message is empty (not JSON)");
  CHECK_CONTAINS(read_error<int>("1 2"),
                 "cannot read int from a message: not valid JSON (more "
                 "after the value, at byte 2 of 3)");
  CHECK_CONTAINS(read_error<std::vector<int>>("[1,2"),
                 "cannot read std::vector<int> from a message: not valid JSON (incomplete JSON");
  CHECK_CONTAINS(read_error<std::vector<int>>("[1,]"), "not valid JSON (syntax error");
  CHECK_CONTAINS(read_error<int>("// c\n1"), "not valid JSON");
  CHECK_CONTAINS(read_error<int>("\xef\xbb\xbf"
                                 "1"),
                 "not valid JSON");  // a BOM
  CHECK_CONTAINS(read_error<std::string>(std::string("\"a\0b\"", 5)), "not valid JSON");
  CHECK_CONTAINS(read_error<int>("1e99999999999999999999"), "not valid JSON");
}

BOOST_AUTO_TEST_CASE(every_truncation_of_a_message_is_an_error_never_a_crash) {
  const msg::shape s{"tri\xc3\xa9\n", {{0, 0.1, {}}, {-1, 1e-300, "b"}}, {{"k", {1, 2}}}};
  const std::string full = json_of(s);
  for (std::size_t n = 0; n < full.size(); ++n) {
    const std::string e = read_error<msg::shape>(full.substr(0, n));
    BOOST_TEST_REQUIRE(e.starts_with("cannot read msg::shape from a message: "), n);
  }
  BOOST_TEST((read<msg::shape>(full) == s));
}

BOOST_AUTO_TEST_CASE(random_mutations_are_message_errors_or_values) {
  const std::string full = json_of(std::map<std::string, std::variant<int, std::vector<double>>>{
      {"a", 1}, {"b", std::vector<double>{0.5, -1e10}}});
  std::mt19937 rng(99);
  for (int i = 0; i < 20000; ++i) {
    std::string t = full;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const std::size_t at = rng() % t.size();
      switch (rng() % 3) {
        case 0:
          t[at] = static_cast<char>(rng());
          break;
        case 1:
          t.erase(at, 1);
          break;
        default:
          t.insert(at, 1, "[]{}\",:0e-.\\u"[rng() % 14]);
      }
      if (t.empty()) t = "x";
    }
    try {
      (void)(read<std::map<std::string, std::variant<int, std::vector<double>>>>(t));
    } catch (const coproc::message_error&) {
    }  // anything else fails the test
  }
}

BOOST_AUTO_TEST_CASE(nesting_is_limited_both_ways) {
  using coproc::detail::json::max_depth;
  BOOST_TEST(max_depth == 64u);
  auto nested = [](std::size_t depth) {
    return std::string(depth, '[') + "1" + std::string(depth, ']');
  };
  // Reading: 64 levels are fine, 65 are an error; a million '[' are an error, not a crash.
  BOOST_TEST(read<boost::json::value>(nested(64)).is_array());
  BOOST_TEST(read_error<boost::json::value>(nested(65)) ==
             "cannot read boost::json::value from a message: nested deeper than 64 levels");
  BOOST_TEST(read_error<boost::json::value>(std::string(1000000, '[')) ==
             "cannot read boost::json::value from a message: nested deeper than 64 levels");
  std::string objects;
  for (int i = 0; i < 100000; ++i)
    objects += R"({"children":[)";
  CHECK_CONTAINS(read_error<msg::tree>(objects), "nested deeper than 64 levels");
  // Writing: the same limit, so what coproc sends coproc (and Python) can read.
  boost::json::value deep = 1;
  for (int i = 0; i < 64; ++i)
    deep = boost::json::array{std::move(deep)};
  BOOST_TEST(json_of(deep) == nested(64));
  deep = boost::json::array{std::move(deep)};
  CHECK_CONTAINS(send_error(deep), "nested deeper than 64 levels");
  msg::tree t;
  msg::tree* leaf = &t;
  for (int i = 0; i < 40; ++i)
    leaf = &leaf->children.emplace_back();  // 2 levels each
  CHECK_CONTAINS(send_error(t), "cannot send msg::tree as a message: at .children[0].children[0]");
  CHECK_CONTAINS(send_error(t), "nested deeper than 64 levels");
  msg::tree ok;
  leaf = &ok;
  for (int i = 0; i < 31; ++i)
    leaf = &leaf->children.emplace_back();
  BOOST_TEST((round_trip(ok) == ok));
}

BOOST_AUTO_TEST_CASE(huge_numbers_and_long_texts) {
  const std::string digits(100000, '7');
  const std::string e = read_error<int>(digits);
  CHECK_CONTAINS(e, "cannot read int from a message: 7777777");
  CHECK_CONTAINS(e, "... does not fit in int");
  BOOST_TEST(e.size() < 200u);  // the message shows a prefix, not the whole number
  CHECK_CONTAINS(read_error<double>(digits), "does not fit in double");
  BOOST_TEST(read<double>("0." + digits) == 0.7777777777777778);
  const std::string long_key(100000, 'k');
  const std::string ke = read_error<std::map<std::string, int>>("{\"" + long_key + "\":\"\"}");
  BOOST_TEST(ke.size() < 200u);
  // A big message stays linear: a million small integers.
  std::string big = "[";
  for (int i = 0; i < 1000000; ++i)
    big += i == 0 ? "0" : ",0";
  big += "]";
  BOOST_TEST(read<std::vector<int>>(big).size() == 1000000u);
  // Small wrong elements for big ones: an error, and no reservation of 4,000 times the message.
  using big_element = std::array<int, 1000>;
  using counted = std::vector<big_element, counting_allocator<big_element>>;
  largest_allocation = 0;
  CHECK_CONTAINS((read_error<counted>(big)), "at [0]: expected an array, got an integer");
  BOOST_TEST(largest_allocation <= (std::size_t(2) << 20));
  std::string one = "[0";
  for (int i = 1; i < 1000; ++i)
    one += ",0";
  one += "]";
  BOOST_TEST((read<counted>("[" + one + "," + one + "]")).size() == 2u);
}

BOOST_AUTO_TEST_CASE(type_names_are_readable) {
  using coproc::detail::json::type_name;
  BOOST_TEST(type_name(typeid(std::string)) == "std::string");
  BOOST_TEST(type_name(typeid(std::map<std::string, std::vector<int>>)) ==
             "std::map<std::string, std::vector<int>>");
  BOOST_TEST(type_name(typeid(std::unordered_map<int, std::set<std::string>>)) ==
             "std::unordered_map<int, std::set<std::string>>");
  BOOST_TEST(type_name(typeid(std::optional<std::variant<int, std::string_view>>)) ==
             "std::optional<std::variant<int, std::string_view>>");
  BOOST_TEST(type_name(typeid(std::array<int, 3>)) == "std::array<int, 3>");
  BOOST_TEST(type_name(typeid(msg::point)) == "msg::point");
  BOOST_TEST(type_name(typeid(char[6])) == "char [6]");
}

BOOST_AUTO_TEST_SUITE_END()

// =============================================================================================

BOOST_AUTO_TEST_SUITE(json_python)

BOOST_AUTO_TEST_CASE(python_reads_what_coproc_writes_and_coproc_reads_what_python_writes) {
  // One message per line, as C++ writes them.
  const msg::shape s{"tri", {{0, 0.5, {}}, {1, -2, "b\xc3\xa9"}}, {{"k", {1, 2}}}};
  const std::map<int, std::string> int_keys{{-1, "a"}, {2, "b"}};
  using number_tuple = std::tuple<double, float, double, double, std::int64_t, std::uint64_t>;
  const number_tuple numbers{1.0,
                             0.1f,
                             -0.0,
                             1e300,
                             std::numeric_limits<std::int64_t>::min(),
                             std::numeric_limits<std::uint64_t>::max()};
  const std::string text = "q\"\\\n\t\x01 h\xc3\xa9 \xf0\x9f\x98\x80";
  const std::variant<int, std::string> var = std::string("v");
  const std::set<std::string> set{"x", "y"};
  const std::vector<std::optional<bool>> opts{true, std::nullopt, false};
  std::string input;
  for (const auto& m : {json_of(s), json_of(int_keys), json_of(numbers), json_of(text),
                        json_of(var), json_of(set), json_of(opts), json_of(msg::color::blue)}) {
    BOOST_TEST_REQUIRE(m.find('\n') == std::string::npos);
    input += m + "\n";
  }
  const auto out = lines_of(run_python(python_echo, input));
  BOOST_REQUIRE(out.size() == 16u);
  // What Python sees.
  BOOST_TEST(out[1] ==
             "{'name': 'tri', 'corners': [{'x': 0, 'y': 0.5, 'label': None}, {'x': 1, 'y': -2.0, "
             "'label': 'b\xc3\xa9'}], 'attributes': {'k': [1, 2]}}");
  BOOST_TEST(out[3] == "{'-1': 'a', '2': 'b'}");  // integer keys: strings in Python
  BOOST_TEST(out[5] == "[1.0, 0.1, -0.0, 1e+300, -9223372036854775808, 18446744073709551615]");
  BOOST_TEST(out[7] == "'q\"\\\\\\n\\t\\x01 h\xc3\xa9 \xf0\x9f\x98\x80'");
  BOOST_TEST(out[9] == "'v'");
  BOOST_TEST(out[11] == "['x', 'y']");
  BOOST_TEST(out[13] == "[True, None, False]");
  BOOST_TEST(out[15] == "'blue'");
  // And back: json.dumps' text reads as the same C++ values.
  BOOST_TEST((read<msg::shape>(out[0]) == s));
  BOOST_TEST((read<std::map<int, std::string>>(out[2]) == int_keys));
  BOOST_TEST((read<number_tuple>(out[4]) == numbers));
  BOOST_TEST(std::signbit(std::get<2>(read<number_tuple>(out[4]))));
  BOOST_TEST(read<std::string>(out[6]) == text);
  BOOST_TEST((read<std::variant<int, std::string>>(out[8]) == var));
  BOOST_TEST((read<std::set<std::string>>(out[10]) == set));
  BOOST_TEST((read<std::vector<std::optional<bool>>>(out[12]) == opts));
  BOOST_TEST((read<msg::color>(out[14]) == msg::color::blue));
}

BOOST_AUTO_TEST_CASE(random_doubles_through_python_bit_exact) {
  std::mt19937_64 rng(12345);
  std::vector<double> all;
  while (all.size() < 50000) {
    const double d = std::bit_cast<double>(rng());
    if (std::isfinite(d)) all.push_back(d);
  }
  for (int i = 0; i < 10000; ++i)
    all.push_back(static_cast<double>(rng() % 1000000) / 1000);
  std::vector<float> floats;
  while (floats.size() < 20000) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    if (std::isfinite(f)) floats.push_back(f);
  }
  const auto out = lines_of(run_python(python_echo, json_of(all) + "\n" + json_of(floats) + "\n"));
  BOOST_REQUIRE(out.size() == 4u);
  const auto back = read<std::vector<double>>(out[0]);
  BOOST_REQUIRE(back.size() == all.size());
  for (std::size_t i = 0; i < all.size(); ++i)
    BOOST_TEST_REQUIRE(bits(back[i]) == bits(all[i]), i);
  // Python holds each float as the double nearest its shortest text; read back as float, it
  // is the same float.
  const auto fback = read<std::vector<float>>(out[2]);
  BOOST_REQUIRE(fback.size() == floats.size());
  for (std::size_t i = 0; i < floats.size(); ++i)
    BOOST_TEST_REQUIRE(bits(fback[i]) == bits(floats[i]), i);
}

BOOST_AUTO_TEST_CASE(what_python_writes) {
  // Python builds the values; coproc reads json.dumps' bytes (default separators, ASCII escapes).
  const char* script = R"PY(
import json, sys
for v in [{1: 'a', -2: 'b'}, 10**30, 1.0, float(2**53 + 1), [1, 2.5, 'h\u00e9\U0001F600'],
          {'x': 1, 'y': 0.1, 'label': None}, (1, 'a'), float('nan'), True, -0.0, 1e-320]:
    print(json.dumps(v))
)PY";
  const auto out = lines_of(run_python(script, ""));
  BOOST_REQUIRE(out.size() == 11u);
  BOOST_TEST(out[0] == R"({"1": "a", "-2": "b"})");
  BOOST_TEST((read<std::map<int, std::string>>(out[0]) ==
              std::map<int, std::string>{{1, "a"}, {-2, "b"}}));
  CHECK_CONTAINS(read_error<std::int64_t>(out[1]), "does not fit in long");
  BOOST_TEST(read<double>(out[1]) == 1e30);
  BOOST_TEST(read<double>(out[2]) == 1.0);
  CHECK_CONTAINS(read_error<int>(out[2]), "expected an integer, got the number 1.0");
  BOOST_TEST(read<double>(out[3]) == 9007199254740992.0);
  const auto mixed = (read<std::tuple<int, double, std::string>>(out[4]));
  BOOST_TEST(std::get<2>(mixed) == "h\xc3\xa9\xf0\x9f\x98\x80");
  BOOST_TEST((read<msg::point>(out[5]) == msg::point{1, 0.1, {}}));
  BOOST_TEST((read<std::pair<int, std::string>>(out[6]) == std::pair<int, std::string>{1, "a"}));
  BOOST_TEST(out[7] == "NaN");  // Python's extension, not JSON
  CHECK_CONTAINS(read_error<double>(out[7]), "not valid JSON");
  BOOST_TEST(read<bool>(out[8]) == true);
  BOOST_TEST(std::signbit(read<double>(out[9])));
  BOOST_TEST(read<double>(out[10]) == 1e-320);
}

BOOST_AUTO_TEST_SUITE_END()

// Arrays of integers (a pool's map: its results, and each worker's chunk of argument lists)
// are read without the parse tree; the answers and the errors must be the general reader's.
BOOST_AUTO_TEST_SUITE(json_integer_arrays)

BOOST_AUTO_TEST_CASE(read_as_the_general_reader_reads_them) {
  auto text = [](std::string_view s) { return coproc::as_bytes(s); };
  BOOST_TEST(from_message<std::vector<int>>(text("[1,-2,3,0,-0]")) == (std::vector<int>{1, -2, 3, 0, 0}));
  BOOST_TEST(from_message<std::vector<int>>(text("[]")).empty());
  // Whitespace and other forms go to the general reader, which accepts them.
  BOOST_TEST(from_message<std::vector<int>>(text(" [ 1 , 2 ] ")) == (std::vector<int>{1, 2}));
  BOOST_TEST(from_message<std::vector<std::int64_t>>(text("[9223372036854775807,-9223372036854775808]")) ==
             (std::vector<std::int64_t>{INT64_MAX, INT64_MIN}));
  BOOST_TEST(from_message<std::vector<std::int8_t>>(text("[127,-128]")) == (std::vector<std::int8_t>{127, -128}));
  using args = std::vector<std::tuple<int, long>>;
  BOOST_TEST((from_message<args>(text("[[1,2],[-3,4]]")) == args{{1, 2L}, {-3, 4L}}));
  BOOST_TEST((from_message<std::vector<std::tuple<int>>>(text("[[7],[8]]")) ==
              std::vector<std::tuple<int>>{{7}, {8}}));
}

BOOST_AUTO_TEST_CASE(what_does_not_fit_is_the_general_readers_error) {
  auto text = [](std::string_view s) { return coproc::as_bytes(s); };
  BOOST_CHECK_THROW(from_message<std::vector<int>>(text("[2147483648]")), coproc::message_error);
  BOOST_CHECK_THROW(from_message<std::vector<std::int8_t>>(text("[128]")), coproc::message_error);
  BOOST_CHECK_THROW(from_message<std::vector<unsigned>>(text("[-1]")), coproc::message_error);
  BOOST_CHECK_THROW(from_message<std::vector<int>>(text("[01]")), coproc::message_error);
  BOOST_CHECK_THROW(from_message<std::vector<int>>(text("[1,]")), coproc::message_error);
  BOOST_CHECK_THROW(from_message<std::vector<int>>(text("[1] x")), coproc::message_error);
  BOOST_CHECK_THROW(from_message<std::vector<int>>(text("[\"1\"]")), coproc::message_error);
  BOOST_CHECK_THROW((from_message<std::vector<std::tuple<int, int>>>(text("[[1]]"))), coproc::message_error);
  BOOST_CHECK_THROW((from_message<std::vector<std::tuple<int>>>(text("[[1,2]]"))), coproc::message_error);
  try {
    from_message<std::vector<int>>(text("[1,2,99999999999]"));
    BOOST_FAIL("no exception");
  } catch (const coproc::message_error& e) {
    BOOST_TEST(std::string(e.what()).find("[2]") != std::string::npos, e.what());
  }
}

BOOST_AUTO_TEST_SUITE_END()
