// coproc: start methods (how a child process comes to life).
#pragma once

#include <string_view>
#include <type_traits>

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

namespace detail {
// The registry of targets that spawn and forkserver children can find by name.
void register_target(const char* name, const void* address) noexcept;
// The name a function was registered under, or nullptr.
const char* registered_name(const void* address) noexcept;

template <class F>
struct target_registrar {
  static_assert(std::is_function_v<F>, "COPROC_TARGET takes the name of a function");
  target_registrar(const char* name, F* fn) noexcept {
    register_target(name, reinterpret_cast<const void*>(fn));
  }
};
}  // namespace detail

}  // namespace coproc

/// Registers a function by name for the spawn and forkserver start methods. At namespace scope,
/// in the function's namespace: `COPROC_TARGET(work);`. The function must not be overloaded.
#define COPROC_TARGET(function_name)                                                     \
  [[maybe_unused]] static const ::coproc::detail::target_registrar<decltype(function_name)> \
      coproc_target_registrar_##function_name(#function_name, &function_name)
