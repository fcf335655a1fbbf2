// Typed messages whatever the include order. Boost 1.81's boostorg/json#887: in a file that
// includes <boost/range.hpp> before Boost.JSON, boost::json::value_to<std::map<...>> and
// value_to<std::set<...>> do not compile (the unqualified begin/end of Boost.JSON's inserter
// become ambiguous with Boost.Range's). coproc converts std containers itself, so this file,
// which includes Boost.Range FIRST, then Boost.JSON's value, then coproc, then Boost.Test (which
// pulls Boost.Range in again), must compile and pass. Keep the includes in this order.
// The order of these includes is the test (clang-format must not sort them).
// clang-format off
#include <boost/range.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>
#include <coproc/coproc.hpp>
#include <boost/test/unit_test.hpp>
// clang-format on

#if !defined(BOOST_RANGE_BEGIN_HPP)
#error "Boost.Range must be included (first) for this test to mean anything"
#endif

#include <cstddef>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace order {

struct inventory {
  std::map<std::string, int> counts;
  std::set<std::string> tags;
  std::map<int, std::set<int>> groups;
};
BOOST_DESCRIBE_STRUCT(inventory, (), (counts, tags, groups))

// A type with Boost.JSON tag_invoke conversions, written with Boost.JSON's own API.
struct label {
  std::string text;
};
void tag_invoke(boost::json::value_from_tag, boost::json::value& jv, const label& l) {
  jv = boost::json::string(l.text);
}
label tag_invoke(boost::json::value_to_tag<label>, const boost::json::value& jv) {
  return label{std::string(jv.as_string())};
}

}  // namespace order

namespace {

coproc::bytes bytes_of(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return coproc::bytes(p, p + s.size());
}

std::string text_of(const coproc::bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

template <class T>
T round_trip(const T& v) {
  return coproc::detail::from_message<T>(coproc::detail::to_message(v));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(json_include_order)

BOOST_AUTO_TEST_CASE(std_map_both_ways_after_boost_range) {
  const std::map<std::string, int> m{{"a", 1}, {"b", -2}};
  BOOST_TEST(text_of(coproc::detail::to_message(m)) == R"({"a":1,"b":-2})");
  BOOST_TEST((coproc::detail::from_message<std::map<std::string, int>>(
                  bytes_of(R"({"b":-2,"a":1})")) == m));
  BOOST_TEST((round_trip(std::map<int, std::string>{{-1, "x"}, {7, "y"}}) ==
              std::map<int, std::string>{{-1, "x"}, {7, "y"}}));
  BOOST_TEST((round_trip(std::unordered_map<std::string, double>{{"pi", 3.14159}}) ==
              std::unordered_map<std::string, double>{{"pi", 3.14159}}));
  BOOST_TEST((round_trip(std::multimap<std::string, int>{{"k", 1}}).size() == 1u));
}

BOOST_AUTO_TEST_CASE(std_set_both_ways_after_boost_range) {
  const std::set<int> s{3, 1, 2};
  BOOST_TEST(text_of(coproc::detail::to_message(s)) == "[1,2,3]");
  BOOST_TEST((coproc::detail::from_message<std::set<int>>(bytes_of("[2,3,1,3]")) == s));
  BOOST_TEST((round_trip(std::set<std::string>{"x", "y"}) == std::set<std::string>{"x", "y"}));
  BOOST_TEST((round_trip(std::unordered_set<int>{4, 5}) == std::unordered_set<int>{4, 5}));
  BOOST_TEST((round_trip(std::multiset<int>{1, 1, 2}) == std::multiset<int>{1, 1, 2}));
}

BOOST_AUTO_TEST_CASE(described_struct_with_maps_and_sets_after_boost_range) {
  const order::inventory inv{{{"apples", 3}}, {"fruit", "red"}, {{1, {2, 3}}, {-4, {}}}};
  BOOST_TEST(text_of(coproc::detail::to_message(inv)) ==
             R"({"counts":{"apples":3},"tags":["fruit","red"],"groups":{"-4":[],"1":[2,3]}})");
  const auto back = round_trip(inv);
  BOOST_TEST((back.counts == inv.counts));
  BOOST_TEST((back.tags == inv.tags));
  BOOST_TEST((back.groups == inv.groups));
}

BOOST_AUTO_TEST_CASE(tag_invoke_types_in_maps_and_sets_after_boost_range) {
  const std::map<std::string, order::label> m{{"k", {"v"}}};
  BOOST_TEST(text_of(coproc::detail::to_message(m)) == R"({"k":"v"})");
  BOOST_TEST(round_trip(m).at("k").text == "v");
  const auto jv = round_trip(boost::json::value{{"a", 1}, {"b", {true, nullptr}}});
  BOOST_TEST(jv.at("b").as_array().size() == 2u);
}

BOOST_AUTO_TEST_SUITE_END()
