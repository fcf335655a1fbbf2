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
    server.reset();
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

  // Sends the request; starts the server first if there is none or it has died.
  void send(const wire::request& req, std::span<const int> fds) {
    std::lock_guard lock(mutex);
    for (int attempt = 0;; ++attempt) {
      if (!server_alive()) start_server();
      if (wire::send_with_fds(control.get(), &req, sizeof req, fds) == static_cast<long>(sizeof req))
        return;
      const int err = errno;
      if (attempt == 0 && (err == EPIPE || err == ECONNRESET || err == ECONNREFUSED)) {
        control.reset();  // died since we looked: one new server, one retry
        continue;
      }
      throw_errno(err, "send to the forkserver");
    }
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
  const exec_request request = make_exec_request(self, by_pidfd);
  if (request.fds.size() > wire::max_handed)
    throw std::invalid_argument("a forkserver child can be handed at most " +
                                std::to_string(wire::max_handed) + " connections");
  const bytes message = encode(request.spec, request.args);

  // One socket per child: the message goes out on it, the pid (and pidfd) and later the status
  // come back on it, and it is where the status is waited for.
  auto [status, theirs] = make_private_socket_pair(SOCK_STREAM);
  wire::request req;
  req.message_size = static_cast<std::uint32_t>(message.size());
  req.handed = static_cast<std::uint32_t>(request.fds.size());
  req.send_pidfd = by_pidfd ? 1 : 0;
  std::vector<int> fds = {theirs.get()};
  fds.insert(fds.end(), request.fds.begin(), request.fds.end());
  this_client().send(req, fds);
  theirs.reset();

  auto server_gone = [] {
    return std::system_error(EPIPE, std::generic_category(),
                             "the forkserver ended before it started the child");
  };
  if (!send_all(status.get(), message)) throw server_gone();
  wire::reply rep;
  int pidfd_in[1] = {-1};
  std::size_t count = 0;
  const long got = wire::recv_with_fds(status.get(), &rep, sizeof rep, pidfd_in, &count, MSG_WAITALL);
  unique_fd received(count ? pidfd_in[0] : -1);
  if (got != static_cast<long>(sizeof rep)) throw server_gone();
  if (rep.pid <= 0) throw_errno(rep.error ? rep.error : EPROTO, "fork (in the forkserver)");

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
  return std::make_shared<child_state>(pid, sentinel(sentinel::pipe{std::move(dup), {}}),
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
