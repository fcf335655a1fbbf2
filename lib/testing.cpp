#include <coproc/testing.hpp>

#include "child/sentinel.hpp"

namespace coproc::testing {

void force_pipe_sentinel(bool on) { detail::force_pipe_sentinels(on); }
bool pidfd_sentinels() { return detail::pidfd_sentinels(); }

}  // namespace coproc::testing
