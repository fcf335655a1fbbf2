#include "authkey.hpp"

#include <sys/random.h>

#include "core/syscalls.hpp"

namespace coproc::detail {

std::vector<std::byte> random_authkey() {
  std::vector<std::byte> key(32);
  std::size_t done = 0;
  while (done < key.size()) {
    const auto n = ::getrandom(key.data() + done, key.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("getrandom");
    }
    done += static_cast<std::size_t>(n);
  }
  return key;
}

}  // namespace coproc::detail
