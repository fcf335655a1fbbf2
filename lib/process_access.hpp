// coproc internals: how the library's own files reach the private parts of a process object.
#pragma once

#include "core/private.hpp"

#include <memory>
#include <string>
#include <vector>

#include <coproc/process.hpp>

namespace coproc::detail {

struct process_access {
  static std::shared_ptr<child_state>& state(process& p) { return p.state_; }
  static const std::string& identity(const process& p) { return p.identity_; }
  static bool daemon(const process& p) { return p.daemon_; }
  // coproc's own descriptors the child keeps: connections among the target's arguments.
  // UBSan's vptr check probes the object's memory through a pipe; start() runs this while
  // descriptors may be exhausted (its EMFILE path), where the probe fails and reports a
  // valid object as "invalid vptr". The call is on our own, fully constructed target.
  __attribute__((no_sanitize("vptr"))) static void handed_descriptors(const process& p, std::vector<int>& out) {
    if (p.target_) p.target_->handed_descriptors(out);
  }
  // The target as spawn and forkserver send it; no target: nothing to call, no problem.
  static exec_call exec_form(const process& p) {
    return p.target_ ? p.target_->exec_form() : exec_call{};
  }
  static process* make_main() { return new process(process::main_tag{}); }
  // A spawned or forkserver child's own object, before become() says who it is.
  static process* make_exec_self() { return new process(process::main_tag{}); }
  static void become(process& p, std::string name, std::string identity, bool daemon,
                     std::vector<std::byte> authkey, pid_t creator,
                     std::unique_ptr<target_base> target) {
    p.name_ = std::move(name);
    p.identity_ = std::move(identity);
    p.daemon_ = daemon;
    p.authkey_ = std::move(authkey);
    p.creator_pid_ = creator;
    p.target_ = std::move(target);
    p.role_ = process::role::ordinary;
  }
  static process* make_parent(std::string name, pid_t pid, std::shared_ptr<child_state> st) {
    return new process(process::parent_tag{}, std::move(name), pid, std::move(st));
  }
};

}  // namespace coproc::detail
