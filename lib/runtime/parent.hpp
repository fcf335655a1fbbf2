// coproc internals: parent_process(), the watch a child keeps on the process that started it.
#pragma once

#include "core/private.hpp"

#include <coproc/process.hpp>

namespace coproc::detail {

// nullptr in the main program (and in a raw fork() of it). Built on first use.
process* parent_watch();

}  // namespace coproc::detail
