// coproc internals: the module state of this process (Python's process.py globals). A child
// coproc starts installs its own before its target runs; a raw fork() copy of the program
// makes its own on first use (core/per_process.hpp), so neither ever acts on its parent's.
#pragma once

#include "core/private.hpp"

#include <sys/types.h>

#include <atomic>
#include <mutex>
#include <string_view>
#include <thread>

#include <coproc/process.hpp>

#include "child/registry.hpp"

namespace coproc::detail {

// What a child knows about its parent before anybody asks for parent_process().
struct parent_info {
  pid_t pid = 0;
  std::string_view name;  // in the parent's memory, which the child's copy keeps forever
  bool by_pidfd = true;   // watch it with a pidfd; otherwise through `alive_fd`
  int alive_fd = -1;      // pipe fallback: read end whose EOF means the parent is gone
  int pidfd = -1;         // opened already, not recorded: a forkserver child's parent is not
                          // its real parent, so getppid() cannot confirm a pidfd opened later
};

struct runtime {
  pid_t owner = 0;  // the process this state belongs to (per_process)
  child_registry children;
  std::atomic<int> counter{0};  // Python's _process_counter
  process* current = nullptr;   // MainProcess, or the started object in a child
  bool in_child = false;        // a child coproc started (not a raw fork of the program)
  std::thread::id bootstrap_thread;  // the thread that runs the target in a child

  // parent_process(): built on first use, so a child that never asks pays nothing for it
  // (and a child with a full descriptor table can still run its target).
  parent_info parent_of_this;
  std::mutex parent_mutex;
  std::atomic<process*> parent{nullptr};

  runtime* previous = nullptr;  // in a child: the parent's state, abandoned but kept reachable
};

// The module state of this process, made on first use.
runtime& rt();
// This process's module state if it has made one, else nullptr (nothing is created).
runtime* own_runtime() noexcept;
// In a child coproc started: makes `state` (which lives until the child ends) the module
// state, without allocating. The parent's copy may be locked by threads that do not exist
// here: it is left as it is.
void install_child_runtime(runtime& state) noexcept;

}  // namespace coproc::detail
