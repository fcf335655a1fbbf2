// coproc: start methods (how a child process comes to life).
#pragma once

#include <string_view>

namespace coproc {

/// How start() creates the child, as in Python.
enum class start_method {
  fork,        ///< the child is a copy of the parent (any callable, any arguments)
  spawn,       ///< a fresh exec of the same program (registered targets only)
  forkserver,  ///< forked by a single-threaded server process (registered targets only)
};

/// Sets the default start method; any number of times, the last call wins. It is read by
/// start(), not when a process object is built.
void set_start_method(start_method method);

/// The default start method: fork unless set_start_method said otherwise.
start_method get_start_method();

/// "fork", "spawn" or "forkserver".
std::string_view to_string(start_method method);

/// First statement of main(). Needed by the spawn and forkserver start methods (a spawned
/// child runs its target here and never returns); harmless otherwise.
void init(int argc, char** argv);

}  // namespace coproc
