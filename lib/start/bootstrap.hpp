// coproc internals: the child's side of every start method.
#pragma once

#include "core/private.hpp"

#include <span>

#include <coproc/process.hpp>

#include "runtime/runtime.hpp"

namespace coproc::detail {

// What a child knows when it begins, whatever the start method.
struct child_start {
  process* self;             // the object whose run() is the child's activity
  parent_info parent;        // for parent_process()
  std::span<const int> keep; // coproc's own descriptors that the child keeps (its ends of the
                             // fallback's pipes; connection ends handed to it)
};

// Puts the process in the state a target may expect, runs it and ends the child:
//   1. signals as exec would leave them (caught ones back to default, the mask cleared);
//   2. the parent's buffered output dropped (the parent writes it itself);
//   3. coproc's descriptors closed, except `keep`;
//   4. fd 0 on /dev/null;
//   5. the child's own module state (current_process() is `self`);
//   6. run(), whose exceptions become exit codes as in Python; pthread_exit() or a
//      cancellation ends the child with 0, as the last thread of a plain fork child would;
//   7. finish_child(code).
// Allocates nothing before the target runs: a fork child of a multi-threaded program may
// find the allocator's locks held (the sanitizers' allocators do not reset them).
[[noreturn]] void run_child(const child_start& start);

// The child's end, for every path out of a target: its own children per the exit policy, the
// standard streams flushed, _exit(code & 0xFF).
[[noreturn]] void finish_child(int code) noexcept;

}  // namespace coproc::detail
