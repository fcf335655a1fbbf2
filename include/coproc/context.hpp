// coproc: contexts, Python's multiprocessing.get_context().
#pragma once

#include <optional>
#include <utility>

#include <coproc/connection.hpp>
#include <coproc/process.hpp>
#include <coproc/start_method.hpp>

namespace coproc {

/// A start method to create processes with, as Python's context objects: `get_context(m)`
/// pins `m`; `get_context()` is the default context, which follows set_start_method().
///
/// @par Example
/// @code
/// auto ctx = coproc::get_context(coproc::start_method::fork);
/// coproc::process p = ctx.process(work, 42);   // Python: ctx.Process(target=work, args=(42,))
/// p.start();
/// @endcode
///
/// @par Thread Safety
/// A context is a small value: copy it freely; its members may be called from any thread.
class context {
 public:
  /// The default context.
  context() = default;
  /// A context pinned to `method`.
  explicit context(start_method method) : method_(method) {}

  /// The pinned method; for the default context, get_start_method() now.
  start_method get_start_method() const { return method_.value_or(coproc::get_start_method()); }

  /// A process object that starts with this context's method (Python's ctx.Process). The
  /// default context leaves the method to start(), which reads get_start_method() then.
  template <class F, class... Args>
    requires detail::process_target<F, Args...>
  coproc::process process(F&& target, Args&&... args) const {
    return coproc::process(options({}), std::forward<F>(target), std::forward<Args>(args)...);
  }

  /// As above with options; a method set in `opts` wins over the context's.
  template <class F, class... Args>
    requires detail::process_target<F, Args...>
  coproc::process process(process_options opts, F&& target, Args&&... args) const {
    return coproc::process(options(std::move(opts)), std::forward<F>(target),
                           std::forward<Args>(args)...);
  }

  /// Python's ctx.Pipe(duplex): the same ends as coproc::pipe(), whatever the method (the ends
  /// reach a child as arguments of its target).
  std::pair<connection, connection> pipe(bool duplex = true) const { return coproc::pipe(duplex); }

  /// The options a process made by this context starts with (for subclasses of process).
  process_options options(process_options opts) const {
    if (!opts.method) opts.method = method_;
    return opts;
  }

 private:
  std::optional<start_method> method_;
};

/// The context of `method`, or the default context (Python's get_context(None)).
inline context get_context(std::optional<start_method> method = {}) {
  return method ? context(*method) : context();
}

}  // namespace coproc
