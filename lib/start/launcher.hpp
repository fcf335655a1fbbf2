// coproc internals: a start method, as process::start() sees it (CPython's popen_*.py).
#pragma once

#include "core/private.hpp"

#include <memory>

#include <coproc/process.hpp>
#include <coproc/start_method.hpp>

#include "child/child_state.hpp"

namespace coproc::detail {

class launcher {
 public:
  virtual ~launcher() = default;

  // Misuse this method can see in the object before anything is created (spawn and
  // forkserver: a target that is not registered). Throws std::logic_error.
  virtual void check(const process& self) const = 0;

  // Creates the child, which runs run_child() (start/bootstrap.hpp) with the object, and
  // returns its state: the sentinel and the status source this method provides. Leaves no
  // child behind when it throws (std::system_error for the operating system's refusals).
  virtual std::shared_ptr<child_state> launch(process& self) = 0;
};

launcher& launcher_for(start_method method);

// One file per method.
launcher& fork_launcher();
launcher& spawn_launcher();
launcher& forkserver_launcher();

}  // namespace coproc::detail
