// coproc: the process object (Python's multiprocessing.Process) and its free functions.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <coproc/detail/duration.hpp>
#include <coproc/detail/target.hpp>
#include <coproc/error.hpp>
#include <coproc/start_method.hpp>

namespace coproc {

namespace detail {
class child_state;
struct process_access;
}  // namespace detail

/// Options of a process object. It stays an aggregate, so designated initialisers work:
/// `coproc::process p({.name = "worker", .daemon = true}, target)`. New members go last.
/// Every member has a default member initialiser, so leaving members out does not trip
/// -Wmissing-field-initializers (-Wextra) in users' -Werror builds.
struct process_options {
  /// Empty: "Process-N1:N2:...:Nk", where Nk is the k-th process object built by its parent.
  std::string name{};
  /// Unset: inherit current_process().daemon().
  std::optional<bool> daemon{};
  /// Unset: get_start_method() at start().
  std::optional<start_method> method{};
};

/// What the kernel reported when the child was reaped (beyond Python: exitcode is all it has).
struct exit_status {
  int exitcode = 0;                ///< Python's convention: >= 0 exit code, -N for signal N
  std::optional<int> signal{};     ///< the signal that ended the child, if any
  bool core_dumped = false;        ///< the child dumped core
  std::chrono::microseconds user_time{}, system_time{};  ///< CPU time of the child itself
  std::size_t max_rss_kib = 0;     ///< peak resident set size of the child
  /// The status could not be had: somebody else reaped the child (SIGCHLD ignored, a
  /// waitpid(-1) elsewhere), or it went with the forkserver that was its parent. Then
  /// exitcode is 255, as join(), exitcode() and async_join report it, and nothing else is set.
  bool lost = false;
};

/// A callable run in a child process, with the API of Python's multiprocessing.Process.
///
/// The blocking API is Python's: start(), join(), join(timeout), is_alive(), exitcode(),
/// terminate(), kill(), close(). The same object is awaitable from Asio code with
/// async_join(token). The child's end is the kernel's event: the sentinel is a pidfd where
/// the kernel allows one (a pipe otherwise), signals go through it, and the child is reaped
/// exactly once, whoever asks first; every joiner sees the same result.
///
/// @par Thread Safety
/// join, is_alive, exitcode, status, pid, name(), terminate, kill and async_join may be
/// called from any number of threads at once. start, close, moves and the setters need the
/// object to themselves.
///
/// @par Lifetime
/// Destroying a process whose child still runs neither kills nor blocks: the child is reaped
/// later (by active_children(), a later start() or at exit) but is no longer listed by
/// active_children(). Pending async_joins complete with operation_aborted.
class process {
 public:
  /// A process with no target: run() does nothing and the exit code is 0.
  process();

  /// A process with no target and the given options.
  explicit process(process_options opts);

  /// A process that runs `target(args...)` in the child. The callable and the arguments are
  /// copied (decayed) into the object, as std::thread does.
  template <class F, class... Args>
    requires detail::process_target<F, Args...>
  explicit process(F&& target, Args&&... args)
      : process(process_options{}, std::forward<F>(target), std::forward<Args>(args)...) {}

  /// Options, then the target and its arguments.
  template <class F, class... Args>
    requires detail::process_target<F, Args...>
  process(process_options opts, F&& target, Args&&... args) : process(std::move(opts)) {
    target_ = detail::make_target(std::forward<F>(target), std::forward<Args>(args)...);
  }

  /// Move-only; a started process may be moved (pending async joins follow it).
  process(process&& other) noexcept;
  /// Beyond Python: the object moved over is treated as if destroyed first (see Lifetime).
  process& operator=(process&& other) noexcept;
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  /// Never kills, never blocks (see Lifetime).
  virtual ~process();

  /// The child's activity. The default calls the target, if any. Subclasses override it.
  virtual void run();

  /// Starts the child. Throws std::logic_error on misuse ("cannot start a process twice",
  /// "can only start a process object created by current process", "daemonic processes are
  /// not allowed to have children", "process object is closed") and std::system_error when
  /// the operating system refuses; a failed start leaves no child behind.
  void start();

  /// Waits for the child to end and returns its exit code (Python returns None; the code is
  /// exitcode()). A signal in the waiting thread never breaks the wait. A status that was
  /// lost (see exit_status::lost) reads 255 here, in exitcode(), status() and async_join.
  int join();

