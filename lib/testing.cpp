#include <coproc/testing.hpp>

#include "child/sentinel.hpp"
#include "start/exec_child.hpp"
#include "start/forkserver/forkserver.hpp"

namespace coproc::testing {

void force_pipe_sentinel(bool on) { detail::force_pipe_sentinels(on); }
bool pidfd_sentinels() { return detail::pidfd_sentinels(); }
std::optional<pid_t> forkserver_pid() { return detail::forkserver_pid(); }
void spawn_program(std::string path) { detail::set_spawn_program(std::move(path)); }

}  // namespace coproc::testing
