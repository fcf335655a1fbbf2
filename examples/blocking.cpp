// The blocking API, as in Python's documentation: start children, join them, look at how
// they ended. Run it: build/examples/blocking
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <coproc/coproc.hpp>

using namespace std::chrono_literals;

// A CPU-bound job: the child's exit code carries its (small) answer.
static int collatz_steps(long n) {
  int steps = 0;
  for (; n != 1; ++steps) n = (n % 2) ? 3 * n + 1 : n / 2;
  return steps;
}

int main() {
  std::printf("main: %s (pid %d)\n", coproc::current_process().name().c_str(), ::getpid());

  // Python: p = Process(target=f, args=(27,)); p.start(); p.join(); p.exitcode
  std::vector<coproc::process> workers;
  for (long n : {27L, 97L, 871L})
    workers.emplace_back([](long n) { coproc::exit(collatz_steps(n) % 256); }, n);
  for (auto& w : workers) w.start();
  for (auto& w : workers) {
    const int code = w.join();
    std::printf("  %s (pid %d) exited with %d\n", w.name().c_str(), *w.pid(), code);
  }

  // A child that overruns its deadline: join(timeout) says "still running", terminate() ends it.
  coproc::process slow({.name = "slow"}, [] { std::this_thread::sleep_for(1h); });
  slow.start();
  if (!slow.join(200ms)) {
    std::printf("  %s still running after 200 ms: terminate()\n", slow.name().c_str());
    slow.terminate();
  }
  std::printf("  %s exitcode %d (-15 is SIGTERM)\n", slow.name().c_str(), slow.join());

  // An exception in a child: exit code 1, and the child reports it on stderr.
  coproc::process failing({.name = "failing"}, [] { throw std::runtime_error("bad input"); });
  failing.start();
  std::printf("  %s exitcode %d\n", failing.name().c_str(), failing.join());

  // Beyond Python: the kernel's report at the reap.
  coproc::process busy([] {
    std::vector<char> block(64 << 20, 1);  // 64 MiB touched
    volatile long sum = 0;
    for (char c : block) sum = sum + c;
  });
  busy.start();
  busy.join();
  const auto st = busy.status();
  std::printf("  %s: exit %d, user %.1f ms, system %.1f ms, peak RSS %zu KiB\n", busy.name().c_str(),
              st->exitcode, st->user_time.count() / 1000.0, st->system_time.count() / 1000.0,
              st->max_rss_kib);

  // Children name their own children Process-N:M, and see their parent.
  coproc::process parent([] {
    coproc::process child([] {
      std::printf("  %s, child of %s\n", coproc::current_process().name().c_str(),
                  coproc::parent_process()->name().c_str());
    });
    child.start();
    child.join();
  });
  parent.start();
  parent.join();
  return 0;
}
