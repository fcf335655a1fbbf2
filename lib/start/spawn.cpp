// The spawn start method: the child is a fresh exec of this program (/proc/self/exe), which
// coproc::init() turns into the child (start/exec_child.cpp). Python's popen_spawn_posix.
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "core/syscalls.hpp"
#include "process_access.hpp"
#include "start/child_spec.hpp"
#include "start/exec_child.hpp"
#include "start/launcher.hpp"
#include "start/own_child.hpp"

extern char** environ;

namespace coproc::detail {

namespace {

class spawn_method final : public launcher {
 public:
  void check(const process&) const override { require_init("spawn"); }
  std::shared_ptr<child_state> launch(process& self) override;
};

// posix_spawn's attribute and file-action objects, destroyed however launch() ends.
struct spawn_actions {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  spawn_actions() {
    if (const int e = ::posix_spawn_file_actions_init(&actions)) throw_errno(e, "posix_spawn_file_actions_init");
    if (const int e = ::posix_spawnattr_init(&attr)) {
      ::posix_spawn_file_actions_destroy(&actions);
      throw_errno(e, "posix_spawnattr_init");
    }
  }
  ~spawn_actions() {
    ::posix_spawnattr_destroy(&attr);
    ::posix_spawn_file_actions_destroy(&actions);
  }
  spawn_actions(const spawn_actions&) = delete;
  spawn_actions& operator=(const spawn_actions&) = delete;
};

std::mutex program_mutex;
std::string program_override;  // testing::spawn_program

void check_spawn(int err, const char* what) {
  if (err) throw_errno(err, what);
}

std::shared_ptr<child_state> spawn_method::launch(process& self) {
  const bool by_pidfd = pidfd_sentinels();
  // Misuse first: nothing is created for a target that cannot travel.
  const exec_request request = make_exec_request(self, by_pidfd);
  const bytes message = encode(request.spec, request.args);

  // The start message travels over a socket, not a pipe: a child that dies before reading it
  // gives us EPIPE from send(MSG_NOSIGNAL), never SIGPIPE.
  auto [ours, theirs] = make_private_socket_pair(SOCK_STREAM);
  fallback_pipes pipes;
  if (!by_pidfd) {
    pipes.exit = make_private_pipe();
    pipes.alive = make_private_pipe();
  }

  // The child's descriptors, from 3 in this order (start/exec_child.cpp): the message, the
  // fallback's exit-pipe write end and alive-pipe read end, the handed connections.
  std::vector<int> sources = {theirs.get()};
  if (!by_pidfd) {
    sources.push_back(pipes.exit.write_end.get());
    sources.push_back(pipes.alive.read_end.get());
  }
  sources.insert(sources.end(), request.fds.begin(), request.fds.end());
  const pid_t pid = spawn_self(spawn_child_flag, sources);
  theirs.reset();
  auto state = watch_own_child(pid, by_pidfd, std::move(pipes), process_access::daemon(self));

  // A child that cannot read its message ends with an error of its own; its status says so.
  (void)send_all(ours.get(), message);
  return state;
}

}  // namespace

pid_t spawn_self(std::string_view flag, std::span<const int> sources) {
  // `sources` move up first, above every source, so that no dup2 overwrites a source not yet
  // moved; then down to 3, 4, ...; everything else above 2 is closed, as Python's spawn closes
  // all but the descriptors it passes.
  const int n = static_cast<int>(sources.size());
  const int high = std::max(n ? *std::max_element(sources.begin(), sources.end()) + 1 : 0,
                            exec_child_first_fd + n);
  spawn_actions sa;
  for (int i = 0; i < n; ++i)
    check_spawn(::posix_spawn_file_actions_adddup2(&sa.actions, sources[static_cast<std::size_t>(i)], high + i),
                "posix_spawn_file_actions_adddup2");
  for (int i = 0; i < n; ++i)
    check_spawn(::posix_spawn_file_actions_adddup2(&sa.actions, high + i, exec_child_first_fd + i),
                "posix_spawn_file_actions_adddup2");
  check_spawn(::posix_spawn_file_actions_addclosefrom_np(&sa.actions, exec_child_first_fd + n),
              "posix_spawn_file_actions_addclosefrom_np");
  // Signals as a fork child has them (start/bootstrap.cpp): exec resets the caught ones; the
  // mask is cleared here.
  sigset_t none;
  sigemptyset(&none);
  check_spawn(::posix_spawnattr_setsigmask(&sa.attr, &none), "posix_spawnattr_setsigmask");
  check_spawn(::posix_spawnattr_setflags(&sa.attr, POSIX_SPAWN_SETSIGMASK), "posix_spawnattr_setflags");

  std::string arg0 = program_name();
  std::string marker(flag);
  char* argv[] = {arg0.data(), marker.data(), nullptr};
  pid_t pid = -1;
  // glibc's posix_spawn runs the child on a vfork-like clone and reports a failed exec as its
  // return value, having reaped that child itself: no zombie, no error pipe of our own.
  std::string program = "/proc/self/exe";
  {
    std::lock_guard lock(program_mutex);
    if (!program_override.empty()) program = program_override;
  }
  check_spawn(::posix_spawn(&pid, program.c_str(), &sa.actions, &sa.attr, argv, environ),
              "posix_spawn(/proc/self/exe)");
  return pid;
}

void set_spawn_program(std::string path) {
  std::lock_guard lock(program_mutex);
  program_override = std::move(path);
}

launcher& spawn_launcher() {
  static spawn_method method;
  return method;
}

}  // namespace coproc::detail
