// imap_unordered and imap over a million lazy inputs: every result comes, and the input is read
// only as results are taken (at most window() chunks in flight, plus the one being read), so
// memory stays bounded whatever the input's length. COPROC_POOL_SCALE_N overrides the count;
// sanitized builds use fewer.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <ranges>
#include <string>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "helpers.hpp"
#include "pool_support.hpp"

using pool_test::all_methods;

namespace {

// How many inputs the lazy range has handed out (read on the consumer's thread only: the pool
// reads the input on the thread that takes the results).
std::uint64_t pulled = 0;

std::uint64_t scaled(std::uint64_t plain, std::uint64_t sanitized) {
  if (const char* e = std::getenv("COPROC_POOL_SCALE_N")) return std::strtoull(e, nullptr, 10);
  return pool_test::sanitized ? sanitized : plain;
}

auto counted_input(std::uint64_t n) {
  return std::views::iota(std::uint64_t{0}, n) | std::views::transform([](std::uint64_t i) {
           ++pulled;
           return static_cast<int>(i);
         });
}

struct run_stats {
  std::uint64_t count = 0, sum = 0, worst_gap = 0;
  bool bounded = true;
};

// Reads all the results of imap(_unordered)(identity, 0..n-1), checking the bound at each one.
run_stats run(coproc::pool& p, bool ordered, std::uint64_t n, std::size_t chunksize) {
  pulled = 0;
  const std::uint64_t bound = p.window() * chunksize + chunksize;
  run_stats s;
  auto it = ordered ? p.imap(pool_tasks::identity, counted_input(n), chunksize)
                    : p.imap_unordered(pool_tasks::identity, counted_input(n), chunksize);
  BOOST_TEST(pulled == 0u);  // nothing is read before the first result is asked for
  std::uint64_t expect_next = 0;
  bool in_order = true;
  for (int v : it) {
    ++s.count;
    s.sum += static_cast<std::uint64_t>(v);
    if (ordered && static_cast<std::uint64_t>(v) != expect_next++) in_order = false;
    const std::uint64_t gap = pulled - s.count;
    if (gap > s.worst_gap) s.worst_gap = gap;
    if (gap > bound) s.bounded = false;
  }
  BOOST_TEST(in_order);
  BOOST_TEST(pulled == n);
  return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pool_imap_scale)

BOOST_AUTO_TEST_CASE(a_million_lazy_inputs_in_bounded_memory) {
  const std::uint64_t n = scaled(1'000'000, 50'000);
  coproc::pool p({.processes = 2, .method = coproc::start_method::fork});
  const auto s = run(p, false, n, 100);
  BOOST_TEST(s.count == n);
  BOOST_TEST(s.sum == n * (n - 1) / 2);
  BOOST_TEST(s.bounded, "at worst " << s.worst_gap << " inputs read ahead of the results");
}

BOOST_AUTO_TEST_CASE(chunksize_one_in_bounded_memory) {
  for (auto m : all_methods) {
    BOOST_TEST_CONTEXT(coproc::to_string(m)) {
      const std::uint64_t n = scaled(20'000, 2'000);
      coproc::pool p({.processes = 2, .method = m});
      for (bool ordered : {false, true}) {
        BOOST_TEST_CONTEXT((ordered ? "imap" : "imap_unordered")) {
          const auto s = run(p, ordered, n, 1);
          BOOST_TEST(s.count == n);
          BOOST_TEST(s.sum == n * (n - 1) / 2);
          BOOST_TEST(s.bounded, "at worst " << s.worst_gap << " inputs read ahead of the results");
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(ordered_imap_with_a_big_chunk_in_bounded_memory) {
  const std::uint64_t n = scaled(200'000, 20'000);
  coproc::pool p({.processes = 3, .method = coproc::start_method::forkserver});
  const auto s = run(p, true, n, 257);  // a last chunk that is not full
  BOOST_TEST(s.count == n);
  BOOST_TEST(s.sum == n * (n - 1) / 2);
  BOOST_TEST(s.bounded, "at worst " << s.worst_gap << " inputs read ahead of the results");
}

BOOST_AUTO_TEST_SUITE_END()
