// coproc: start methods (how a child process comes to life).
#pragma once

#include <string_view>
#include <type_traits>

#include <coproc/detail/registered.hpp>

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

/// Registers a function by name for the spawn and forkserver start methods. At namespace scope,
/// in the function's namespace: `COPROC_TARGET(work);`. The function must not be overloaded.
/// Its parameters are what a child receives: the arguments given to the process are sent as
/// JSON (typed messages, docs/connections.md) and read as the parameters' decayed types;
/// connections are handed over as descriptors. Any number of functions may be registered.
#define COPROC_TARGET(function_name)                                                     \
  [[maybe_unused]] static ::coproc::detail::target_registrar<decltype(function_name)> \
      coproc_target_registrar_##function_name(#function_name, &function_name)
