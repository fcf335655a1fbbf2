#include <coproc/testing.hpp>

#include "child/sentinel.hpp"
#include "start/forkserver/forkserver.hpp"

namespace coproc::testing {

void force_pipe_sentinel(bool on) { detail::force_pipe_sentinels(on); }
bool pidfd_sentinels() { return detail::pidfd_sentinels(); }
std::optional<pid_t> forkserver_pid() { return detail::forkserver_pid(); }

}  // namespace coproc::testing
