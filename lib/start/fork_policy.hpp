// coproc internals: the fork start method in a program that runs other threads
// (docs/fork-policy.md).
#pragma once

#include "core/private.hpp"

namespace coproc::detail {

// coproc's own threads in this process (its I/O thread), which do not count against the user.
// +1 before such a thread is created, -1 if its creation failed or once it has ended. A forked
// child starts from 0 (the count is tagged with the process that made it): its parent's
// threads do not exist there. Lock-free.
void count_own_thread(int delta) noexcept;

// This process's threads that are not coproc's own (nor ThreadSanitizer's background thread):
// 1 for a single-threaded program. 1 also when /proc cannot tell (treated as single-threaded).
int user_thread_count() noexcept;

// The fork launcher's check(), before anything is created: under fork_thread_policy::refuse a
// multi-threaded program gets std::logic_error; under warn, the first such start of this
// process prints the warning to stderr; allow (or a single thread) does nothing.
void check_fork_thread_policy();

}  // namespace coproc::detail
