// The fork start method: Python's popen_fork, with a pidfd for a sentinel.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <coproc/process.hpp>

#include "runtime.hpp"

namespace coproc::detail {
namespace {

struct child_setup {
  pid_t parent_pid;
  std::string parent_name;
  bool pidfd;
  int exit_w;   // pipe fallback: held open by the child until it ends
  int alive_r;  // pipe fallback: EOF when the parent is gone
};

void make_pipe(owned_fd& read_end, owned_fd& write_end) {
  int fds[2] = {-1, -1};
  read_end = owned_fd::create([&] {
    if (::pipe2(fds, O_CLOEXEC) == -1) return -1;
    fds::record(fds[1]);  // recorded under the same guard as the read end
    return fds[0];
  });
  if (!read_end) throw_errno("pipe2");
  write_end = owned_fd::adopt_recorded(fds[1]);
}

// fd 0 of the child: /dev/null (Python only swaps the sys.stdin object). Opened here rather
// than once per process, so coproc holds no descriptor of its own between starts.
void stdin_to_devnull() noexcept {
  ::close(STDIN_FILENO);
  const int fd = ::open("/dev/null", O_RDONLY);  // the lowest free number: 0
  if (fd > STDIN_FILENO) {
    ::dup2(fd, STDIN_FILENO);
    ::close(fd);
  }
}

// Signals in the child behave as after exec: caught signals back to their default action,
// ignored ones stay ignored, nothing blocked. A handler installed by the parent belongs to the
// parent's state: Asio's signal_set handler, for one, writes into a pipe the parent reads, so
// a child that kept it would swallow terminate() and make the parent's signal_set fire.
// (Python keeps them: P-49.) The mask is cleared because the thread that was meant to take
// blocked signals (sigwait) does not exist in the child, and terminate() must work.
void reset_signals() noexcept {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == -1) continue;  // not a valid signal number
    const bool caught = (old.sa_flags & SA_SIGINFO) ? true
                                                     : old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN;
    if (!caught) continue;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(sig, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  ::pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

[[noreturn]] void child_main(process& self, const child_setup& s) noexcept {
  // The child's module state lives in this frame, which never returns (finish_child ends the
  // child with _exit, after the exit policy has used it): no allocation, and nothing written
  // but this frame's stack pages.
  runtime state;
  int code = 1;
  try {
    reset_signals();
    // Other children's sentinels and pipe ends are coproc's, not the target's.
    fds::close_recorded_in_child({s.exit_w, s.alive_r});
    stdin_to_devnull();
    state.current = &self;
    state.in_child = true;
    state.bootstrap_thread = std::this_thread::get_id();
    state.parent_of_this = {s.parent_pid, s.parent_name, s.pidfd, s.alive_r};
    install_child_runtime(state);
    code = run_target(self);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coproc: child set-up failed: %s\n", e.what());
  } catch (...) {
  }
  finish_child(code);
}

}  // namespace

std::shared_ptr<child_state> fork_start(process& self) {
  auto st = std::make_shared<child_state>(child_state::role::child, process_access::daemon(self));
  const bool pidfd = use_pidfd();
  owned_fd exit_r, exit_w, alive_r, alive_w;
  if (!pidfd) {
    make_pipe(exit_r, exit_w);
    make_pipe(alive_r, alive_w);
  }
  child_setup setup{self_pid(), rt().current->name(), pidfd, exit_w.get(), alive_r.get()};
  flush_std_streams();

  pid_t pid;
  {
    exclusive_fork_lock lock;
    pid = ::fork();
    if (pid == 0) {
      lock.reset_in_child();
      child_main(self, setup);
    }
  }
  if (pid < 0) throw_errno("fork");

  bool gone = false;
  try {
    if (pidfd) {
      owned_fd fd = owned_fd::create([&] { return sys_pidfd_open(pid); });
      if (fd) {
        st->attach(pid, std::move(fd), sentinel_kind::pidfd);
      } else if (errno == ESRCH) {
        // Our child, already gone before pidfd_open: only a reap by somebody else removes a
        // child of ours (SIGCHLD ignored, so the kernel reaps it; or a waitpid(-1) elsewhere).
        // It started; its status is lost, as it would be a moment later. A pid is never
        // signalled or waited for again: it may be somebody else's by now.
        gone = true;
        st->attach(pid, gone_sentinel(), sentinel_kind::pidfd);
        st->mark_lost(ECHILD);
      } else {
        throw_errno("pidfd_open");
      }
    } else {
      exit_w.reset();
      alive_r.reset();
      st->attach(pid, std::move(exit_r), sentinel_kind::pipe, std::move(alive_w));
    }
    rt().children.add(st, &self);
  } catch (...) {
    // A failed start leaves no child behind. While the child is ours and unreaped (waitid
    // with WNOWAIT finds it), its pid is safe to signal and wait for.
    siginfo_t info{};
    if (!gone && retry_eintr([&] {
          return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
        }) == 0) {
      ::kill(pid, SIGKILL);
      int status = 0;
      retry_eintr([&] { return ::waitpid(pid, &status, 0); });
    }
    throw;
  }
  return st;
}

}  // namespace coproc::detail

namespace coproc {

void process::start() {
  check_closed();
  if (state_) throw std::logic_error("cannot start a process twice");
  if (creator_pid_ != detail::self_pid())
    throw std::logic_error("can only start a process object created by current process");
  if (detail::process_access::daemon(current_process()))
    throw std::logic_error("daemonic processes are not allowed to have children");
  const auto method = method_.value_or(get_start_method());
  if (method != start_method::fork)
    throw std::system_error(ENOSYS, std::generic_category(),
                            "start method '" + std::string(to_string(method)) +
                                "' is not available in this version of coproc");
  // Python reaps finished children here (_cleanup). Only detached children need it: the
  // others are reaped by their objects, and looking at all of them would make every start
  // cost O(children).
  detail::rt().children.sweep_detached();
  detail::ensure_exit_policy();
  state_ = detail::fork_start(*this);
  target_.reset();  // the parent keeps no reference to the target (bpo-30775)
}

}  // namespace coproc
