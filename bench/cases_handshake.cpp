// Connections per second through a listener: accept + client with Python's authentication
// handshake (an authkey), on a Unix socket path and on TCP loopback. coproc's blocking
// listener accepts in a thread while the case's main thread connects, one client at a time;
// Python's Listener and Client do the same in one process (bench/py_anchors.py handshake). A
// coproc row without an authkey shows what the handshake itself costs.
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <thread>

#include <coproc/coproc.hpp>

#include "bench.hpp"

namespace bench {
namespace {

enum family_param : long { unix_path = 0, tcp_loopback = 1 };

// Connections per repetition.
std::size_t connection_count(const case_env& env) { return env.opt.short_mode ? 200 : 1000; }

// The key both sides use (Python's anchor uses the same bytes).
constexpr const char* bench_key = "coproc bench handshake key";

// A directory of its own for the socket path, removed with it.
class socket_dir {
 public:
  socket_dir() {
    char name[] = "/tmp/coproc-bench-hs-XXXXXX";
    if (!::mkdtemp(name)) throw_errno("mkdtemp");
    path_ = name;
  }
  ~socket_dir() {
    ::unlink((path_ + "/s").c_str());
    ::rmdir(path_.c_str());
  }
  socket_dir(const socket_dir&) = delete;
  socket_dir& operator=(const socket_dir&) = delete;
  std::string socket() const { return path_ + "/s"; }

 private:
  std::string path_;
};

case_result coproc_connections(const case_env& env, bool with_key) {
  const std::size_t count = connection_count(env);
  const int reps = env.warmup + env.iterations;
  socket_dir dir;
  const coproc::address where = env.param == unix_path
                                    ? coproc::address::unix_socket(dir.socket())
                                    : coproc::address::tcp("127.0.0.1", 0);
  std::optional<coproc::bytes> key;
  if (with_key) key = coproc::as_bytes(bench_key);
  // Python's Listener has backlog 1. Without a handshake the client does not wait for
  // accept() and outruns it; on TCP a full accept queue then drops SYNs, and the 1 s
  // retransmission swamps the figure (Python shows the same), so that row queues up to 128.
  coproc::listener l(where, with_key ? 1 : 128, key);

  std::string server_error;
  std::thread server([&] {
    try {
      for (std::size_t i = 0; i < count * static_cast<std::size_t>(reps); ++i) (void)l.accept();
    } catch (const std::exception& e) {
      server_error = e.what();
    }
  });
  case_result r;
  try {
    for (int rep = 0; rep < reps; ++rep) {
      const double t0 = now_us();
      for (std::size_t i = 0; i < count; ++i) (void)coproc::client(l.address(), key);
      const double t1 = now_us();
      if (rep >= env.warmup) r.samples.push_back(static_cast<double>(count) / ((t1 - t0) / 1e6));
    }
  } catch (const std::exception& e) {
    r = failed(std::string("client: ") + e.what());
    l.close();  // the server's accept() ends with "listener is closed"
  }
  server.join();
  if (r.error.empty() && !server_error.empty()) return failed("listener: " + server_error);
  return r;
}

case_result coproc_with_key(const case_env& env) { return coproc_connections(env, true); }
case_result coproc_without_key(const case_env& env) { return coproc_connections(env, false); }

case_result python_with_key(const case_env& env) {
  return run_python(env, {"handshake", "--family", env.param == unix_path ? "unix" : "tcp",
                          "--count", std::to_string(connection_count(env)), "--key", bench_key});
}

}  // namespace

void add_handshake_groups(std::vector<group>& out, const options& opt) {
  const bool s = opt.short_mode;
  const std::chrono::seconds dl(120);
  const int reps = s ? 3 : 5;
  for (const auto& [param, label] : {std::pair{unix_path, "Unix socket path"},
                                     std::pair{tcp_loopback, "TCP loopback"}}) {
    group g;
    g.id = "handshake";
    g.title = "listener: accept + client with an authkey, one client at a time";
    g.param = param;
    g.param_label = label;
    g.unit = "conn/s";
    g.higher_is_better = true;
    g.anchor = "Python Listener/Client, authkey";
    g.rounds = s ? 2 : 5;
    g.note =
        "Each connection: connect, the mutual HMAC challenge/response (6 messages), close. The "
        "listener accepts in a thread of the same process, in both languages. Python answers "
        "and delivers in its own version's form (3.11 and older: 20 random bytes and HMAC-MD5; "
        "3.12+: {sha256}), coproc delivers {sha256} and answers either form. The row without "
        "an authkey listens with a backlog of 128 instead of Python's 1 (its client does not "
        "wait for accept(), and a full queue drops SYNs on TCP).";
    g.variants = {
        {"coproc listener.accept + client, authkey", role::subject, coproc_with_key, 1, reps, dl},
        {"coproc listener.accept + client, no authkey", role::info, coproc_without_key, 1, reps,
         dl},
        {"Python Listener/Client, authkey", role::anchor, python_with_key, 1, reps, dl},
    };
    out.push_back(std::move(g));
  }
}

}  // namespace bench
