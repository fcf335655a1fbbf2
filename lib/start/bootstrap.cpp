#include "start/bootstrap.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cxxabi.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <typeinfo>

#include <coproc/error.hpp>

#include "core/demangle.hpp"
#include "core/fd_record.hpp"
#include "runtime/exit_policy.hpp"
#include "runtime/std_streams.hpp"

namespace coproc::detail {

namespace {

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
    const bool caught = (old.sa_flags & SA_SIGINFO)
                            ? true
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

// Python's traceback on stderr: "Process <name>:" and the exception's dynamic type and
// what(), in one write so the lines of concurrent children do not interleave. Call it in a
// handler. A failure to report (bad_alloc) leaves the exit code to say it.
void report_current_exception(const std::string& process_name) noexcept {
  try {
    const std::string what = describe_current_exception();
    const std::string text = "Process " + process_name + ":\n" + what + "\n";
    std::fflush(stderr);
    const char* p = text.data();
    std::size_t left = text.size();
    while (left) {
      const auto n = ::write(STDERR_FILENO, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      p += n;
      left -= static_cast<std::size_t>(n);
    }
  } catch (...) {
  }
}

// A forced unwind (pthread_exit, a cancellation) is not a C++ exception: it has no type.
// Naming abi::__forced_unwind in a handler binds a reference to no object, which UBSan reports.
bool forced_unwind() noexcept { return abi::__cxa_current_exception_type() == nullptr; }

// GCC 12's AddressSanitizer: glibc's cancellation unwinds without telling it, so the frames
// it skipped stay poisoned below this one, and ASan's own handling of the next no-return call
// trips over that poison (a CHECK failure, and the child aborts). Their stack is dead.
void clear_skipped_frames_poison() noexcept {
#if defined(__SANITIZE_ADDRESS__)
  char here;
  constexpr std::uintptr_t below = 64 * 1024;
  const auto top = reinterpret_cast<std::uintptr_t>(&here);
  __asan_unpoison_memory_region(reinterpret_cast<void*>(top - below), below);
#endif
}

// Python's _bootstrap: the exit code of run(). A forced unwind ends the child here, inside
// the handler: its cleanups have run up to this frame, and beyond it lie the frames of the
// parent's program that called start(), whose destructors must not run in the child. (A
// handler that returned would abort the child: a forced unwind must not be swallowed; it is
// not rethrown either, so nothing above is unwound.) The last thread of a plain fork child
// that calls pthread_exit ends the process with 0; so does this.
int run_target(process& self) noexcept {
  try {
    self.run();
    return 0;
  } catch (const system_exit& e) {
    return e.code;
  } catch (...) {
    if (forced_unwind()) {
      clear_skipped_frames_poison();
      finish_child(0);
    }
    report_current_exception(self.name());
    return 1;
  }
}

}  // namespace

void run_child(const child_start& start) {
  // The child's module state lives in this frame, which never returns (finish_child ends the
  // child with _exit, after the exit policy has used it): no allocation, and nothing written
  // but this frame's stack pages.
  runtime state;
  int code = 1;
  try {
    reset_signals();
    discard_inherited_output();
    // Other children's sentinels and pipe ends, the I/O thread's descriptors: coproc's, not
    // the target's.
    fds::close_recorded_in_child(start.keep);
    stdin_to_devnull();
    state.current = start.self;
    state.in_child = true;
    state.bootstrap_thread = std::this_thread::get_id();
    state.parent_of_this = start.parent;
    install_child_runtime(state);
    code = run_target(*start.self);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coproc: child set-up failed: %s\n", e.what());
  } catch (...) {
  }
  finish_child(code);
}

void finish_child(int code) noexcept {
  run_exit_policy();
  flush_std_streams();
  ::_exit(code & 0xFF);
}

}  // namespace coproc::detail

namespace coproc {

void exit(int code) {
  code &= 0xFF;
  auto& r = detail::rt();
  if (r.in_child) {
    if (std::this_thread::get_id() == r.bootstrap_thread) throw system_exit{code};
    detail::finish_child(code);
  }
  std::exit(code);
}

}  // namespace coproc
