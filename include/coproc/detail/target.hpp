// coproc internals: the type-erased target of a process (a callable and its arguments).
#pragma once

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

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

class target_base {
 public:
  virtual ~target_base() = default;
  virtual void call() = 0;
  virtual void handed_descriptors(std::vector<int>& out) const = 0;
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
