// coproc: what the fork start method does in a program that runs other threads.
#pragma once

#include <string_view>

namespace coproc {

/// What start() does when the fork start method is used while this process runs other threads
/// (docs/fork-policy.md). Only the fork method is concerned: spawn and forkserver children are
/// never copies of a multi-threaded program.
enum class fork_thread_policy {
  allow,   ///< fork silently
  warn,    ///< fork, and print a warning to stderr once per process (the default, as Python 3.12)
  refuse,  ///< start() throws std::logic_error and leaves the object unstarted
};

/// Sets the policy for the whole process; any number of times, from any thread, the last call
/// wins. It is read by start(). A forked child inherits its parent's policy.
void set_fork_thread_policy(fork_thread_policy policy);

/// The policy in force: warn unless set_fork_thread_policy said otherwise.
fork_thread_policy get_fork_thread_policy();

/// "allow", "warn" or "refuse".
std::string_view to_string(fork_thread_policy policy);

}  // namespace coproc
