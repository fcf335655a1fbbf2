// coproc internals: what a spawned or forkserver child is told about itself.
//
// A fork child finds everything in its copy of the parent's memory; a child that begins as a
// fresh program (spawn) or as a copy of the server (forkserver) is sent it: the registered
// target and its arguments, and the object's identity. The message is two frames, the spec as
// a typed message and the arguments' JSON array as they were made (start/child_spec.cpp).
#pragma once

#include "core/private.hpp"

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <coproc/bytes.hpp>
#include <coproc/process.hpp>

namespace coproc::detail {

struct child_spec {
  std::string target;                  // target_key(); empty: no target, run() does nothing
  std::string name;
  std::string identity;                // "3:1": names the child's own children
  bool daemon = false;
  std::vector<std::uint8_t> authkey;
  std::int64_t parent_pid = 0;         // the process that called start()
  std::string parent_name;
  bool by_pidfd = true;                // the sentinel's kind (the fallback hands two pipe ends)
  int handed = 0;                      // connections' descriptors handed beside the message
  std::string start_method;            // the parent's default, for the child's own children
  std::vector<int> ignored_signals;    // SIG_IGN at start(): a forkserver child has the
                                       // server's actions, not the caller's
};

// The spec of `self` and the exec form of its target (exec_call::problem unset). Throws
// std::logic_error with the problem when the target cannot travel, and for a process subclass
// (its run() cannot be found in another program).
struct exec_request {
  child_spec spec;
  bytes args;              // the JSON array
  std::vector<int> fds;    // the handed descriptors, in the array's order
};
exec_request make_exec_request(const process& self, bool by_pidfd);

// The message as it travels: [u32 length][spec JSON][u32 length][args JSON].
bytes encode(const child_spec& spec, std::span<const std::byte> args);
// Reads the two frames from a blocking descriptor. Throws std::runtime_error on a short read.
void read_spec(int fd, child_spec& spec, bytes& args);
// Parses an encoded message. Throws coproc::message_error, std::runtime_error.
void decode(std::span<const std::byte> message, child_spec& spec, bytes& args);

// The child's side: becomes the process `spec` describes and runs its target; never returns.
// `handed` are the descriptors of the connections among the arguments; `parent_pidfd`, when
// valid, watches the parent (a forkserver child's parent is not its real parent); for the
// pipe fallback `exit_fd` is the write end whose end of file tells the parent that the child
// has ended, and `alive_fd` the read end whose end of file means the parent is gone.
[[noreturn]] void run_exec_child(child_spec spec, bytes args, std::vector<int> handed,
                                 int parent_pidfd, int exit_fd, int alive_fd);

}  // namespace coproc::detail
