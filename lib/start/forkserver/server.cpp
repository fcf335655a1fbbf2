// The forkserver itself: this program started again (start/exec_child.hpp), single-threaded
// from its first instruction, forking each child its one client asks for. It is the children's
// real parent, so it reaps them and reports each status on the child's own status socket
// (start/forkserver/wire.hpp). It ends when its client's end of the control socket closes.
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <unordered_map>
#include <vector>

#include "core/syscalls.hpp"
#include "start/child_spec.hpp"
#include "start/exec_child.hpp"
#include "start/forkserver/forkserver.hpp"
#include "start/forkserver/wire.hpp"

namespace coproc::detail {

namespace {

namespace wire = forkserver_wire;

constexpr int control_fd = exec_child_first_fd;

struct child_entry {
  int status_fd;  // -1 once the client has closed its end
};

class server {
 public:
  server();
  [[noreturn]] void run();

 private:
  void on_request();
  void on_sigchld();
  void on_status_socket(int fd);
  [[noreturn]] void become_child(int alive_fd, std::vector<int>& handed, child_spec& spec, bytes& args);
  void forget(int fd);

  int epoll_ = -1;
  int sigchld_ = -1;
  std::unordered_map<pid_t, child_entry> children_;
  std::unordered_map<int, pid_t> by_socket_;
};

server::server() {
  // SIGCHLD arrives as a descriptor. SIGINT is blocked, not ignored: a Ctrl-C to the terminal's
  // process group must not end the server under its client, and the children, which clear
  // their mask (start/bootstrap.cpp), must still get it with its default action.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGINT);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigchld_ = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (sigchld_ < 0 || epoll_ < 0) {
    std::perror("coproc forkserver");
    ::_exit(70);
  }
  for (int fd : {control_fd, sigchld_}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
  }
}

void server::run() {
  epoll_event events[64];
  for (;;) {
    const int n = ::epoll_wait(epoll_, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::_exit(70);
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == control_fd)
        on_request();
      else if (fd == sigchld_)
        on_sigchld();
      else
        on_status_socket(fd);
    }
  }
}

void server::on_request() {
  wire::request req;
  int fds[wire::max_handed + 1];
  std::size_t count = 0;
  const long got = wire::recv_with_fds(control_fd, &req, sizeof req, fds, &count);
  if (got == 0) ::_exit(0);  // the client is gone: so is the reason to serve
  if (got < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    ::_exit(70);
  }
  if (count == 0) return;  // nothing to answer on
  const int status_fd = fds[0];
  const std::size_t first_handed = req.has_alive && count > 1 ? 2 : 1;
  const int alive_fd = first_handed == 2 ? fds[1] : -1;
  std::vector<int> handed(fds + first_handed, fds + count);
  auto close_all = [&] {
    ::close(status_fd);
    if (alive_fd >= 0) ::close(alive_fd);
    for (int h : handed) ::close(h);
  };
  if (static_cast<std::size_t>(got) != sizeof req || handed.size() != req.handed ||
      (req.has_alive && alive_fd < 0))
    return close_all();

  // The client sends the message right after the request, and waits for our reply.
  bytes message(req.message_size);
  child_spec spec;
  bytes args;
  wire::reply rep;
  try {
    if (!read_exact(status_fd, message.data(), message.size())) return close_all();
    decode(message, spec, args);
  } catch (const std::exception&) {
    rep.error = EPROTO;
    (void)wire::send_with_fds(status_fd, &rep, sizeof rep, {});
    return close_all();
  }

  const pid_t pid = ::fork();
  if (pid == 0) become_child(alive_fd, handed, spec, args);
  for (int h : handed) ::close(h);
  if (alive_fd >= 0) ::close(alive_fd);
  if (pid < 0) {
    rep.error = errno;
    (void)wire::send_with_fds(status_fd, &rep, sizeof rep, {});
    ::close(status_fd);
    return;
  }
  rep.pid = pid;
  // The pidfd is opened here, by the parent, before any reap: it can only name this child.
  const int pidfd = req.send_pidfd ? sys_pidfd_open(pid) : -1;
  if (req.send_pidfd && pidfd < 0) rep.error = errno;  // the client then waits on the socket
  const int one[1] = {pidfd};
  (void)wire::send_with_fds(status_fd, &rep, sizeof rep,
                            pidfd >= 0 ? std::span<const int>(one) : std::span<const int>());
  if (pidfd >= 0) ::close(pidfd);
  children_[pid] = {status_fd};
  by_socket_[status_fd] = pid;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = status_fd;
  ::epoll_ctl(epoll_, EPOLL_CTL_ADD, status_fd, &ev);
}

