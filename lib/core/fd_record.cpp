// The record is a two-level bitmap of atomics. A forked child reads it without locks or
// allocation; pages are allocated on first use and never freed, so a reader never sees a
// dangling page.
#include "core/fd_record.hpp"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <new>

#include "coproc_config.h"

namespace coproc::detail::fds {

namespace {
constexpr std::size_t bits_per_page = 4096;
constexpr std::size_t words_per_page = bits_per_page / 64;
constexpr std::size_t page_count = 256;  // 1,048,576 descriptors: Linux's default nr_open

struct page {
  std::array<std::atomic<std::uint64_t>, words_per_page> words{};
};
std::array<std::atomic<page*>, page_count> pages{};
std::atomic<std::size_t> pages_in_use{0};  // one past the highest page ever allocated

page* page_for(int fd, bool create) noexcept {
  const auto index = static_cast<std::size_t>(fd) / bits_per_page;
  if (index >= page_count) return nullptr;
  page* p = pages[index].load(std::memory_order_acquire);
  if (p || !create) return p;
  auto* fresh = new (std::nothrow) page;
  if (!fresh) return nullptr;
  if (pages[index].compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) {
    std::size_t limit = pages_in_use.load(std::memory_order_relaxed);
    while (limit < index + 1 &&
           !pages_in_use.compare_exchange_weak(limit, index + 1, std::memory_order_release)) {
    }
    return fresh;
  }
  delete fresh;
  return p;
}

void close_span(unsigned lo, unsigned hi) noexcept {
#if COPROC_HAVE_CLOSE_RANGE
  if (::close_range(lo, hi, 0) == 0) return;
#endif
  for (unsigned fd = lo; fd <= hi; ++fd) ::close(static_cast<int>(fd));
}

bool kept(unsigned fd, std::span<const int> keep) noexcept {
  for (int k : keep)
    if (k >= 0 && static_cast<unsigned>(k) == fd) return true;
  return false;
}
}  // namespace

void record(int fd) noexcept {
  if (fd < 0) return;
  // A descriptor beyond the bitmap (above nr_open's default) is simply not closed in
  // children: the cost of being wrong is one leaked descriptor, never a wrong close.
  if (page* p = page_for(fd, true)) {
    const auto bit = static_cast<std::size_t>(fd) % bits_per_page;
    const auto mask = std::uint64_t{1} << (bit % 64);
    p->words[bit / 64].fetch_or(mask, std::memory_order_relaxed);
  }
}

void forget(int fd) noexcept {
  if (fd < 0) return;
  if (page* p = page_for(fd, false)) {
    const auto bit = static_cast<std::size_t>(fd) % bits_per_page;
    const auto mask = std::uint64_t{1} << (bit % 64);
    p->words[bit / 64].fetch_and(~mask, std::memory_order_relaxed);
  }
}

void close_recorded_in_child(std::span<const int> keep) noexcept {
  // Consecutive recorded descriptors are closed with one close_range: coproc's descriptors
  // are usually allocated in runs, so a child with thousands of siblings makes few calls.
  long run_start = -1;
  unsigned run_end = 0;
  auto flush = [&] {
    if (run_start >= 0) close_span(static_cast<unsigned>(run_start), run_end);
    run_start = -1;
  };
  // Only the pages ever used are scanned: the child's cache is cold, and a process with a few
  // hundred descriptors has one page.
  const std::size_t limit = pages_in_use.load(std::memory_order_acquire);
  for (std::size_t pi = 0; pi < limit; ++pi) {
    page* p = pages[pi].load(std::memory_order_acquire);
    if (!p) {
      flush();
      continue;
    }
    for (std::size_t w = 0; w < words_per_page; ++w) {
      const std::uint64_t word = p->words[w].load(std::memory_order_relaxed);
      if (!word) {
        flush();
        continue;
      }
      for (unsigned b = 0; b < 64; ++b) {
        const auto fd = static_cast<unsigned>(pi * bits_per_page + w * 64 + b);
        const bool closing = ((word >> b) & 1u) && !kept(fd, keep);
        if (closing) {
          if (run_start < 0) run_start = fd;
          run_end = fd;
        } else {
          flush();
        }
      }
      // Only words that had bits are written: every page a child writes costs it a fault.
      p->words[w].store(0, std::memory_order_relaxed);
    }
  }
  flush();
  for (int k : keep) record(k);
}

}  // namespace coproc::detail::fds
