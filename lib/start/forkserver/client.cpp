// The forkserver start method, the client's side: one server per process that uses it, started
// on first use (start/forkserver/server.cpp is the server), asked over its control socket to fork
// each child. Python's popen_forkserver and forkserver.py.
//
// The control socket is one end of a socket pair made when the server starts: no address
// exists that another process could connect to, so nothing but this process (which alone holds
// the descriptor, close-on-exec and closed in its fork children) can ask the server for
// anything. That is the per-server authentication, by capability (docs/start-methods.md).
#include "start/forkserver/forkserver.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>

#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "core/per_process.hpp"
#include "core/syscalls.hpp"
#include "process_access.hpp"
#include "start/child_spec.hpp"
#include "start/exec_child.hpp"
#include "start/forkserver/wire.hpp"
#include "start/launcher.hpp"
#include "start/own_child.hpp"

namespace coproc::detail {

namespace {

namespace wire = forkserver_wire;

// This process's server: made on first use, replaced when it has died. A fork child of this
// process finds its parent's copy (whose descriptors it has closed) and makes its own.
struct client {
  pid_t owner = 0;
  std::mutex mutex;
  private_fd control;
  std::shared_ptr<child_state> server;  // our child; not listed in active_children()
  pid_t server_pid = 0;

  bool server_alive() { return control && server && !server->try_reap(); }

  void start_server() {
    control.reset();
    if (server) {
      // The old server failed us: it is our child, and is never left a zombie. Killing it ends
      // its wait for a request that may never come; its own children run on.
      server->send_signal(SIGKILL);
      server->wait(std::nullopt);
      server.reset();
    }
    const bool by_pidfd = pidfd_sentinels();
    auto [ours, theirs] = make_private_socket_pair(SOCK_SEQPACKET);
    fallback_pipes pipes;
    std::vector<int> sources = {theirs.get()};
    if (!by_pidfd) {
      pipes.exit = make_private_pipe();
      pipes.alive = make_private_pipe();
      sources.push_back(pipes.exit.write_end.get());
    }
    const pid_t pid = spawn_self(forkserver_flag, sources);
    theirs.reset();
    server = watch_own_child(pid, by_pidfd, std::move(pipes), true);
    server_pid = pid;
    control = std::move(ours);
  }

  unsigned generation = 0;  // of the server: one more for each one started

  // Sends the request; starts the server first if there is none or it has died. Returns the
  // generation of the server that took it.
  unsigned send(const wire::request& req, std::span<const int> fds) {
    std::lock_guard lock(mutex);
    for (int attempt = 0;; ++attempt) {
      if (!server_alive()) {
        start_server();
        ++generation;
      }
      if (wire::send_with_fds(control.get(), &req, sizeof req, fds) == static_cast<long>(sizeof req))
        return generation;
      const int err = errno;
      if (attempt == 0 && (err == EPIPE || err == ECONNRESET || err == ECONNREFUSED)) {
        control.reset();  // died since we looked: one new server, one retry
        continue;
      }
      throw_errno(err, "send to the forkserver");
    }
  }

  // The server of `gen` took a request and ended without answering: the next send() starts
  // a new one (unless another thread has already).
  void failed(unsigned gen) {
    std::lock_guard lock(mutex);
    if (gen == generation) control.reset();
  }
};

per_process<client> clients;

client& this_client() {
  return clients.get([](const client*) { return std::make_unique<client>(); });
}

class forkserver_method final : public launcher {
 public:
  void check(const process&) const override { require_init("forkserver"); }
  std::shared_ptr<child_state> launch(process& self) override;
};

std::shared_ptr<child_state> forkserver_method::launch(process& self) {
  const bool by_pidfd = pidfd_sentinels();
  exec_request request = make_exec_request(self, by_pidfd);
  // The server's signal actions are its own: the child is told which ones the caller ignores.
  for (int sig = 1; sig < NSIG; ++sig) {
    struct sigaction act {};
    if (sig != SIGKILL && sig != SIGSTOP && ::sigaction(sig, nullptr, &act) == 0 &&
        !(act.sa_flags & SA_SIGINFO) && act.sa_handler == SIG_IGN)
      request.spec.ignored_signals.push_back(sig);
  }
  if (request.fds.size() > wire::max_handed)
    throw std::invalid_argument("a forkserver child can be handed at most " +
                                std::to_string(wire::max_handed) + " connections");
  const bytes message = encode(request.spec, request.args);

  // One socket per child: the message goes out on it, the pid (and pidfd) and later the status
  // come back on it, and it is where the status is waited for.
  wire::request req;
  req.message_size = static_cast<std::uint32_t>(message.size());
  req.handed = static_cast<std::uint32_t>(request.fds.size());
  req.send_pidfd = by_pidfd ? 1 : 0;
  req.has_alive = by_pidfd ? 0 : 1;
  // Without pidfds the child learns that we are gone from a pipe whose write end we keep.
  private_pipe alive;
  if (!by_pidfd) alive = make_private_pipe();
  client& server = this_client();
  private_fd status;
  wire::reply rep;
  unique_fd received;
  // A server that ended with our request unanswered (killed a moment before, while start()
  // still found it alive) is replaced and asked again, once. It may have forked the child
  // before it died: that child runs unwatched, as it would after any death of the server.
  for (int attempt = 0;; ++attempt) {
    auto [ours, theirs] = make_private_socket_pair(SOCK_STREAM);
    std::vector<int> fds = {theirs.get()};
    if (alive.read_end) fds.push_back(alive.read_end.get());
    fds.insert(fds.end(), request.fds.begin(), request.fds.end());
    const unsigned gen = server.send(req, fds);
    theirs.reset();
    int pidfd_in[1] = {-1};
    std::size_t count = 0;
    long got = -1;
    if (send_all(ours.get(), message))
      got = wire::recv_with_fds(ours.get(), &rep, sizeof rep, pidfd_in, &count, MSG_WAITALL);
    received = unique_fd(count ? pidfd_in[0] : -1);
    if (got == static_cast<long>(sizeof rep)) {
      status = std::move(ours);
      break;
    }
    server.failed(gen);
    if (attempt == 1)
      throw std::system_error(EPIPE, std::generic_category(),
                              "the forkserver ended before it started the child");
  }
  if (rep.pid <= 0) throw_errno(rep.error ? rep.error : EPROTO, "fork (in the forkserver)");
  alive.read_end.reset();

  const pid_t pid = rep.pid;
  const bool daemon = process_access::daemon(self);
  if (received) {
    private_fd pidfd = private_fd::adopt(std::move(received));
    const int raw = pidfd.get();
    return std::make_shared<child_state>(pid, sentinel(sentinel::pidfd{std::move(pidfd)}),
                                         reported_by_server(pid, raw, std::move(status)), daemon);
  }
  // No pidfd: the status socket is the sentinel, as in Python (readable when the server has
  // written the status, or has died).
  private_fd dup = private_fd::create([&] { return ::fcntl(status.get(), F_DUPFD_CLOEXEC, 0); });
  if (!dup) throw_errno("duplicate the status socket");
  return std::make_shared<child_state>(pid, sentinel(sentinel::pipe{std::move(dup), std::move(alive.write_end)}),
                                       reported_by_server(pid, -1, std::move(status)), daemon);
}

}  // namespace

std::optional<pid_t> forkserver_pid() {
  client* c = clients.own();
  if (!c) return std::nullopt;
  std::lock_guard lock(c->mutex);
  if (!c->server_alive()) return std::nullopt;
  return c->server_pid;
}

launcher& forkserver_launcher() {
  static forkserver_method method;
  return method;
}

}  // namespace coproc::detail
