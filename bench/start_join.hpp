// The start+join loops, shared by the one-at-a-time benchmark and the one whose parent holds
// a lot of memory.
#pragma once

#include <coproc/start_method.hpp>

#include "bench.hpp"

namespace bench {

// start()+join() of a no-op target, timed from before the object is built to after join.
case_result coproc_start_join_loop(const case_env& env, coproc::start_method method);
// fork, _exit(0) in the child, waitpid in the parent.
case_result raw_fork_loop(const case_env& env);
// posix_spawn of the no-op program, then waitpid.
case_result posix_spawn_loop(const case_env& env);

}  // namespace bench
