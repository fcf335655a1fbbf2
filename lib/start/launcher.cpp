#include "start/launcher.hpp"

#include <stdexcept>

namespace coproc::detail {


launcher& launcher_for(start_method method) {
  switch (method) {
    case start_method::fork:
      return fork_launcher();
    case start_method::spawn:
      return spawn_launcher();
    case start_method::forkserver:
      return forkserver_launcher();
  }
  throw std::invalid_argument("unknown start method");
}

}  // namespace coproc::detail
