#include "runtime/std_streams.hpp"

#include <stdio_ext.h>

#include <cstdio>
#include <iostream>
#include <streambuf>

namespace coproc::detail {

namespace {
// The put area of a stream buffer. pptr() and friends are protected; a pointer to them formed
// in a derived class may be applied to any basic_streambuf.
template <class CharT>
struct put_area : std::basic_streambuf<CharT> {
  using base = std::basic_streambuf<CharT>;
  static bool pending(base* b) {
    if (!b) return false;
    auto pptr = &put_area::pptr;
    auto pbase = &put_area::pbase;
    return (b->*pptr)() != (b->*pbase)();
  }
  static void discard(base* b) {
    if (!pending(b)) return;
    auto pbase = &put_area::pbase;
    auto epptr = &put_area::epptr;
    auto setp = &put_area::setp;
    (b->*setp)((b->*pbase)(), (b->*epptr)());
  }
};

template <class CharT>
void flush_if_pending(std::basic_ostream<CharT>& os) {
  // The default (synchronised with stdio) buffers hold nothing: their output is in stdout's
  // and stderr's FILE buffers.
  if (put_area<CharT>::pending(os.rdbuf())) os.flush();
}

void flush_file(std::FILE* f) {
  // Flushing writes the FILE's lock even when nothing is buffered; look first.
  if (f && __fpending(f)) std::fflush(f);
}
}  // namespace

void flush_std_streams() noexcept {
  try {
    flush_if_pending(std::cout);
    flush_if_pending(std::cerr);
    flush_if_pending(std::clog);
    flush_if_pending(std::wcout);
    flush_if_pending(std::wcerr);
    flush_if_pending(std::wclog);
  } catch (...) {
  }
  flush_file(stdout);
  flush_file(stderr);
}

void discard_inherited_output() noexcept {
  put_area<char>::discard(std::cout.rdbuf());
  put_area<char>::discard(std::cerr.rdbuf());
  put_area<char>::discard(std::clog.rdbuf());
  put_area<wchar_t>::discard(std::wcout.rdbuf());
  put_area<wchar_t>::discard(std::wcerr.rdbuf());
  put_area<wchar_t>::discard(std::wclog.rdbuf());
  // Only written when there is something to drop: every page a child writes costs a fault.
  if (stdout && __fpending(stdout)) __fpurge(stdout);
  if (stderr && __fpending(stderr)) __fpurge(stderr);
}

}  // namespace coproc::detail
