// coproc: hooks for test suites (not part of the Python API).
#pragma once

#include <sys/types.h>

#include <optional>

namespace coproc::testing {

/// Makes every later start() use the pipe sentinel instead of a pidfd, as it would where the
/// kernel refuses pidfd (ENOSYS, EPERM). A test setup uses it to run a whole suite on the
/// fallback. Call it before starting children.
void force_pipe_sentinel(bool on = true);

/// True when start() creates pidfd sentinels (the kernel allows it and nothing forced the pipe).
bool pidfd_sentinels();

/// The pid of this process's forkserver while one runs (it starts on the first forkserver
/// start()), for tests that kill it.
std::optional<pid_t> forkserver_pid();

}  // namespace coproc::testing
