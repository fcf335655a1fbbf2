// The async server example (examples/async_server.cpp), driven as a real program by real
// clients over loopback: jobs that crash and overrun their deadline while other connections
// keep being served, many connections at once, jobs queued for a free worker of the pool,
// shutdown by `quit` and by signals, and the client and demo modes the tour runs.
//
// Under the nopidfd test setup the program runs with pidfd_open refused by a seccomp filter,
// so the server's coproc (and its forkserver) falls back to the pipe sentinel by itself, as on
// a kernel or in a container without pidfd. Where that filter cannot be installed, the nopidfd run would only
// repeat the default one: the suite is skipped there.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/testing.hpp>

#include "helpers.hpp"

#ifndef COPROC_ASYNC_SERVER
#error "COPROC_ASYNC_SERVER must name the example program (test/examples/meson.build)"
#endif

using namespace std::chrono_literals;
using std::chrono::steady_clock;

namespace {

const char* const server_program = COPROC_ASYNC_SERVER;

// True when this run is the nopidfd setup: the server must not get pidfds either.
bool pipe_sentinel_setup() { return !coproc::testing::pidfd_sentinels(); }

// Whether the filter can be installed here: a forked child tries, as program's child does.
bool refuse_pidfd_open_installs() {
  const pid_t pid = ::fork();
  if (pid < 0) return false;
  if (pid == 0) ::_exit(coproc_test::refuse_pidfd_open(ENOSYS) ? 0 : 1);
  int st = 0;
  while (::waitpid(pid, &st, 0) == -1 && errno == EINTR) {
  }
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

// True when the server must get the filter: the nopidfd setup, on a kernel that would give it
// pidfds (one that refuses pidfd_open to this process refuses it to the server too).
bool server_needs_the_filter() {
  static const bool needed = [] {
    if (!pipe_sentinel_setup()) return false;
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0));
    if (fd < 0) return false;
    ::close(fd);
    return true;
  }();
  return needed;
}

// The suite's precondition: where the server needs the filter, it can be installed.
boost::test_tools::assertion_result server_sentinel_as_set_up(boost::unit_test::test_unit_id) {
  static const bool ok = !server_needs_the_filter() || refuse_pidfd_open_installs();  // probed once
  boost::test_tools::assertion_result r(ok);
  r.message() << "nopidfd setup, but no seccomp filter here: the server would keep its pidfds";
  return r;
}

// The pids a process holds pidfds of (from /proc/<pid>/fdinfo).
std::vector<pid_t> pidfd_targets(pid_t pid) {
  std::vector<pid_t> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fdinfo";
  DIR* d = ::opendir(dir.c_str());
  while (dirent* e = d ? ::readdir(d) : nullptr) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("Pid:", 0) == 0) out.push_back(std::stoi(line.substr(4)));
  }
  if (d) ::closedir(d);
  return out;
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(std::exchange(fd, -1));
}

// Reads one line from `fd` (without the '\n'); nullopt at end of stream. Fails the test after
// `guard` (a hang).
std::optional<std::string> read_line(int fd, std::string& buffer, std::chrono::seconds guard) {
  const auto deadline = steady_clock::now() + guard;
  for (;;) {
    if (const auto nl = buffer.find('\n'); nl != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady_clock::now());
    BOOST_REQUIRE_MESSAGE(left.count() > 0, "no line after " << guard.count() << " s: a hang");
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    buffer.append(buf, static_cast<std::size_t>(n));
  }
}

