#include "runtime/runtime.hpp"

#include <memory>

#include "core/per_process.hpp"
#include "process_access.hpp"

namespace coproc::detail {

namespace {
// Never destroyed: children may be reaped by the at-exit policy after static destructors of
// other translation units have started to run.
per_process<runtime> runtimes;
}  // namespace

runtime& rt() {
  return runtimes.get([](const runtime* inherited) {
    auto fresh = std::make_unique<runtime>();
    if (inherited) {
      // A raw fork() copy of the program: it is the same process object as far as Python's
      // rules go (os.fork keeps current_process()), but the parent's children are not its own.
      fresh->counter = inherited->counter.load(std::memory_order_relaxed);
      fresh->current = inherited->current;
      fresh->in_child = inherited->in_child;
      fresh->bootstrap_thread = inherited->bootstrap_thread;
      fresh->parent_of_this = inherited->parent_of_this;
    } else {
      fresh->current = process_access::make_main();
    }
    return fresh;
  });
}

runtime* own_runtime() noexcept { return runtimes.own(); }

void install_child_runtime(runtime& state) noexcept {
  state.previous = runtimes.install(state);
}

}  // namespace coproc::detail
