#include "runtime.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/random.h>
#include <unistd.h>

#include <cxxabi.h>

#include <algorithm>
#include <cstdio>
#include <stdio_ext.h>
#include <cstdlib>
#include <iostream>
#include <typeinfo>

namespace coproc::detail {

// ---------------------------------------------------------------------------------------
// The registry. Lock order: the registry's mutex may be held while a child_state's mutex is
// taken (try_reap), never the reverse.

void child_registry::add(const std::shared_ptr<child_state>& st, process* owner) {
  std::lock_guard lock(mutex_);
  children_.push_back(st);
  st->position = std::prev(children_.end());
  st->listed = true;
  st->owner = owner;
}

void child_registry::remove(child_state& st) {
  std::lock_guard lock(mutex_);
  if (!st.listed) return;
  if (!st.owner) --detached_;
  st.listed = false;
  st.owner = nullptr;
  children_.erase(st.position);  // may drop the last reference of a detached child
}

void child_registry::set_owner(child_state& st, process* owner) {
  std::lock_guard lock(mutex_);
  if (st.listed) st.owner = owner;
}

void child_registry::detach(child_state& st) {
  std::lock_guard lock(mutex_);
  if (!st.listed) return;
  if (st.ended()) {
    st.listed = false;
    st.owner = nullptr;
    children_.erase(st.position);
    return;
  }
  if (st.owner) ++detached_;
  st.owner = nullptr;
}

void child_registry::sweep_detached() {
  if (detached_.load(std::memory_order_relaxed) == 0) return;  // no lock: see ensure_exit_policy
  std::lock_guard lock(mutex_);
  if (detached_ == 0) return;
  for (auto it = children_.begin(); it != children_.end();) {
    auto& st = **it;
    if (!st.owner && st.try_reap()) {
      st.listed = false;
      --detached_;
      it = children_.erase(it);
    } else {
      ++it;
    }
  }
}

std::vector<process*> child_registry::active() {
  std::lock_guard lock(mutex_);
  // One poll over all sentinels finds the ended children; only those pay for a waitid.
  std::vector<pollfd> fds;
  fds.reserve(children_.size());
  for (auto& st : children_) fds.push_back({st->sentinel(), POLLIN, 0});
  if (!fds.empty() && retry_eintr([&] { return ::poll(fds.data(), fds.size(), 0); }) == -1)
    throw_errno("poll");
  std::vector<process*> alive;
  std::size_t i = 0;
  for (auto it = children_.begin(); it != children_.end(); ++i) {
    auto& st = **it;
    if ((fds[i].revents || st.ended()) && st.try_reap()) {
      if (!st.owner) --detached_;
      st.listed = false;
      st.owner = nullptr;
      it = children_.erase(it);
      continue;
    }
    if (st.owner) alive.push_back(st.owner);
    ++it;
  }
  return alive;
}

std::vector<std::shared_ptr<child_state>> child_registry::snapshot() {
  std::lock_guard lock(mutex_);
  return {children_.begin(), children_.end()};
}

void child_registry::clear() {
  std::lock_guard lock(mutex_);
  for (auto& st : children_) {
    st->listed = false;
    st->owner = nullptr;
  }
  children_.clear();
  detached_ = 0;
}

// ---------------------------------------------------------------------------------------
// Module state. It is never destroyed: children may be reaped by the at-exit policy after
// static destructors of other translation units have started to run.

namespace {
std::atomic<runtime*> the_runtime{nullptr};
std::atomic<bool> exit_policy_registered{false};
std::atomic<int> pidfd_mode{-1};  // -1 unknown, 0 pipe, 1 pidfd
std::atomic<bool> pipe_forced{false};
constexpr auto daemon_grace = std::chrono::seconds(1);

void exit_policy_at_exit() { run_exit_policy(); }
}  // namespace

runtime& rt() {
  runtime* r = the_runtime.load(std::memory_order_acquire);
  if (r) return *r;
  // Built completely before it is published: another thread may read it the moment the
  // exchange succeeds.
  auto fresh = std::make_unique<runtime>();
  std::unique_ptr<process> main(process_access::make_main());
  fresh->current = main.get();
  if (the_runtime.compare_exchange_strong(r, fresh.get(), std::memory_order_acq_rel)) {
    (void)main.release();
    return *fresh.release();
  }
  return *r;  // another thread won; ours is discarded
}

void install_child_runtime(runtime& state) {
  state.previous = the_runtime.load(std::memory_order_relaxed);
  the_runtime.store(&state, std::memory_order_release);
}

owned_fd gone_sentinel() {
  int fds[2] = {-1, -1};
  owned_fd r = owned_fd::create([&] {
    if (::pipe2(fds, O_CLOEXEC) == -1) return -1;
    return fds[0];
  });
  if (!r) throw_errno("pipe2");
  ::close(fds[1]);
  return r;
}

process* parent_watch() {
  runtime& r = rt();
  if (!r.in_child) return nullptr;
  if (process* p = r.parent.load(std::memory_order_acquire)) return p;
  std::lock_guard lock(r.parent_mutex);
  if (process* p = r.parent.load(std::memory_order_relaxed)) return p;
  const parent_info& info = r.parent_of_this;
  auto watch = std::make_shared<child_state>(child_state::role::parent, false);
  if (info.by_pidfd) {
    owned_fd fd = owned_fd::create([&] { return sys_pidfd_open(info.pid); });
    if (!fd && errno != ESRCH) throw_errno("pidfd_open(parent)");
    // The pidfd names our parent only if it is still our parent after the pidfd was opened;
    // otherwise the parent is gone (and its pid may already be somebody else's).
    if (!fd || ::getppid() != info.pid) fd = gone_sentinel();
    watch->attach(info.pid, std::move(fd), sentinel_kind::pidfd);
  } else {
    watch->attach(info.pid, owned_fd::adopt_recorded(info.alive_fd), sentinel_kind::pipe);
  }
  process* p = process_access::make_parent(info.name, info.pid, std::move(watch));
  r.parent.store(p, std::memory_order_release);
  return p;
}

int next_process_number() { return ++rt().counter; }

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

void ensure_exit_policy() {
  // Load first: a compare-exchange writes even when it fails, and every page the parent writes
  // after a fork costs it a copy-on-write fault while the child lives.
  if (exit_policy_registered.load(std::memory_order_relaxed)) return;
  bool expected = false;
  if (exit_policy_registered.compare_exchange_strong(expected, true))
    std::atexit(exit_policy_at_exit);
}

void run_exit_policy() noexcept {
  using namespace std::chrono;
  runtime* r = the_runtime.load(std::memory_order_acquire);
  if (!r) return;
  try {
    auto children = r->children.snapshot();
    if (children.empty()) return;  // the common case in a child: nothing to do, nothing to touch
    // Daemonic children first, bounded: SIGTERM, a grace period, then SIGKILL (Python
    // would wait forever for a daemon that ignores SIGTERM).
    std::vector<std::shared_ptr<child_state>> daemons;
    for (auto& st : children)
      if (st->daemon() && !st->try_reap()) daemons.push_back(st);
    if (!daemons.empty()) {
      for (auto& st : daemons) st->send_signal(SIGTERM);
      const auto deadline = steady_clock::now() + daemon_grace;
      for (auto& st : daemons) st->wait(deadline);
      for (auto& st : daemons) {
        if (!st->ended()) {
          st->send_signal(SIGKILL);
          st->wait(std::nullopt);
        }
      }
    }
    // Then every other child is joined, including those whose objects were destroyed.
    for (auto& st : children)
      if (!st->daemon()) st->wait(std::nullopt);
    r->children.clear();
  } catch (...) {
    // At exit there is nobody to report to; a child we could not wait for stays a zombie
    // until init reaps it.
  }
}

bool use_pidfd() {
  if (pipe_forced.load()) return false;
  int mode = pidfd_mode.load();
  if (mode < 0) {
    // Probe on ourselves: ENOSYS (old kernel, qemu-user) and EPERM (seccomp profiles of
    // older container runtimes) mean "use the pipe", for good.
    const int fd = sys_pidfd_open(::getpid());
    if (fd >= 0) {
      ::close(fd);
      mode = 1;
    } else if (errno == ENOSYS || errno == EPERM) {
      mode = 0;
    } else {
      throw_errno("pidfd_open");
    }
    pidfd_mode = mode;
  }
  return mode == 1;
}

void force_pipe(bool on) { pipe_forced = on; }

// ---------------------------------------------------------------------------------------
// The child's side.

namespace {
std::string demangle(const char* name) {
  int status = 0;
  char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  std::string result = (status == 0 && out) ? out : name;
  std::free(out);
  return result;
}

void report_exception(const std::string& process_name, const std::string& what) noexcept {
  // One write, so the lines of concurrent children do not interleave.
  std::string text = "Process " + process_name + ":\n" + what + "\n";
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
}
}  // namespace

int run_target(process& self) noexcept {
  try {
    try {
      self.run();
      return 0;
    } catch (const system_exit& e) {
      return e.code;
    } catch (const std::exception& e) {
      report_exception(self.name(), demangle(typeid(e).name()) + ": " + e.what());
      return 1;
    } catch (...) {
      const std::type_info* t = abi::__cxa_current_exception_type();
      report_exception(self.name(),
                       t ? demangle(t->name()) + " (not a std::exception)" : "unknown exception");
      return 1;
    }
  } catch (...) {
    return 1;  // reporting itself failed (bad_alloc): the exit code still says so
  }
}

namespace {
// Whether a stream buffer holds output. pptr() is protected; a pointer to it formed in a
// derived class may be applied to any std::streambuf.
struct pending_output : std::streambuf {
  static bool in(std::streambuf* b) {
    if (!b) return false;
    auto pptr = &pending_output::pptr;
    auto pbase = &pending_output::pbase;
    return (b->*pptr)() != (b->*pbase)();
  }
};

void flush_if_pending(std::ostream& os) {
  // The default (synchronised with stdio) buffers of cout, cerr and clog hold nothing: their
  // output is in stdout's and stderr's FILE buffers.
  if (pending_output::in(os.rdbuf())) os.flush();
}
}  // namespace

void flush_std_streams() noexcept {
  try {
    flush_if_pending(std::cout);
    flush_if_pending(std::cerr);
    flush_if_pending(std::clog);
  } catch (...) {
  }
  // Flushing writes the FILE's lock even when nothing is buffered; look first.
  if (stdout && __fpending(stdout)) std::fflush(stdout);
  if (stderr && __fpending(stderr)) std::fflush(stderr);
}

void finish_child(int code) noexcept {
  run_exit_policy();
  flush_std_streams();
  ::_exit(code & 0xFF);
}

}  // namespace coproc::detail