void server::become_child(int alive_fd, std::vector<int>& handed, child_spec& spec, bytes& args) {
  // Nothing of the server's belongs to the child but the handed descriptors (and the alive
  // pipe): close the rest above 2 (the control socket, the signalfd, the epoll, every status
  // socket, this child's included).
  std::vector<int> keep = handed;
  if (alive_fd >= 0) keep.push_back(alive_fd);
  std::sort(keep.begin(), keep.end());
  unsigned lo = 3;
  for (int k : keep) {
    if (static_cast<unsigned>(k) > lo) ::close_range(lo, static_cast<unsigned>(k) - 1, 0);
    lo = static_cast<unsigned>(k) + 1;
  }
  ::close_range(lo, ~0U, 0);
  // Signal actions as the caller had them at start(): what it ignored stays ignored (as fork
  // and exec keep it), everything else has its default; the server's own are not the caller's.
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    const bool ignore =
        std::find(spec.ignored_signals.begin(), spec.ignored_signals.end(), sig) != spec.ignored_signals.end();
    struct sigaction act {};
    act.sa_handler = ignore ? SIG_IGN : SIG_DFL;
    ::sigaction(sig, &act, nullptr);
  }
  // The parent of this child, as the program sees it, is the client: watch it by a pidfd
  // opened now, while the client waits for our reply and so is certainly alive (or, without
  // pidfds, by the alive pipe the client handed).
  int parent_pidfd = -1;
  if (spec.by_pidfd) {
    parent_pidfd = sys_pidfd_open(static_cast<pid_t>(spec.parent_pid));
    if (parent_pidfd < 0) spec.by_pidfd = false;  // then the parent reads as ended: no watch
  }
  run_exec_child(std::move(spec), std::move(args), std::move(handed), parent_pidfd, -1, alive_fd);
}

void server::on_sigchld() {
  signalfd_siginfo info;
  while (::read(sigchld_, &info, sizeof info) == sizeof info) {
  }
  for (;;) {
    siginfo_t si{};
    rusage usage{};
    if (sys_waitid(P_ALL, 0, &si, WEXITED | WNOHANG, &usage) != 0 || si.si_pid == 0) break;
    auto it = children_.find(si.si_pid);
    if (it == children_.end()) continue;
    if (it->second.status_fd >= 0) {
      wire::report st;
      st.code = si.si_code;
      st.value = si.si_status;
      st.user_us = usage.ru_utime.tv_sec * 1'000'000L + usage.ru_utime.tv_usec;
      st.system_us = usage.ru_stime.tv_sec * 1'000'000L + usage.ru_stime.tv_usec;
      st.max_rss_kib = usage.ru_maxrss;
      (void)::send(it->second.status_fd, &st, sizeof st, MSG_NOSIGNAL);
      const int fd = it->second.status_fd;
      children_.erase(it);
      forget(fd);
    } else {
      children_.erase(it);
    }
  }
}

void server::on_status_socket(int fd) {
  wire::signal req;
  const ssize_t n = ::recv(fd, &req, sizeof req, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  auto owner = by_socket_.find(fd);
  if (owner == by_socket_.end()) return forget(fd);
  if (n == static_cast<ssize_t>(sizeof req)) {
    // Not reaped yet (reaping happens only in on_sigchld, on this thread): the pid is the child's.
    // The client waits for the word that it is sent, as kill() returns once it is.
    ::kill(owner->second, req.sig);
    wire::report done;
    done.kind = wire::report::delivered;
    (void)::send(fd, &done, sizeof done, MSG_NOSIGNAL);
    return;
  }
  // The client closed its end (its process object is gone): the child runs on, unreported.
  auto child = children_.find(owner->second);
  if (child != children_.end()) child->second.status_fd = -1;
  forget(fd);
}

void server::forget(int fd) {
  ::epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
  by_socket_.erase(fd);
  ::close(fd);
}

}  // namespace

void forkserver_main() {
  try {
    server s;
    s.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coproc forkserver: %s\n", e.what());
  }
  ::_exit(70);
}

}  // namespace coproc::detail
