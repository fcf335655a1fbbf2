// The process object: Python's BaseProcess, rule by rule (see docs/python-compat.md).
#include <coproc/process.hpp>

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <stdexcept>

#include "authkey.hpp"
#include "child/child_state.hpp"
#include "core/per_process.hpp"
#include "process_access.hpp"
#include "runtime/exit_policy.hpp"
#include "runtime/runtime.hpp"
#include "runtime/std_streams.hpp"
#include "start/launcher.hpp"

namespace coproc {

namespace {
[[noreturn]] void misuse(const char* what) { throw std::logic_error(what); }

}  // namespace

process::process() : process(process_options{}) {}

process::process(process_options opts) {
  // Python copies the creator's config at construction: the name's identity, the daemon
  // flag and the authkey are the current process's as of now.
  auto& r = detail::rt();
  const process& cur = *r.current;
  const int n = ++r.counter;
  identity_ = cur.identity_.empty() ? std::to_string(n) : cur.identity_ + ":" + std::to_string(n);
  name_ = opts.name.empty() ? "Process-" + identity_ : std::move(opts.name);
  daemon_ = opts.daemon.value_or(cur.daemon_);
  authkey_ = cur.authkey_;
  method_ = opts.method;
  creator_pid_ = detail::self_pid();
}

process::process(main_tag)
    : name_("MainProcess"), authkey_(detail::random_authkey()), role_(role::main) {}

process::process(parent_tag, std::string name, pid_t, std::shared_ptr<detail::child_state> st)
    : state_(std::move(st)), name_(std::move(name)), role_(role::parent) {}

process::process(process&& o) noexcept
    : state_(std::move(o.state_)),
      target_(std::move(o.target_)),
      name_(std::move(o.name_)),
      identity_(std::move(o.identity_)),
      authkey_(std::move(o.authkey_)),
      method_(o.method_),
      creator_pid_(o.creator_pid_),
      daemon_(o.daemon_),
      closed_(o.closed_),
      role_(o.role_) {
  if (state_ && role_ == role::ordinary && creator_pid_ == detail::self_pid())
    detail::rt().children.set_owner(*state_, this);
}

process& process::operator=(process&& o) noexcept {
  if (this == &o) return *this;
  release();
  state_ = std::move(o.state_);
  target_ = std::move(o.target_);
  name_ = std::move(o.name_);
  identity_ = std::move(o.identity_);
  authkey_ = std::move(o.authkey_);
  method_ = o.method_;
  creator_pid_ = o.creator_pid_;
  daemon_ = o.daemon_;
  closed_ = o.closed_;
  role_ = o.role_;
  if (state_ && role_ == role::ordinary && creator_pid_ == detail::self_pid())
    detail::rt().children.set_owner(*state_, this);
  return *this;
}

process::~process() { release(); }

void process::release() noexcept {
  if (!state_) return;
  if (role_ != role::ordinary || creator_pid_ != detail::self_pid()) {
    // A copy inherited through fork: its descriptors were closed in this child and their
    // numbers may be reused, so the state must never run its destructor here.
    detail::keep_forever(new (std::nothrow) std::shared_ptr<detail::child_state>(std::move(state_)));
    state_.reset();
    return;
  }
  state_->abort_waiters();
  detail::rt().children.detach(*state_);
  state_.reset();
}

void process::run() {
  if (target_) target_->call();
}

void process::start() {
  check_closed();
  if (state_) misuse("cannot start a process twice");
  if (creator_pid_ != detail::self_pid())
    misuse("can only start a process object created by current process");
  if (detail::process_access::daemon(current_process()))
    misuse("daemonic processes are not allowed to have children");
  auto& method = detail::launcher_for(method_.value_or(get_start_method()));
  method.check(*this);
  auto& r = detail::rt();
  // Python reaps finished children here (_cleanup). Only detached children need it: the
  // others are reaped by their objects, and looking at all of them would make every start
  // cost O(children).
  r.children.sweep_detached();
  detail::ensure_exit_policy();
  detail::child_registry::reservation place;  // listing the child cannot fail after the fork
  // Python's start() flushes for every method: what was printed before comes first, and a fork
  // child does not print it again.
  detail::flush_std_streams();
  state_ = method.launch(*this);
  r.children.add(std::move(place), state_, this);
  target_.reset();  // the parent keeps no reference to the target (bpo-30775)
}

bool process::is_current() const { return this == detail::rt().current; }

void process::check_closed() const {
  if (closed_) misuse("process object is closed");
}

int process::join() {
  check_joinable();
  state_->wait(std::nullopt);
  unlist();
  return state_->exitcode();
}

std::optional<int> process::join_for(std::chrono::nanoseconds timeout) {
  check_joinable();
  const bool ended = state_->wait(detail::deadline_after(timeout));
  // Python's _ParentProcess.join returns None either way.
  if (!ended || role_ == role::parent) return std::nullopt;
  unlist();
  return state_->exitcode();
}

void process::check_joinable() const {
  check_closed();
  if (role_ == role::parent) return;
  if (creator_pid_ != detail::self_pid()) misuse("can only join a child process");
  if (!state_) misuse("can only join a started process");
}

void process::unlist() {
  if (role_ == role::ordinary) detail::rt().children.remove(*state_);
}

bool process::is_alive() {
  check_closed();
  if (is_current()) return true;
  if (role_ == role::parent) return !state_->try_reap();
  if (creator_pid_ != detail::self_pid()) misuse("can only test a child process");
  if (!state_) return false;
  if (!state_->try_reap()) return true;
  unlist();
  return false;
}

std::string process::name() const { return name_; }
void process::name(std::string new_name) { name_ = std::move(new_name); }

bool process::daemon() const { return daemon_; }
void process::daemon(bool flag) {
  if (state_ && role_ == role::ordinary) misuse("process has already started");
  daemon_ = flag;
}

std::optional<pid_t> process::pid() const {
  check_closed();
  if (is_current()) return detail::self_pid();
  if (!state_) return std::nullopt;
  return state_->pid();
}

std::optional<int> process::exitcode() {
  check_closed();
  // The main process, the current process in a child, a parent watch and copies inherited
  // from our own parent have no exit code to report here (Python: None).
  if (!state_ || role_ != role::ordinary || creator_pid_ != detail::self_pid()) return std::nullopt;
  if (!state_->try_reap()) return std::nullopt;
  return state_->exitcode();
}

std::optional<exit_status> process::status() {
  check_closed();
  if (!state_ || role_ != role::ordinary || creator_pid_ != detail::self_pid()) return std::nullopt;
  if (!state_->try_reap()) return std::nullopt;
  return state_->status();
}

std::span<const std::byte> process::authkey() const { return authkey_; }
void process::authkey(std::span<const std::byte> key) { authkey_.assign(key.begin(), key.end()); }

int process::sentinel() const {
  check_closed();
  if (!state_) misuse("process not started");
  return state_->sentinel_fd();
}

void process::check_signal_target() const {
  check_closed();
  if (!state_ || role_ != role::ordinary) misuse("process not started");
  if (creator_pid_ != detail::self_pid()) misuse("can only signal a child process");
}

void process::terminate() {
  check_signal_target();
  state_->send_signal(SIGTERM);
}

void process::kill() {
  check_signal_target();
  state_->send_signal(SIGKILL);
}

void process::interrupt() {
  check_signal_target();
  state_->send_signal(SIGINT);
}

void process::close() {
  if (closed_ || role_ == role::main) return;  // idempotent; MainProcess.close() is a no-op
  if (state_ && role_ == role::ordinary) {
    if (creator_pid_ == detail::self_pid()) {
      if (!state_->try_reap())
        misuse(
            "Cannot close a process while it is still running. You should first call join() "
            "or terminate().");
      detail::rt().children.remove(*state_);
      // Pending joins are not aborted: the child has ended, and they complete with its exit
      // code (they hold the state, and with it the sentinel, until then).
      state_.reset();
    } else {
      release();
    }
  }
  closed_ = true;
}

std::shared_ptr<detail::child_state> process::prepare_async_join(bool) {
  check_joinable();
  return state_;
}

std::string process::repr() {
  std::string cls = role_ == role::main     ? "_MainProcess"
                    : role_ == role::parent ? "_ParentProcess"
                                            : "Process";
  std::string out = "<" + cls + " name='" + name_ + "'";
  std::optional<int> code;
  std::string state;
  if (is_current()) {
    state = "started";
  } else if (closed_) {
    state = "closed";
  } else if (role_ != role::ordinary || creator_pid_ != detail::self_pid()) {
    state = "unknown";
  } else if (!state_) {
    state = "initial";
  } else {
    out += " pid=" + std::to_string(state_->pid());
    if (state_->try_reap()) {
      state = "stopped";
      code = state_->exitcode();
    } else {
      state = "started";
    }
  }
  if (role_ == role::main || role_ == role::parent)
    out += " parent=None";
  else if (is_current())
    out += " parent=" + std::to_string(::getppid());
  else
    out += " parent=" + std::to_string(creator_pid_);
  out += " " + state;
  if (code) {
    const char* abbrev = *code < 0 ? ::sigabbrev_np(-*code) : nullptr;
    out += " exitcode=" + (abbrev ? std::string("-SIG") + abbrev : std::to_string(*code));
  }
  if (daemon_) out += " daemon";
  return out + ">";
}

}  // namespace coproc
