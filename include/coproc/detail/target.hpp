// coproc internals: the type-erased target of a process (a callable and its arguments).
#pragma once

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <coproc/bytes.hpp>
#include <coproc/detail/registered.hpp>

namespace coproc {
class process;
struct process_options;

namespace detail {

// What the target constructors accept: anything callable with the decayed arguments,
// never a process (copying a process stays a clean compile error) nor options.
template <class F, class... Args>
concept process_target =
    !std::is_same_v<std::remove_cvref_t<F>, process_options> &&
    !std::is_base_of_v<process, std::remove_cvref_t<F>> &&
    (std::is_invocable_v<std::decay_t<F>&, std::decay_t<Args>&...> ||
     std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>);

// The descriptors an argument hands to the child: a type that has some declares
// `void coproc_handed_descriptors(const T&, std::vector<int>&)` where ADL finds it
// (connection does). Children close coproc's own descriptors except these.
template <class T>
void handed_descriptors_of(const T& arg, std::vector<int>& out) {
  if constexpr (requires { coproc_handed_descriptors(arg, out); }) {
    coproc_handed_descriptors(arg, out);
  } else if constexpr (requires { arg.get(); coproc_handed_descriptors(arg.get(), out); }) {
    coproc_handed_descriptors(arg.get(), out);  // std::reference_wrapper
  }
}

// A target as spawn and forkserver send it: the registered function, the JSON array of its
// arguments and the descriptors handed with them; or, when it cannot travel, why not.
struct exec_call {
  const registered_target* target = nullptr;
  bytes args;
  std::vector<int> fds;
  const char* problem = nullptr;  // set when target is null
};

class target_base {
 public:
  virtual ~target_base() = default;
  virtual void call() = 0;
  virtual void handed_descriptors(std::vector<int>& out) const = 0;
  virtual exec_call exec_form() const = 0;
};

template <class F, class... Args>
class target_impl final : public target_base {
 public:
  template <class G, class... A>
  explicit target_impl(G&& f, A&&... args)
      : f_(std::forward<G>(f)), args_(std::forward<A>(args)...) {}

  void handed_descriptors(std::vector<int>& out) const override {
    std::apply([&](const Args&... a) { (handed_descriptors_of(a, out), ...); }, args_);
  }

  exec_call exec_form() const override {
    exec_call c;
    if constexpr (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) {
      c.target = find_target(reinterpret_cast<const void*>(f_));
      if (!c.target) {
        c.problem = "the target function is not registered: add COPROC_TARGET(name) at namespace "
                    "scope, in the function's namespace";
      } else if constexpr (!(sendable_arg_v<Args> && ...)) {
        c.target = nullptr;
        c.problem = "an argument of the target cannot be sent to the new process: arguments "
                    "travel as typed messages (JSON) or as connections";
      } else {
        c.args = exec_arguments(args_, c.fds);
      }
    } else {
      c.problem = "the target is not a function: a lambda or function object cannot be found "
                  "in the new process; pass a function registered with COPROC_TARGET";
    }
    return c;
  }

  void call() override {
    // Lvalues keep run() repeatable (Python allows calling p.run() directly); a target that
    // only accepts rvalues (move-only parameters) gets its arguments moved, as std::thread does.
    if constexpr (std::is_invocable_v<F&, Args&...>) {
      std::apply([this](Args&... a) { std::invoke(f_, a...); }, args_);
    } else {
      std::apply([this](Args&... a) { std::invoke(std::move(f_), std::move(a)...); }, args_);
    }
  }

 private:
  F f_;
  std::tuple<Args...> args_;
};

template <class F, class... Args>
std::unique_ptr<target_base> make_target(F&& f, Args&&... args) {
  return std::make_unique<target_impl<std::decay_t<F>, std::decay_t<Args>...>>(
      std::forward<F>(f), std::forward<Args>(args)...);
}

}  // namespace detail
}  // namespace coproc
