// coproc internals: per-process module state (Python's process.py globals) and the registry
// of children. A forked child replaces all of it before running its target.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <coproc/process.hpp>

#include "child_state.hpp"

namespace coproc::detail {

// Reaches the private parts of process for the library's own files.
struct process_access {
  static std::shared_ptr<child_state>& state(process& p) { return p.state_; }
  static std::unique_ptr<target_base>& target(process& p) { return p.target_; }
  static const std::string& identity(const process& p) { return p.identity_; }
  static const std::vector<std::byte>& authkey(const process& p) { return p.authkey_; }
  static bool daemon(const process& p) { return p.daemon_; }
  static process* make_main() { return new process(process::main_tag{}); }
  static process* make_parent(std::string name, pid_t pid, std::shared_ptr<child_state> st) {
    return new process(process::parent_tag{}, std::move(name), pid, std::move(st));
  }
};

// The started children of this process that have not been seen to end.
class child_registry {
 public:
  void add(const std::shared_ptr<child_state>& st, process* owner);
  // Drops an ended child from the list (no-op if it is not listed).
  void remove(child_state& st);
  void set_owner(child_state& st, process* owner);
  // The object is going away: an ended child is dropped, a running one stays (detached)
  // until something reaps it.
  void detach(child_state& st);
  // Reaps detached children that have ended (cheap when there are none).
  void sweep_detached();
  // Reaps every ended child; returns the owners of those still running.
  std::vector<process*> active();
  std::vector<std::shared_ptr<child_state>> snapshot();
  void clear();

 private:
  std::mutex mutex_;
  std::list<std::shared_ptr<child_state>> children_;
  std::atomic<std::size_t> detached_{0};  // written under mutex_, read without it by start()
};

// What a child knows about its parent before anybody asks for parent_process().
struct parent_info {
  pid_t pid = 0;
  std::string name;
  bool by_pidfd = true;  // watch it with a pidfd; otherwise through `alive_fd`
  int alive_fd = -1;     // pipe fallback: read end whose EOF means the parent is gone
};

struct runtime {
  child_registry children;
  std::atomic<int> counter{0};  // Python's _process_counter
  process* current = nullptr;   // MainProcess, or the started object in a child
  bool in_child = false;
  std::thread::id bootstrap_thread;  // the thread that runs the target in a child

  // parent_process(): built on first use, so a child that never asks pays nothing for it
  // (and a child with a full descriptor table can still run its target).
  parent_info parent_of_this;
  std::mutex parent_mutex;
  std::atomic<process*> parent{nullptr};

  runtime* previous = nullptr;  // in a child: the parent's state, abandoned but kept reachable
};

// The module state of this process (created on first use; replaced in a forked child).
runtime& rt();
// In a freshly forked child: makes `state` (which must live until the child ends) the module
// state. The parent's copy may be locked by threads that do not exist here: it is left as is.
void install_child_runtime(runtime& state);

// Flushes stdout, stderr and the C++ standard streams when they hold output: before a fork,
// or the child would write the same bytes again, and in a child before it ends. Only those,
// as in Python: another FILE's buffer holds the parent's unflushed data, which a child must
// not write a second time.
void flush_std_streams() noexcept;
// parent_process(): nullptr in the main program.
process* parent_watch();
// A sentinel that is ready at once: for a process that ended before anybody could watch it.
owned_fd gone_sentinel();

int next_process_number();
std::vector<std::byte> random_authkey();

// Registers the at-exit policy once per program (inherited by forked children).
void ensure_exit_policy();
// The at-exit policy: daemonic children get SIGTERM, then SIGKILL after a grace period;
// the others are joined. Runs in the main program at exit and in a child after its target.
void run_exit_policy() noexcept;

// Start-method plumbing.
bool use_pidfd();  // probes once whether the kernel gives pidfds
void force_pipe(bool on);

// The child's side of every start method: runs the target, then the child's clean-up, then
// _exit with the exit code.
[[noreturn]] void finish_child(int code) noexcept;
int run_target(process& self) noexcept;

std::shared_ptr<child_state> fork_start(process& self);


}  // namespace coproc::detail
