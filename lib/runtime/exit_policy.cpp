#include "runtime/exit_policy.hpp"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <vector>

#include "runtime/runtime.hpp"

namespace coproc::detail {

namespace {
std::atomic<bool> registered{false};
constexpr auto daemon_grace = std::chrono::seconds(1);

void at_exit() { run_exit_policy(); }
}  // namespace

void ensure_exit_policy() {
  // Load first: a compare-exchange writes even when it fails, and every page the parent writes
  // after a fork costs it a copy-on-write fault while the child lives.
  if (registered.load(std::memory_order_relaxed)) return;
  bool expected = false;
  if (registered.compare_exchange_strong(expected, true)) std::atexit(at_exit);
}

void run_exit_policy() noexcept {
  using namespace std::chrono;
  // Only this process's own state: an inherited one belongs to the parent, whose registry
  // lock another thread may have held at the fork and whose children are not ours to signal
  // or wait for.
  runtime* r = own_runtime();
  if (!r) return;
  try {
    auto children = r->children.snapshot();
    if (children.empty()) return;  // the common case in a child: nothing to do, nothing to touch
    // Daemonic children first, bounded: SIGTERM, a grace period, then SIGKILL (Python
    // would wait forever for a daemon that ignores SIGTERM).
    std::vector<std::shared_ptr<child_state>> daemons;
    for (auto& st : children)
      if (st->daemon() && !st->try_reap()) daemons.push_back(st);
    if (!daemons.empty()) {
      for (auto& st : daemons) st->send_signal(SIGTERM);
      const auto deadline = steady_clock::now() + daemon_grace;
      for (auto& st : daemons) st->wait(deadline);
      for (auto& st : daemons) {
        if (!st->ended()) {
          st->send_signal(SIGKILL);
          st->wait(std::nullopt);
        }
      }
    }
    // Then every other child is joined, including those whose objects were destroyed.
    for (auto& st : children)
      if (!st->daemon()) st->wait(std::nullopt);
    r->children.clear();
  } catch (...) {
    // At exit there is nobody to report to; a child we could not wait for stays a zombie
    // until init reaps it.
  }
}

}  // namespace coproc::detail
