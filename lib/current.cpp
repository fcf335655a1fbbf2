// The free functions about this process and its children.
#include <unistd.h>

#include <coproc/process.hpp>

#include "runtime/parent.hpp"
#include "runtime/runtime.hpp"

namespace coproc {

process& current_process() { return *detail::rt().current; }

process* parent_process() { return detail::parent_watch(); }

std::vector<process*> active_children() { return detail::rt().children.active(); }

int cpu_count() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

}  // namespace coproc
