#include "start/launcher.hpp"

#include <string>
#include <system_error>

namespace coproc::detail {

namespace {
// spawn and forkserver are not built yet: start() reports ENOSYS and leaves the object
// unstarted, as any failed start does.
class unavailable final : public launcher {
 public:
  explicit unavailable(start_method m) : method_(m) {}
  void check(const process&) const override {}
  std::shared_ptr<child_state> launch(process&) override {
    throw std::system_error(ENOSYS, std::generic_category(),
                            "start method '" + std::string(to_string(method_)) +
                                "' is not available in this version of coproc");
  }

 private:
  start_method method_;
};
}  // namespace

launcher& launcher_for(start_method method) {
  static unavailable spawn{start_method::spawn}, forkserver{start_method::forkserver};
  switch (method) {
    case start_method::fork:
      return fork_launcher();
    case start_method::spawn:
      return spawn;
    case start_method::forkserver:
      return forkserver;
  }
  throw std::invalid_argument("unknown start method");
}

}  // namespace coproc::detail
