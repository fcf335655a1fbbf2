// coproc's benchmark harness: what a benchmark is made of, and the helpers its cases share.
//
// A *group* is one table section (start+join latency, N children at N=1000, ...). It holds
// *variants*: coproc itself and its anchors. Each (group, variant, round) is one *case*, run
// in its own child process through coproc::process with a deadline; the case function runs
// in that child, does its own warm-up and iterations, and hands back a case_result through a
// plain pipe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace bench {

struct options {
  bool short_mode = false;
  int rounds = 0;                 // 0: each group's own count
  std::string results_dir;
  std::string noop_path;          // the no-op program the exec-based anchors launch
  std::string python;             // empty: the Python anchors are skipped (with a note)
  std::string python_note;        // why there is no Python
  std::string py_script;          // bench/py_anchors.py
  std::string gnuplot_script;     // bench/plot.gp
  std::vector<std::string> only;  // group ids to run; empty: all
  bool selftest = false;          // adds cases that must hang and fail, to show the deadline
  bool plot = true;
};

struct case_result {
  std::vector<double> samples;                          // in the group's unit
  std::vector<std::pair<std::string, double>> metrics;  // extra figures, e.g. wakeups per exit
  std::string skipped;                                  // non-empty: the reason
  std::string error;                                    // non-empty: the case failed
};

struct case_env {
  const options& opt;
  long param;  // the group's parameter: N, MiB held by the parent, message size...
  int warmup;
  int iterations;
};

using case_fn = case_result (*)(const case_env&);

enum class role {
  subject,  // coproc
  anchor,   // what coproc is compared with
  info,     // shown for context, compared with nothing
};

struct variant {
  std::string name;
  role kind;
  case_fn fn;
  int warmup;
  int iterations;
  std::chrono::seconds deadline;
};

struct group {
  std::string id;     // stable key for the CSV and the plot: "start_join", "fanout", ...
  std::string title;  // table heading
  std::string param_label;  // "N=1000", "64 MiB"; empty when the group has no parameter
  long param = 0;
  std::string unit;
  bool higher_is_better = false;
  std::string anchor;  // the variant whose median is every ratio's denominator
  int rounds = 1;
  std::vector<variant> variants;
  std::string note;  // printed under the heading (e.g. why N is smaller than asked)
  std::string skip;  // non-empty: no case runs, every row says why (e.g. "short mode")
};

// The groups of each benchmark file, in the order they appear in the table.
void add_start_join_groups(std::vector<group>& out, const options& opt);
void add_async_groups(std::vector<group>& out, const options& opt);
void add_fork_memory_groups(std::vector<group>& out, const options& opt);
void add_ipc_groups(std::vector<group>& out, const options& opt);
void add_handshake_groups(std::vector<group>& out, const options& opt);
void add_pool_groups(std::vector<group>& out, const options& opt);
void add_selftest_groups(std::vector<group>& out, const options& opt);

// fork + pidfd_open, the pidfd awaited by a coroutine through Asio's stream_descriptor: the
// floor of any Asio-based design, next to which coproc's own costs show.
case_result asio_raw_fork_start_join(const case_env& env);

// Boost.Process v2 lives in its own translation unit: its headers are the slowest to compile.
case_result bp2_start_join(const case_env& env);

// ---------------------------------------------------------------------------------------
// Helpers for the cases.

// CLOCK_MONOTONIC in microseconds (the clock Python's perf_counter reads too).
double now_us() noexcept;

inline case_result skipped(std::string why) {
  case_result r;
  r.skipped = std::move(why);
  return r;
}
inline case_result failed(std::string why) {
  case_result r;
  r.error = std::move(why);
  return r;
}

// Throws std::system_error with errno.
[[noreturn]] void throw_errno(const char* what);

// waitpid that survives EINTR; returns the raw status.
int wait_exit(pid_t pid);
// Runs a program (args[0]: its path) with its stdout into a pipe, and waits for it.
struct captured {
  std::string out;
  int status = 0;       // the wait status, once it ran
  int spawn_error = 0;  // non-zero: it could not be started (an errno value)
};
captured run_capturing(std::vector<std::string> args);

// Runs the Python anchors script with `args` and collects the samples and metrics it prints.
case_result run_python(const case_env& env, const std::vector<std::string>& args);

// Raises RLIMIT_NOFILE towards `want` (the hard limit too, where the process may), and
// returns the soft limit it got.
std::size_t raise_nofile(std::size_t want);

// Heap bytes in use (malloc's view) and resident set size, for memory-per-child figures.
std::size_t heap_in_use() noexcept;
std::size_t resident_bytes() noexcept;

// Private anonymous memory, every page written, on 4 KiB pages: what fork copies page
// tables for. Huge pages are refused so the figure does not depend on the THP setting.
class touched_region {
 public:
  explicit touched_region(std::size_t bytes);
  ~touched_region();
  touched_region(const touched_region&) = delete;
  touched_region& operator=(const touched_region&) = delete;

 private:
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

// A shared page that a child writes its last timestamp into.
struct shared_stamp {
  volatile double t_us;
};
shared_stamp* map_shared_stamp();
void unmap_shared_stamp(shared_stamp* s) noexcept;

}  // namespace bench
