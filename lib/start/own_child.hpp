// coproc internals: watching a child that this process created itself (fork and spawn), from
// its pid to its state: the sentinel and the reap by waitid.
#pragma once

#include "core/private.hpp"

#include <sys/types.h>

#include <memory>

#include "child/child_state.hpp"
#include "core/fd.hpp"

namespace coproc::detail {

// The fallback's two pipes: the child holds the write end of `exit` (EOF in ours: it ended)
// and the read end of `alive` (EOF in its: we are gone).
struct fallback_pipes {
  private_pipe exit, alive;
};

// The state of our child `pid`. With pidfd sentinels opens the pidfd; otherwise closes the
// child's ends of `pipes` here and keeps ours. A child that was reaped by somebody else before
// it could be watched is ended with a lost status. Kills and reaps the child when it throws.
std::shared_ptr<child_state> watch_own_child(pid_t pid, bool by_pidfd, fallback_pipes pipes,
                                             bool daemon);

// A failed start leaves no child behind: kills and reaps `pid` if it is still our unreaped
// child (its pid is then safe to use).
void kill_unreaped(pid_t pid) noexcept;

}  // namespace coproc::detail