// The example program, started with `args`, its stdout on a pipe (its stderr is the test's).
class program {
 public:
  explicit program(std::vector<std::string> args, const std::string& input = {}) {
    BOOST_REQUIRE_MESSAGE(::access(server_program, X_OK) == 0,
                          server_program << " is missing: build the examples (ninja)");
    int out[2], in[2];
    BOOST_REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    BOOST_REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    args.insert(args.begin(), server_program);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // (Where it is needed the filter can be installed: see the suite's precondition.)
    const bool refuse = server_needs_the_filter();
    // Only system calls between fork and exec (this program may run threads).
    pid_ = ::fork();
    BOOST_REQUIRE_MESSAGE(pid_ >= 0, "fork: " << std::strerror(errno));
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(in[0], 0);
      if (refuse && !coproc_test::refuse_pidfd_open(ENOSYS)) ::_exit(126);
      ::execve(server_program, argv.data(), environ);
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(in[0]);
    out_ = out[0];
    // Its standard input: `input`, then end of stream.
    for (std::size_t done = 0; done < input.size();) {
      const ssize_t n = ::write(in[1], input.data() + done, input.size() - done);
      BOOST_REQUIRE(n > 0);
      done += static_cast<std::size_t>(n);
    }
    ::close(in[1]);
  }
  ~program() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
    close_fd(out_);
  }
  program(const program&) = delete;
  program& operator=(const program&) = delete;

  pid_t pid() const { return pid_; }

  std::optional<std::string> read_line(std::chrono::seconds guard = 60s) {
    return ::read_line(out_, buffer_, guard);
  }

  // The exit status in Python's convention (>= 0: exit code, -N: signal N); nullopt if the
  // program still runs after `guard`.
  std::optional<int> wait(std::chrono::milliseconds guard = 30'000ms) {
    const auto deadline = steady_clock::now() + guard;
    while (!status_) {
      int st = 0;
      const pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        break;
      }
      if (steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(2ms);
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
  std::optional<int> status_;
};

// The state letter and parent of a process (from /proc/<pid>/stat: the third and fourth
// fields); nullopt once it is gone.
std::optional<std::pair<char, pid_t>> state_and_parent(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return std::nullopt;
  const auto close_paren = stat.rfind(')');  // the command name may contain anything
  if (close_paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close_paren + 1));
  char state;
  pid_t ppid = 0;
  if (!(fields >> state >> ppid)) return std::nullopt;
  return std::pair{state, ppid};
}

// The pids of the children of `parent`.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  while (dirent* e = d ? ::readdir(d) : nullptr) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    const pid_t pid = std::stoi(e->d_name);
    const auto sp = state_and_parent(pid);
    if (sp && sp->second == parent) out.push_back(pid);
  }
  if (d) ::closedir(d);
  return out;
}

