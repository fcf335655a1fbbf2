// coproc internals: what happens to children when their parent ends.
#pragma once

#include "core/private.hpp"

namespace coproc::detail {

// Registers the at-exit policy once per program (a forked copy inherits the registration).
void ensure_exit_policy();

// Daemonic children get SIGTERM, then SIGKILL after a grace period; the others are joined,
// including those whose objects were destroyed. Runs in the main program at exit and in a
// child after its target. Acts only on this process's own children: a raw fork() copy of the
// program that calls exit() leaves its parent's alone.
void run_exit_policy() noexcept;

}  // namespace coproc::detail