  /// Waits at most `timeout`. Returns the exit code, or nullopt if the child still runs.
  /// A zero or negative timeout polls once.
  template <class Rep, class Period>
  std::optional<int> join(std::chrono::duration<Rep, Period> timeout) {
    return join_for(detail::saturating_ns(timeout));
  }

  /// True from start() until the child has ended (reaping it when it has).
  bool is_alive();

  std::string name() const;
  void name(std::string new_name);

  bool daemon() const;
  /// Throws std::logic_error("process has already started") after start().
  void daemon(bool flag);

  /// The child's pid (nullopt before start); for current_process(), getpid().
  std::optional<pid_t> pid() const;
  std::optional<pid_t> ident() const { return pid(); }

  /// nullopt until the child has ended; then >= 0 for an exit, -N for signal N.
  std::optional<int> exitcode();

  /// The authentication key (32 random bytes in the main program, inherited at construction).
  std::span<const std::byte> authkey() const;
  void authkey(std::span<const std::byte> key);

  /// A file descriptor that becomes readable when the child ends (a pidfd on Linux). It stays
  /// valid until close(); do not close it yourself.
  int sentinel() const;

  /// Sends SIGTERM (through the pidfd: a reaped and reused pid is never hit). Does not wait.
  void terminate();
  /// Sends SIGKILL, as terminate() does.
  void kill();
  /// Sends SIGINT, as terminate() does (Python 3.14's Process.interrupt()).
  void interrupt();

  /// Releases the sentinel. Throws std::logic_error if the child still runs. Afterwards most
  /// members throw "process object is closed"; name, daemon and authkey still work. Pending
  /// async_joins complete with the exit code (they keep the sentinel until then).
  void close();

  /// Beyond Python: the full status of an ended child (nullopt while it runs or before start).
  std::optional<exit_status> status();

  /// Waits asynchronously for the child to end.
  ///
  /// @par Completion Signature
  /// `void(boost::system::error_code, int exitcode)`
  ///
  /// @par Per-Operation Cancellation
  /// terminal, partial and total: cancelling stops the wait only; it never signals the child,
  /// and a later join still works. Cancelled operations complete with operation_aborted.
  ///
  /// The handler runs on its associated executor (in a coroutine, the coroutine's executor);
  /// a handler without one completes on the system executor while coproc waits with an I/O
  /// thread of its own. It is never invoked from within this call. Misuse throws from here.
  template <class Token>
  auto async_join(Token&& token);

  /// Waits asynchronously for at most `timeout` (a zero or negative timeout polls).
  ///
  /// @par Completion Signature
  /// `void(boost::system::error_code, std::optional<int> exitcode)`: nullopt when the timeout
  /// passed first; the child keeps running.
  template <class Rep, class Period, class Token>
  auto async_join(std::chrono::duration<Rep, Period> timeout, Token&& token);

  /// Beyond Python: Python's repr, e.g. `<Process name='Process-1' pid=4711 parent=4706
  /// started>`; reaps the child if it has ended.
  std::string repr();

 private:
  friend struct detail::process_access;
  struct main_tag {};
  struct parent_tag {};
  enum class role : unsigned char { ordinary, main, parent };

  process(main_tag);
  process(parent_tag, std::string name, pid_t pid, std::shared_ptr<detail::child_state> state);

  std::optional<int> join_for(std::chrono::nanoseconds timeout);
  std::shared_ptr<detail::child_state> prepare_async_join(bool timed);
  bool is_current() const;
  void check_closed() const;
  void check_joinable() const;
  void unlist();
  void check_signal_target() const;
  void release() noexcept;

  std::shared_ptr<detail::child_state> state_;
  std::unique_ptr<detail::target_base> target_;
  std::string name_;
  std::string identity_;  // "3:1" for the first child of the third child of the main program
  std::vector<std::byte> authkey_;
  std::optional<start_method> method_;
  pid_t creator_pid_ = 0;  // Python's _parent_pid: only this process may start/join the object
  bool daemon_ = false;
  bool closed_ = false;
  role role_ = role::ordinary;
};

/// "MainProcess" in the main program; in a child, the process object that was started.
process& current_process();

/// nullptr in the main program. In a child: name(), pid(), is_alive(), sentinel(),
/// join(timeout) (waits for the parent's end or the timeout; returns nullopt either way)
/// and async_join of the parent.
process* parent_process();

/// The started children of this process that have not ended (reaping ended ones first).
/// Children whose objects were destroyed are reaped but not listed.
std::vector<process*> active_children();

/// The number of CPUs online (at least 1).
int cpu_count();

}  // namespace coproc

#include <coproc/impl/process.hpp>