// The server's pool workers: its descendants without children of their own. Under spawn they
// are the server's children; under forkserver, the children of its forkserver (the server's
// child).
std::vector<pid_t> workers_of(pid_t server) {
  std::vector<pid_t> out, todo = children_of(server);
  while (!todo.empty()) {
    const pid_t p = todo.back();
    todo.pop_back();
    auto kids = children_of(p);
    if (kids.empty()) out.push_back(p);
    todo.insert(todo.end(), kids.begin(), kids.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// True once `pid` has ended (gone, or a zombie its new parent has not reaped yet).
bool ended(pid_t pid) {
  const auto sp = state_and_parent(pid);
  return !sp || sp->first == 'Z' || sp->first == 'X';
}

// A server on a free port: started, and its port read from the first line of its stdout.
struct server {
  explicit server(std::vector<std::string> extra = {}) : proc(with_port_zero(std::move(extra))) {
    const auto line = proc.read_line(60s);
    BOOST_REQUIRE_MESSAGE(line, "the server printed no port");
    port = static_cast<std::uint16_t>(std::stoi(*line));
    BOOST_REQUIRE(port != 0);
  }
  static std::vector<std::string> with_port_zero(std::vector<std::string> extra) {
    extra.insert(extra.begin(), "0");
    return extra;
  }
  program proc;
  std::uint16_t port = 0;
};

// A client connection over loopback: one request line, one answer line.
class client {
 public:
  explicit client(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE_MESSAGE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0,
                          "connect: " << std::strerror(errno));
  }
  ~client() { close_fd(fd_); }
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  void send(const std::string& line) {
    const std::string data = line + "\n";
    for (std::size_t done = 0; done < data.size();) {
      const ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      BOOST_REQUIRE_MESSAGE(n > 0, "send: " << std::strerror(errno));
      done += static_cast<std::size_t>(n);
    }
  }
  std::optional<std::string> receive(std::chrono::seconds guard = 60s) { return read_line(fd_, buffer_, guard); }
  std::string ask(const std::string& line) {
    send(line);
    auto answer = receive();
    BOOST_REQUIRE_MESSAGE(answer, "the server closed the connection instead of answering '" << line << "'");
    return *answer;
  }
  // True if an answer (or end of stream) is waiting now.
  bool has_answer() {
    if (buffer_.find('\n') != std::string::npos) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

 private:
  int fd_ = -1;
  std::string buffer_;
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The value of `key=` in an answer (e.g. ms=1003 -> 1003); -1 if absent.
long field(const std::string& answer, const std::string& key) {
  const auto at = answer.find(" " + key + "=");
  if (at == std::string::npos) return -1;
  return std::stol(answer.substr(at + key.size() + 2));
}

// The server's workers once there are `n` (polled, with a hang guard).
std::vector<pid_t> wait_for_workers(const program& p, std::size_t n) {
  std::vector<pid_t> workers;
  for (int i = 0; i < 30'000; ++i) {
    workers = workers_of(p.pid());
    if (workers.size() == n) return workers;
    std::this_thread::sleep_for(1ms);
  }
  return workers;
}

const std::vector<std::string> thread_counts = {"1", "4"};

// A job that ends its worker with exit code n.
struct job {
  std::string request;
  std::string answer;  // the answer starts with this
  int exitcode;
};
job ending_with(int n) {
  const auto num = std::to_string(n);
  return {"exit " + num, "exit " + num + " -> " + (n ? "exited" : "ok") + " exitcode=" + num, n};
}

// The workers' start methods the server offers.
const std::vector<std::string> methods = {"forkserver", "spawn"};

}  // namespace

BOOST_AUTO_TEST_SUITE(example_async_server,
                      *boost::unit_test::precondition(server_sentinel_as_set_up))

BOOST_DATA_TEST_CASE(prints_its_port_first_and_answers_each_job_with_result_and_exit_status,
                     boost::unit_test::data::make(methods), method) {
  server s({"--deadline", "20000", "--method", method});
  client c(s.port);
  BOOST_TEST(c.ask("fib 20").starts_with("fib 20 -> ok result=6765 exitcode=0 ms="));
  BOOST_TEST(c.ask("exit 7").starts_with("exit 7 -> exited exitcode=7 ms="));
  BOOST_TEST(c.ask("exit 0").starts_with("exit 0 -> ok exitcode=0 ms="));
  BOOST_TEST(c.ask("crash").starts_with("crash -> crashed signal=SIGSEGV exitcode=-11 ms="));
  BOOST_TEST(c.ask("abort").starts_with("abort -> crashed signal=SIGABRT exitcode=-6 ms="));
  // A job that throws does not end its worker: the exception comes back, with its type.
  BOOST_TEST(c.ask("throw").starts_with("throw -> raised std::runtime_error: the job failed ms="));
  BOOST_TEST(c.ask("sleep 10").starts_with("sleep 10 -> ok exitcode=0 ms="));
  const auto killed = c.ask("sleep 60000 within 200");
  BOOST_TEST(killed.starts_with("sleep 60000 within 200 -> killed deadline=200ms exitcode=-9 ms="), killed);
  BOOST_TEST(field(killed, "ms") >= 200);
  BOOST_TEST(field(killed, "ms") < 20000);
  c.send("quit");
  BOOST_TEST(c.receive() == "quit -> bye");
  BOOST_TEST(s.proc.wait() == 0);
}

BOOST_DATA_TEST_CASE(a_crash_and_an_overrun_while_another_connection_is_served,
                     boost::unit_test::data::make(thread_counts), threads) {
  // A job that overruns the deadline is in flight on one connection; meanwhile another
  // connection gets its answers, a crash and a (shorter) overrun among them. The slow answer
  // must come after all of them, and only once its deadline has passed. (Three workers: the
  // slow job holds one.)
  server s({"--threads", threads, "--deadline", "5000", "--processes", "3"});
  client slow(s.port), fast(s.port);
  const auto t0 = steady_clock::now();
  slow.send("sleep 60000");
  BOOST_TEST(fast.ask("fib 22").starts_with("fib 22 -> ok result=17711 exitcode=0"));
  BOOST_TEST(fast.ask("crash").starts_with("crash -> crashed signal=SIGSEGV exitcode=-11"));
  const auto three = ending_with(3);
  BOOST_TEST(fast.ask(three.request).starts_with(three.answer));
  const auto short_overrun = fast.ask("sleep 60000 within 100");
  BOOST_TEST(short_overrun.starts_with("sleep 60000 within 100 -> killed deadline=100ms exitcode=-9"), short_overrun);
  BOOST_TEST(fast.ask("nonsense").starts_with("nonsense -> error unknown job 'nonsense'"));
  BOOST_TEST(fast.ask("fib 10").starts_with("fib 10 -> ok result=55 exitcode=0"));
  const bool slow_answered_early = slow.has_answer();
  const auto fast_done = steady_clock::now() - t0;
  // Only meaningful if the fast connection finished before the slow deadline; with 5 s to
  // spare on a loaded machine it does, and if not, the message says why.
  BOOST_TEST(!slow_answered_early, "the slow job was answered before the fast connection finished ("
                                       << std::chrono::duration_cast<std::chrono::milliseconds>(fast_done).count()
                                       << " ms)");
  const auto slow_answer = slow.receive();
  const auto slow_at = steady_clock::now() - t0;
  BOOST_REQUIRE(slow_answer);
  BOOST_TEST(slow_answer->starts_with("sleep 60000 -> killed deadline=5000ms exitcode=-9"), *slow_answer);
  BOOST_TEST(field(*slow_answer, "ms") >= 5000);
  BOOST_TEST((slow_at >= 5000ms));
  BOOST_TEST((slow_at < 50s));  // killed at the deadline, not after the job's 60 s
  // Both connections still work.
  const auto four = ending_with(4);
  BOOST_TEST(slow.ask(four.request).starts_with(four.answer));
  fast.send("quit");
  BOOST_TEST(fast.receive() == "quit -> bye");
  BOOST_TEST(s.proc.wait() == 0);
}

BOOST_DATA_TEST_CASE(many_connections_are_served_at_once, boost::unit_test::data::make(thread_counts),
                     threads) {
  // 16 connections each start a 1 s job at once: served one after another they would take
  // 16 s; served concurrently by a pool of 16 workers, about 1 s. Each also gets its own
  // answer back.
  constexpr int n = 16;
  server s({"--threads", threads, "--deadline", "30000", "--processes", "16"});
  std::vector<std::unique_ptr<client>> clients;
  for (int i = 0; i < n; ++i) clients.push_back(std::make_unique<client>(s.port));
  const auto t0 = steady_clock::now();
  for (auto& c : clients) c->send("sleep 1000");
  for (int i = 0; i < n; ++i) {
    const auto answer = clients[static_cast<std::size_t>(i)]->receive();
    BOOST_REQUIRE(answer);
    BOOST_TEST(answer->starts_with("sleep 1000 -> ok exitcode=0"), *answer);
  }
  const auto elapsed = steady_clock::now() - t0;
  BOOST_TEST((elapsed < 8s), "16 one-second jobs took "
                                 << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms");
  // Every connection gets its own answers: distinct requests, sent all at once.
  for (int i = 0; i < n; ++i) clients[static_cast<std::size_t>(i)]->send(ending_with(i).request);
  for (int i = 0; i < n; ++i) {
    const auto answer = clients[static_cast<std::size_t>(i)]->receive();
    BOOST_REQUIRE(answer);
    const auto want = ending_with(i);
    BOOST_TEST(answer->starts_with(want.answer), *answer);
    BOOST_TEST(field(*answer, "exitcode") == want.exitcode);
  }
  clients[0]->send("quit");
  BOOST_TEST(clients[0]->receive() == "quit -> bye");
  BOOST_TEST(s.proc.wait() == 0);
}

BOOST_AUTO_TEST_CASE(jobs_beyond_the_pool_wait_for_a_worker_and_their_deadline_starts_there) {
  // One worker: the second connection's job waits for the first one's to end. Its deadline
  // (1500 ms) counts from the moment the worker takes it, so it is not killed although its
  // answer comes about 2 s after the request.
  server s({"--processes", "1", "--deadline", "20000"});
  client first(s.port), second(s.port);
  first.send("sleep 1000 within 1500");
  std::this_thread::sleep_for(100ms);  // the first job reaches the worker first
  second.send("sleep 1000 within 1500");
  const auto a = first.receive();
  const auto b = second.receive();
  BOOST_REQUIRE(a);
  BOOST_REQUIRE(b);
  BOOST_TEST(a->starts_with("sleep 1000 within 1500 -> ok exitcode=0"), *a);
  BOOST_TEST(b->starts_with("sleep 1000 within 1500 -> ok exitcode=0"), *b);
  BOOST_TEST(field(*b, "ms") >= 1800, *b);  // queued ~900 ms, then ran 1 s
  // A worker that dies is replaced: the pool of one serves on.
  BOOST_TEST(first.ask("crash").starts_with("crash -> crashed signal=SIGSEGV exitcode=-11"));
  BOOST_TEST(first.ask("exit 3").starts_with("exit 3 -> exited exitcode=3"));
  const auto killed = first.ask("sleep 60000 within 100");
  BOOST_TEST(killed.starts_with("sleep 60000 within 100 -> killed deadline=100ms exitcode=-9"), killed);
  BOOST_TEST(first.ask("throw").starts_with("throw -> raised std::runtime_error: the job failed"));
  BOOST_TEST(second.ask("fib 10").starts_with("fib 10 -> ok result=55 exitcode=0"));
  second.send("quit");
  BOOST_TEST(second.receive() == "quit -> bye");
  BOOST_TEST(s.proc.wait() == 0);
}

BOOST_AUTO_TEST_CASE(requests_on_one_connection_are_answered_in_order) {
  // Pipelined: all sent before any answer is read.
  server s;
  client c(s.port);
  std::string batch;
  for (int i = 0; i < 20; ++i) c.send(i % 2 ? "exit " + std::to_string(i) : "fib " + std::to_string(i));
  for (int i = 0; i < 20; ++i) {
    const auto answer = c.receive();
    BOOST_REQUIRE(answer);
    const std::string want = i % 2 ? "exit " + std::to_string(i) + " -> " : "fib " + std::to_string(i) + " -> ok";
    BOOST_TEST(answer->starts_with(want), *answer);
  }
}

BOOST_AUTO_TEST_CASE(bad_requests_get_an_error_and_the_connection_stays_usable) {
  server s;
  client c(s.port);
  BOOST_TEST(c.ask("fib").starts_with("fib -> error fib takes one number"));
  BOOST_TEST(c.ask("fib 93").starts_with("fib 93 -> error bad number '93'"));
  BOOST_TEST(c.ask("fib -1").starts_with("fib -1 -> error bad number"));
  BOOST_TEST(c.ask("crash 3").starts_with("crash 3 -> error crash takes no argument"));
  BOOST_TEST(c.ask("sleep 10 within x").starts_with("sleep 10 within x -> error bad deadline 'x'"));
  BOOST_TEST(c.ask("exit 256").starts_with("exit 256 -> error bad number"));
  BOOST_TEST(c.ask("").starts_with(" -> error empty request"));
  BOOST_TEST(c.ask("exit 5").starts_with("exit 5 -> exited exitcode=5"));
}

BOOST_AUTO_TEST_CASE(quit_stops_the_server_and_closes_every_connection) {
  server s;
  client idle(s.port), other(s.port);
  BOOST_TEST(other.ask("exit 0").starts_with("exit 0 -> ok"));
  other.send("quit");
  BOOST_TEST(other.receive() == "quit -> bye");
  BOOST_TEST(!idle.receive(30s));  // end of stream, not an answer
  BOOST_TEST(s.proc.wait() == 0);
}

BOOST_DATA_TEST_CASE(a_signal_stops_the_server_and_kills_the_job_in_flight,
                     boost::unit_test::data::make({SIGTERM, SIGINT}) * boost::unit_test::data::make(methods),
                     sig, method) {
  server s({"--deadline", "60000", "--processes", "2", "--method", method});
  const auto workers = wait_for_workers(s.proc, 2);
  BOOST_REQUIRE_MESSAGE(workers.size() == 2u, "the pool's 2 workers did not appear (" << workers.size() << ")");
  client busy(s.port);
  busy.send("sleep 60000");
  std::this_thread::sleep_for(200ms);  // the job reaches a worker
  // The pool watches each worker through a pidfd (under forkserver, one the forkserver opened
  // and handed over), or in the nopidfd setup through a socket or pipe (no pidfd shows up,
  // however long we look).
  const auto look_for = pipe_sentinel_setup() ? 200ms : 10'000ms;
  bool all_watched = false, any_watched = false;
  for (const auto end = steady_clock::now() + look_for; !all_watched && steady_clock::now() < end;) {
    const auto watched = pidfd_targets(s.proc.pid());
    all_watched = true;
    for (pid_t w : workers) {
      const bool by_pidfd = std::find(watched.begin(), watched.end(), w) != watched.end();
      all_watched &= by_pidfd;
      any_watched |= by_pidfd;
    }
    if (!all_watched) std::this_thread::sleep_for(1ms);
  }
  if (pipe_sentinel_setup())
    BOOST_TEST(!any_watched);
  else
    BOOST_TEST(all_watched);
  const auto t0 = steady_clock::now();
  BOOST_REQUIRE(::kill(s.proc.pid(), sig) == 0);
  // Exits 0 promptly: the pool was terminated (the job's worker killed) and joined.
  BOOST_TEST(s.proc.wait(30'000ms) == 0);
  BOOST_TEST((steady_clock::now() - t0 < 30s));
  BOOST_TEST(!busy.receive(30s));  // the connection was closed without an answer
  // Every worker is gone, the job's among them (the pool reaped them before the server
  // returned; a moment is allowed for the kernel's bookkeeping).
  for (pid_t w : workers) {
    for (int i = 0; i < 5000 && !ended(w); ++i) std::this_thread::sleep_for(1ms);
    BOOST_TEST(ended(w), "the worker " << w << " survived");
  }
}

BOOST_AUTO_TEST_CASE(client_mode_sends_each_line_and_prints_each_answer) {
  server s;
  program c({"--client", "127.0.0.1", std::to_string(s.port)}, "fib 15\nexit 9\ncrash\n");
  BOOST_TEST(c.read_line().value_or("").starts_with("fib 15 -> ok result=610 exitcode=0"));
  BOOST_TEST(c.read_line().value_or("").starts_with("exit 9 -> exited exitcode=9"));
  BOOST_TEST(c.read_line().value_or("").starts_with("crash -> crashed signal=SIGSEGV exitcode=-11"));
  BOOST_TEST(!c.read_line());
  BOOST_TEST(c.wait() == 0);
}

BOOST_AUTO_TEST_CASE(demo_mode_runs_the_tour_and_exits_zero) {
  program demo({"--demo"});
  std::string all;
  while (auto line = demo.read_line()) all += *line + "\n";
  BOOST_TEST(demo.wait() == 0, all);
  BOOST_TEST(contains(all, "[slow] < sleep 3000 -> killed deadline=500ms exitcode=-9"), all);
  BOOST_TEST(contains(all, "[fast] < crash -> crashed signal=SIGSEGV exitcode=-11"), all);
  BOOST_TEST(contains(all, "[fast] < throw -> raised std::runtime_error: the job failed"), all);
  BOOST_TEST(contains(all, "demo: all answers as expected"), all);
}

BOOST_AUTO_TEST_SUITE_END()
