// Boost.Process v2 launching the no-op program and awaiting it with async_wait, the way an
// Asio program that uses it would: one io_context, run until the wait completes.
//
// Boost 1.81 notes: <boost/process/v2.hpp> first (its headers are not self-contained), the
// executor constructor (the ExecutionContext one does not compile on Linux), and an absolute
// path (find_executable needs a libboost_filesystem 1.81 that Debian does not ship here).
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/process/v2.hpp>
#include <boost/system/error_code.hpp>

#include "bench.hpp"

namespace bench {

case_result bp2_start_join(const case_env& env) {
  namespace bp2 = boost::process::v2;
  boost::asio::io_context ctx;
  const std::vector<std::string> no_args;
  case_result r;
  for (int i = 0; i < env.warmup + env.iterations; ++i) {
    const double t0 = now_us();
    bp2::process proc(ctx.get_executor(), env.opt.noop_path, no_args);
    boost::system::error_code ec;
    int code = -1;
    proc.async_wait([&](boost::system::error_code e, int c) {
      ec = e;
      code = c;
    });
    ctx.run();
    ctx.restart();
    const double t1 = now_us();
    if (ec) return failed("Boost.Process v2 async_wait: " + ec.message());
    if (code != 0) return failed("no-op program ended with " + std::to_string(code));
    if (i >= env.warmup) r.samples.push_back(t1 - t0);
  }
  return r;
}

}  // namespace bench
