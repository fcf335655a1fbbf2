// coproc internals: the standard streams around a fork. Nothing may ever be printed twice.
#pragma once

#include "core/private.hpp"

namespace coproc::detail {

// Flushes stdout, stderr and the C++ standard streams (narrow and wide) when they hold
// output: before a fork, so the parent's lines come before the child's, and in a child
// before it ends. Only those, as in Python: another FILE's buffer holds the parent's
// unflushed data, which a child must not write a second time.
void flush_std_streams() noexcept;

// In a child before its target runs: drops whatever output the standard streams hold. It is
// the parent's (another thread may have printed between the flush and the fork: holding the
// FILE locks across fork() is no cure, since glibc's fork takes its list lock after them and a
// concurrent fflush(NULL) takes them in the other order), and the parent writes it itself.
void discard_inherited_output() noexcept;

}  // namespace coproc::detail
