// coproc internals: authentication keys.
#pragma once

#include "core/private.hpp"

#include <cstddef>
#include <vector>

namespace coproc::detail {

// 32 random bytes from the kernel (MainProcess's authkey, as Python's os.urandom(32)).
std::vector<std::byte> random_authkey();

}  // namespace coproc::detail
