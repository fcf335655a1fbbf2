// pool_tour: Python's multiprocessing.Pool in plain blocking C++, and what coproc's pool adds.
//
//   pool_tour [--method fork|spawn|forkserver]
//
// Every line it prints comes from a worker process:
//   apply        one call, a round trip to an idle worker
//   map          Python's map with Python's chunking, in input order
//   imap         a lazy input of a million numbers, with a bounded number of tasks in flight
//   crash        a task that kills its worker: only that task fails, the worker is replaced
//   deadline     a task past its deadline: it fails, its worker is killed and replaced
//   raise        an exception in a task comes back as coproc::remote_error
//   status       the CPU time a task took in its worker
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <ranges>
#include <stdexcept>
#include <string>
#include <vector>

#include <coproc/coproc.hpp>

namespace tasks {
// Tasks are registered functions: spawn and forkserver workers find them by name.
long square(long x) { return x * x; }
COPROC_TARGET(square);
std::string whoami() { return coproc::current_process().name() + " pid " + std::to_string(::getpid()); }
COPROC_TARGET(whoami);
int crash() {
  ::raise(SIGSEGV);
  return 0;
}
COPROC_TARGET(crash);
int nap(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  return ms;
}
COPROC_TARGET(nap);
double checked_sqrt(double x) {
  if (x < 0) throw std::domain_error("math domain error");
  return x < 1 ? x : checked_sqrt(x / 4) * 2;
}
COPROC_TARGET(checked_sqrt);
std::uint64_t spin(std::uint64_t n) {
  std::uint64_t a = 0, b = 1;
  for (std::uint64_t i = 0; i < n; ++i) a = std::exchange(b, a + b);
  return a;
}
COPROC_TARGET(spin);
}  // namespace tasks

int main(int argc, char** argv) {
  coproc::init(argc, argv);
  coproc::start_method method = coproc::start_method::forkserver;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--method") == 0) {
      const std::string m = argv[i + 1];
      if (m == "fork") method = coproc::start_method::fork;
      else if (m == "spawn") method = coproc::start_method::spawn;
      else if (m == "forkserver") method = coproc::start_method::forkserver;
      else {
        std::cerr << "pool_tour: unknown start method '" << m << "' (fork, spawn, forkserver)\n";
        return 2;
      }
    }

  coproc::pool p({.processes = 2, .method = method});
  std::cout << "pool of " << p.size() << " workers, start method " << coproc::to_string(method) << "\n";

  std::cout << "apply: 12*12 = " << p.apply(tasks::square, 12L) << " (from " << p.apply(tasks::whoami) << ")\n";

  auto squares = p.map(tasks::square, std::vector<long>{1, 2, 3, 4, 5, 6, 7, 8});
  std::cout << "map:";
  for (long v : squares) std::cout << ' ' << v;
  std::cout << "\n";

  // A million inputs, read as results are taken: memory stays that of a few chunks.
  long total = 0, count = 0;
  for (long v : p.imap_unordered(tasks::square, std::views::iota(0L, 1'000'000L) |
                                                      std::views::transform([](long x) { return x % 1000; }),
                                 10'000)) {
    total += v;
    ++count;
  }
  std::cout << "imap: " << count << " results, sum " << total << ", at most " << p.window()
            << " chunks in flight\n";

  const std::string before = p.apply(tasks::whoami);
  try {
    p.apply(tasks::crash);
  } catch (const coproc::process_error& e) {
    std::cout << "crash: " << e.what() << "\n";
  }
  std::cout << "crash: " << before << " was replaced by " << p.apply(tasks::whoami) << "\n";

  try {
    p.apply_within(std::chrono::milliseconds(100), tasks::nap, 60'000);
  } catch (const coproc::timeout_error& e) {
    std::cout << "deadline: " << e.what() << "\n";
  }
  std::cout << "deadline: the pool goes on: 3*3 = " << p.apply(tasks::square, 3L) << "\n";

  try {
    p.apply(tasks::checked_sqrt, -1.0);
  } catch (const coproc::remote_error& e) {
    std::cout << "raise: " << e.type_name() << ": " << e.message() << "\n";
  }

  auto r = p.apply_async(tasks::spin, std::uint64_t{50'000'000});
  r.wait();
  const auto st = r.status();
  std::cout << "status: 50M additions took "
            << std::chrono::duration_cast<std::chrono::milliseconds>(st->user_time + st->system_time).count()
            << " ms of CPU in its worker (peak RSS " << st->max_rss_kib << " KiB)\n";

  p.close();
  p.join();
  std::cout << "closed and joined\n";
}
