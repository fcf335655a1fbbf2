#include <string>

#include <coproc/bytes.hpp>
#include <coproc/error.hpp>

namespace coproc {

buffer_too_short::buffer_too_short(bytes message)
    : process_error("message of " + std::to_string(message.size()) +
                    " bytes is too long for the buffer"),
      message_(std::move(message)) {}

namespace {
class coproc_category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "coproc"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::authentication_failed:
        return "authentication failed";
      case errc::remote_error:
        return "the function raised an exception in the child";
      case errc::child_died:
        return "the child process ended without a result";
      case errc::task_timed_out:
        return "the task ran past its deadline; its worker was killed";
      case errc::pool_terminated:
        return "the pool was terminated before the task ended";
      case errc::init_failed:
        return "the pool's initializer raised an exception";
    }
    return "unknown coproc error";
  }
};
}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const coproc_category category;
  return category;
}

}  // namespace coproc
