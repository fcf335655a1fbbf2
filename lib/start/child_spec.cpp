#include "start/child_spec.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <typeinfo>

#include <boost/describe/class.hpp>

#include <coproc/detail/json.hpp>
#include <coproc/start_method.hpp>

#include "core/fd_record.hpp"
#include "core/syscalls.hpp"
#include "process_access.hpp"
#include "start/bootstrap.hpp"

namespace coproc::detail {

BOOST_DESCRIBE_STRUCT(child_spec, (),
                      (target, name, identity, daemon, authkey, parent_pid, parent_name, by_pidfd,
                       handed, start_method, ignored_signals))

namespace {

// The target of a child that began as another program: a registered function found by name,
// called with the arguments' JSON. Conversion errors are the target's exceptions: the child
// reports them as Python reports an unpicklable argument, and exits with 1.
class registered_call final : public target_base {
 public:
  registered_call(const registered_target& t, bytes args) : target_(t), args_(std::move(args)) {}
  void call() override { target_.invoke(target_.address, args_); }
  void handed_descriptors(std::vector<int>&) const override {}
  exec_call exec_form() const override {
    exec_call c;
    c.target = &target_;
    c.args = args_;
    return c;
  }

 private:
  const registered_target& target_;
  bytes args_;
};

void put_frame(bytes& out, std::span<const std::byte> frame) {
  const auto n = static_cast<std::uint32_t>(frame.size());
  std::byte len[4];
  std::memcpy(len, &n, 4);
  out.insert(out.end(), len, len + 4);
  out.insert(out.end(), frame.begin(), frame.end());
}

// No child's target needs more; a corrupt length must not allocate gigabytes.
constexpr std::uint32_t max_frame = 1u << 30;

bytes read_frame(int fd) {
  std::uint32_t n = 0;
  if (!read_exact(fd, &n, 4)) throw std::runtime_error("the start message ended early");
  if (n > max_frame) throw std::runtime_error("the start message is malformed");
  bytes b(n);
  if (!read_exact(fd, b.data(), n)) throw std::runtime_error("the start message ended early");
  return b;
}

}  // namespace

exec_request make_exec_request(const process& self, bool by_pidfd) {
  if (typeid(self) != typeid(process))
    throw std::logic_error(
        "a process subclass runs its own run(), which cannot be found in a new program: "
        "subclasses need the fork start method (spawn and forkserver run a registered "
        "function)");
  exec_request r;
  exec_call call = process_access::exec_form(self);
  if (call.problem) throw std::logic_error(call.problem);
  if (call.target) {
    r.spec.target = target_key(*call.target);
    r.args = std::move(call.args);
  } else {
    r.args = {std::byte{'['}, std::byte{']'}};
  }
  r.fds = std::move(call.fds);
  r.spec.name = self.name();
  r.spec.identity = process_access::identity(self);
  r.spec.daemon = process_access::daemon(self);
  for (std::byte b : self.authkey())
    r.spec.authkey.push_back(static_cast<std::uint8_t>(b));
  r.spec.parent_pid = self_pid();
  r.spec.parent_name = current_process().name();
  r.spec.by_pidfd = by_pidfd;
  r.spec.handed = static_cast<int>(r.fds.size());
  r.spec.start_method = to_string(get_start_method());
  return r;
}

bytes encode(const child_spec& spec, std::span<const std::byte> args) {
  bytes out;
  put_frame(out, to_message(spec));
  put_frame(out, args);
  return out;
}

void read_spec(int fd, child_spec& spec, bytes& args) {
  const bytes s = read_frame(fd);
  spec = from_message<child_spec>(s);
  args = read_frame(fd);
}

void decode(std::span<const std::byte> message, child_spec& spec, bytes& args) {
  auto take = [&](std::span<const std::byte>& rest) {
    std::uint32_t n = 0;
    if (rest.size() < 4) throw std::runtime_error("the start message ended early");
    std::memcpy(&n, rest.data(), 4);
    if (rest.size() - 4 < n) throw std::runtime_error("the start message ended early");
    auto frame = rest.subspan(4, n);
    rest = rest.subspan(4 + n);
    return frame;
  };
  std::span<const std::byte> rest = message;
  spec = from_message<child_spec>(take(rest));
  const auto a = take(rest);
  args.assign(a.begin(), a.end());
}

namespace {
// The handed descriptors of this child, for take_handed_descriptor().
std::vector<int>* handed_table = nullptr;
}  // namespace

int take_handed_descriptor(int index) noexcept {
  if (!handed_table || index < 0 || static_cast<std::size_t>(index) >= handed_table->size())
    return -1;
  return std::exchange((*handed_table)[static_cast<std::size_t>(index)], -1);
}

void run_exec_child(child_spec spec, bytes args, std::vector<int> handed, int parent_pidfd,
                    int exit_fd, int alive_fd) {
  // Everything here lives until the child ends: run_child() never returns.
  static child_spec kept_spec;
  static std::vector<int> kept_handed;
  kept_spec = std::move(spec);
  kept_handed = std::move(handed);
  handed_table = &kept_handed;

  process* self = process_access::make_exec_self();
  std::vector<std::byte> key;
  for (auto b : kept_spec.authkey) key.push_back(static_cast<std::byte>(b));
  std::unique_ptr<target_base> target;
  if (!kept_spec.target.empty()) {
    const registered_target* t = find_target(kept_spec.target);
    if (!t) {
      std::fprintf(stderr, "coproc: no function is registered as '%s' in this program\n",
                   kept_spec.target.c_str());
      ::_exit(1);
    }
    target = std::make_unique<registered_call>(*t, std::move(args));
  }
  process_access::become(*self, kept_spec.name, kept_spec.identity, kept_spec.daemon,
                         std::move(key), static_cast<pid_t>(kept_spec.parent_pid),
                         std::move(target));
  for (auto m : {start_method::fork, start_method::spawn, start_method::forkserver})
    if (kept_spec.start_method == to_string(m)) set_start_method(m);
  parent_info parent{static_cast<pid_t>(kept_spec.parent_pid), kept_spec.parent_name,
                     kept_spec.by_pidfd, alive_fd, parent_pidfd};
  // Nothing recorded here is the target's; the parent's pidfd is coproc's own (recorded, so that
  // the child's own children do not inherit it) and kept for parent_process().
  std::vector<int> keep;
  for (int fd : {parent_pidfd, exit_fd, alive_fd}) {
    if (fd < 0) continue;
    fds::record(fd);
    keep.push_back(fd);
  }
  run_child(child_start{self, parent, keep});
}

}  // namespace coproc::detail
