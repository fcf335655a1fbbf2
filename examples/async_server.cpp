// async_server: an Asio TCP server that runs every request in a pool of worker processes, each
// job with its own deadline.
//
//   async_server [PORT] [--threads N] [--deadline MS] [--processes N] [--method M]
//                              serve on 127.0.0.1:PORT (0: any free port); the first stdout
//                              line is the port
//   async_server --client HOST PORT                      send stdin's lines, print the answers
//   async_server --demo [--threads N] [--processes N]   serve and drive it over loopback, then exit
//
// --processes is the pool's size (default: cpu_count(), a worker per CPU); --method the
// workers' start method, forkserver (the default) or spawn: never fork, since the server runs
// threads (docs/fork-policy.md).
//
// One request per line, one answer per line:
//
//   fib N       compute the N-th Fibonacci number (naively: CPU work) in a worker; the result
//               comes back as the task's result
//   sleep MS    a job that sleeps: past the deadline its worker is killed (and replaced)
//   crash       a job that kills its worker with SIGSEGV (the pool replaces it)
//   abort       a job that calls std::abort (SIGABRT)
//   throw       a job that throws: the exception comes back, the worker lives on
//   exit N      a job that ends its worker with coproc::exit(N)
//   quit        stop the server
//
// Every job may end with `within MS` to replace the server's deadline, e.g. `fib 45 within 200`.
// The deadline counts from the moment a worker takes the job (a job waiting for a free worker
// is not running yet). The answer repeats the request, then says what happened:
//
//   fib 30 -> ok result=832040 exitcode=0 ms=12
//   exit 3 -> exited exitcode=3 ms=2
//   crash -> crashed signal=SIGSEGV exitcode=-11 ms=2
//   throw -> raised std::runtime_error: the job failed ms=1
//   sleep 5000 -> killed deadline=1000ms exitcode=-9 ms=1001
//   frob -> error unknown job 'frob' (jobs: fib N, sleep MS, crash, abort, throw, exit N, quit)
//
// What it shows (docs/server-example.md explains it at length):
// - a coroutine per connection, many requests per connection, every connection served at
//   once while jobs run: `co_await result.async_get(as_tuple(use_awaitable))` is an
//   ordinary Asio operation;
// - a coproc::pool of --processes workers shared by every connection; each job is
//   `pool.apply_async_within(deadline, job, arg)`: past its deadline the pool kills the
//   worker (SIGKILL) and starts another, and the job fails with coproc::errc::task_timed_out;
// - a worker that dies under its job (a crash, coproc::exit) fails only that job
//   (errc::child_died) and is replaced; `result.status()` then holds the dead worker's exit
//   status in Python's convention (>= 0 exit code, -N for signal N), signal included;
// - an io_context run by several threads, with a strand per connection;
// - a clean shutdown on `quit`, SIGINT or SIGTERM: the pool is terminated (the jobs in flight
//   are killed), the io_context runs out of work, the workers are joined, main returns 0.
#include <signal.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <coproc/coproc.hpp>
#include <coproc/pool.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

// ---------------------------------------------------------------------------------------
// The jobs. Each runs in a worker of the pool, a process started by forkserver or spawn: it
// finds the function by the name COPROC_TARGET registers, and the argument and the result
// travel as JSON. A job answers with a string (empty: nothing to show).

namespace jobs {

// Run once in each worker before its first job. Workers start with the server's ignored
// signals ignored and every other signal at its default action (the handler of the server's
// asio::signal_set is not theirs). Ctrl-C sends SIGINT to the whole process group, though: the
// workers ignore it and leave the shutdown to the server, which terminates the pool itself.
void worker_init() { std::signal(SIGINT, SIG_IGN); }
COPROC_TARGET(worker_init);

std::uint64_t fib(unsigned n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

std::string fib_job(long n) { return std::to_string(fib(static_cast<unsigned>(n))); }
COPROC_TARGET(fib_job);

std::string sleep_job(long ms) {
  std::this_thread::sleep_for(milliseconds(ms));
  return {};
}
COPROC_TARGET(sleep_job);

std::string crash_job(long) {
  // Already the default in a worker; said here because a sanitizer's handler (ASan) would
  // turn the crash into exit(1), and this worker is to die of it, as a real crash does.
  std::signal(SIGSEGV, SIG_DFL);
  std::raise(SIGSEGV);
  return {};
}
COPROC_TARGET(crash_job);

std::string abort_job(long) { std::abort(); }
COPROC_TARGET(abort_job);

std::string throw_job(long) {
  throw std::runtime_error("the job failed");  // travels back as coproc::remote_error
}
COPROC_TARGET(throw_job);

std::string exit_job(long code) { coproc::exit(static_cast<int>(code)); }
COPROC_TARGET(exit_job);

}  // namespace jobs

namespace {

struct job_kind {
  std::string_view name;
  bool takes_number;
  long max;  // the largest argument accepted
  std::string (*run)(long arg);  // a registered function
};

constexpr job_kind job_kinds[] = {
    {"fib", true, 92, jobs::fib_job},  // fib(93) no longer fits 64 bits
    {"sleep", true, 86'400'000, jobs::sleep_job},
    {"crash", false, 0, jobs::crash_job},
    {"abort", false, 0, jobs::abort_job},
    {"throw", false, 0, jobs::throw_job},
    {"exit", true, 255, jobs::exit_job},
};

constexpr std::string_view job_list = "fib N, sleep MS, crash, abort, throw, exit N, quit";

// ---------------------------------------------------------------------------------------
// Requests.

struct request {
  const job_kind* kind = nullptr;
  long arg = 0;
  std::optional<milliseconds> within;
};

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  while (!line.empty()) {
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string_view::npos) break;
    line.remove_prefix(start);
    const auto end = std::min(line.find_first_of(" \t"), line.size());
    words.push_back(line.substr(0, end));
    line.remove_prefix(end);
  }
  return words;
}

std::optional<long> parse_number(std::string_view word, long max) {
  long v = 0;
  const auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
  if (ec != std::errc() || p != word.data() + word.size() || v < 0 || v > max)
    return std::nullopt;
  return v;
}

// A request, or the reason it is not one.
std::variant<request, std::string> parse_request(std::string_view line) {
  auto words = split_words(line);
  if (words.empty()) return std::string("empty request (jobs: ") + std::string(job_list) + ")";
  request req;
  if (words.size() >= 2 && words[words.size() - 2] == "within") {
    auto ms = parse_number(words.back(), 86'400'000);
    if (!ms) return "bad deadline '" + std::string(words.back()) + "'";
    req.within = milliseconds(*ms);
    words.resize(words.size() - 2);
    if (words.empty()) return std::string("nothing to run within the deadline");
  }
  for (const auto& kind : job_kinds)
    if (kind.name == words[0]) req.kind = &kind;
  if (!req.kind)
    return "unknown job '" + std::string(words[0]) + "' (jobs: " + std::string(job_list) + ")";
  const std::size_t want = req.kind->takes_number ? 2 : 1;
  if (words.size() != want)
    return std::string(req.kind->name) + (req.kind->takes_number ? " takes one number" : " takes no argument");
  if (req.kind->takes_number) {
    auto n = parse_number(words[1], req.kind->max);
    if (!n)
      return "bad number '" + std::string(words[1]) + "' (0.." + std::to_string(req.kind->max) + ")";
    req.arg = *n;
  }
  return req;
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// ---------------------------------------------------------------------------------------
// The server.

using strand_type = asio::strand<asio::io_context::executor_type>;

// A co_spawn completion handler that reports an escaped exception instead of losing it.
struct report_error {
  const char* what;
  void operator()(std::exception_ptr e) const {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::cerr << "async_server: " << what << ": " << x.what() << "\n";
    }
  }
};

class server;

// One connection: a socket on its own strand, served by one coroutine, one request at a time.
class session : public std::enable_shared_from_this<session> {
 public:
  session(server& owner, tcp::socket::rebind_executor<strand_type>::other socket)
      : owner_(owner), socket_(std::move(socket)) {}

  asio::awaitable<void> serve();
  strand_type get_executor() { return socket_.get_executor(); }

  // Shutdown: close the socket (the job in flight, if any, fails at once: the server has
  // terminated the pool). Any thread; the work itself runs on the connection's strand.
  void stop() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      self->stopping_ = true;
      self->close();
    });
  }

 private:
  asio::awaitable<void> answer_requests();
  asio::awaitable<std::string> run(const request& req);

  void close() {
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  server& owner_;
  tcp::socket::rebind_executor<strand_type>::other socket_;  // on the connection's strand
  bool stopping_ = false;  // only touched on the strand
};

class server {
 public:
  server(asio::io_context& ioc, coproc::pool& workers, std::uint16_t port, milliseconds deadline)
      : ioc_(ioc),
        workers_(workers),
        strand_(asio::make_strand(ioc)),
        acceptor_(strand_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port)),
        signals_(strand_, SIGINT, SIGTERM),
        deadline_(deadline) {}

  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  milliseconds deadline() const { return deadline_; }
  coproc::pool& workers() { return workers_; }
  // True once stop() has begun: any thread.
  bool stopping() const { return stopping_.load(); }

  void start() {
    asio::co_spawn(strand_, accept_loop(), report_error{"accept loop"});
    signals_.async_wait([this](boost::system::error_code ec, int sig) {
      if (ec) return;  // cancelled by stop()
      std::cerr << "async_server: " << signal_name(sig) << ": stopping\n";
      stop();
    });
  }

  // Stops accepting, terminates the pool (its workers are killed: the jobs in flight fail at
  // once) and closes every connection; serve() joins the workers once run() has returned.
  // Any thread, any number of times.
  void stop() {
    asio::post(strand_, [this] {
      if (stopping_.exchange(true)) return;
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      signals_.cancel(ignored);
      workers_.terminate();
      std::lock_guard lock(mutex_);
      for (auto& [id, s] : sessions_) s->stop();
    });
  }

  void forget(const session* s) {
    std::lock_guard lock(mutex_);
    sessions_.erase(s);
  }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      // Each connection gets a strand of its own: its coroutine never runs on two threads at
      // once, while different connections run in parallel.
      auto [ec, socket] = co_await acceptor_.async_accept(
          asio::make_strand(ioc_),
          asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted || stopping_) co_return;
      if (ec) continue;  // e.g. the peer gave up, or out of descriptors for a moment
      auto s = std::make_shared<session>(*this, std::move(socket));
      {
        std::lock_guard lock(mutex_);
        sessions_.emplace(s.get(), s);
      }
      auto ex = s->get_executor();
      asio::co_spawn(ex, s->serve(), report_error{"connection"});
    }
  }

  asio::io_context& ioc_;
  coproc::pool& workers_;  // shared by every connection (any thread may submit)
  strand_type strand_;     // the acceptor, the signals
  tcp::acceptor acceptor_;
  asio::signal_set signals_;
  milliseconds deadline_;
  std::atomic<bool> stopping_ = false;
  std::mutex mutex_;  // sessions_: added on strand_, removed on each connection's strand
  std::map<const session*, std::shared_ptr<session>> sessions_;

  friend class session;
};

asio::awaitable<void> session::serve() {
  auto self = shared_from_this();  // alive until the coroutine ends
  try {
    co_await answer_requests();
  } catch (const std::exception& e) {
    std::cerr << "async_server: connection: " << e.what() << "\n";
  }
  close();
  owner_.forget(this);
}

// Reads request lines and answers them, one at a time, until the peer or the server ends it.
asio::awaitable<void> session::answer_requests() {
  std::string input;
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(socket_, asio::dynamic_buffer(input, 64 * 1024),
                                                   '\n', asio::as_tuple(asio::use_awaitable));
    if (ec) break;  // end of stream, a closed socket (shutdown), or a line too long
    std::string line = input.substr(0, n - 1);
    input.erase(0, n);
    if (!line.empty() && line.back() == '\r') line.pop_back();

    std::string answer;
    bool quit = false;
    if (split_words(line) == std::vector<std::string_view>{"quit"}) {
      answer = "quit -> bye";
      quit = true;
    } else {
      auto parsed = parse_request(line);
      if (auto* req = std::get_if<request>(&parsed)) {
        answer = co_await run(*req);
      } else {
        answer = line + " -> error " + std::get<std::string>(parsed);
      }
    }
    if (stopping_ || owner_.stopping()) break;  // going down: nobody will read the answer
    answer += '\n';
    auto [wec, written] =
        co_await asio::async_write(socket_, asio::buffer(answer), asio::as_tuple(asio::use_awaitable));
    if (wec) break;
    if (quit) {
      owner_.stop();
      break;
    }
  }
}

// Runs one job in the pool with its deadline and returns the answer line.
asio::awaitable<std::string> session::run(const request& req) {
  const milliseconds deadline = req.within.value_or(owner_.deadline());
  std::string head = std::string(req.kind->name);
  if (req.kind->takes_number) head += " " + std::to_string(req.arg);
  if (req.within) head += " within " + std::to_string(req.within->count());
  head += " -> ";

  const auto t0 = std::chrono::steady_clock::now();
  // The deadline is the job's own: the pool counts it from the moment a worker takes the job,
  // and past it kills that worker (SIGKILL), starts another, and fails the job with
  // errc::task_timed_out. (A pool deadline must be positive: `within 0` is the shortest one.)
  std::optional<coproc::async_result<std::string>> job;
  try {
    job.emplace(owner_.workers().apply_async_within(
        std::max<std::chrono::nanoseconds>(deadline, std::chrono::nanoseconds(1)), req.kind->run,
        req.arg));
  } catch (const std::exception& e) {  // e.g. "Pool not running": the server is stopping
    co_return head + "error " + e.what();
  }
  // Waiting for a job is an Asio operation: it completes on this connection's strand, and
  // the thread that ran the coroutine serves other connections meanwhile.
  auto [ec, result] = co_await job->async_get(asio::as_tuple(asio::use_awaitable));
  const auto ms =
      std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count();

  // What the kernel said of the job: for a job that ended normally, exit code 0 (its worker
  // lives on); for a job whose worker died (a crash, coproc::exit, the deadline), the dead
  // worker's exit status.
  const std::optional<coproc::exit_status> status = job->status();
  const auto exitcode = [&] { return " exitcode=" + (status ? std::to_string(status->exitcode) : std::string("?")); };
  std::string answer = head;
  if (!ec) {
    answer += "ok";
    if (!result.empty()) answer += " result=" + result;
    answer += exitcode();
  } else if (ec == coproc::errc::task_timed_out) {
    answer += "killed deadline=" + std::to_string(deadline.count()) + "ms" + exitcode();
  } else if (ec == coproc::errc::child_died) {
    if (status && status->signal)
      answer += "crashed signal=" + signal_name(*status->signal);
    else
      answer += status && status->exitcode == 0 ? "ok" : "exited";
    answer += exitcode();
  } else if (ec == coproc::errc::remote_error) {
    // The job threw: the exception came back and its worker lives on, so no process exited.
    // get() (the result is ready: it does not wait) throws it with its type and message.
    try {
      (void)job->get();
      answer += "raised (unknown)";
    } catch (const coproc::remote_error& e) {
      answer += "raised " + e.type_name() + ": " + e.message();
    } catch (const std::exception& e) {
      answer += "raised " + std::string(e.what());
    }
  } else {  // errc::pool_terminated (the server is stopping), or anything unexpected
    answer += "error " + ec.message();
  }
  answer += " ms=" + std::to_string(ms);
  co_return answer;
}

// ---------------------------------------------------------------------------------------
// Running the server.

struct server_options {
  std::uint16_t port = 0;
  unsigned threads = 2;
  milliseconds deadline = 2000ms;
  std::optional<int> processes;  // unset: cpu_count()
  coproc::start_method method = coproc::start_method::forkserver;
};

// Serves until stop(); `on_listening` runs once the port is bound.
template <class F>
int serve(const server_options& o, F on_listening) {
  // The pool first: its workers start now, before the io_context has threads (forkserver and
  // spawn would not mind them anyway: neither forks this program).
  coproc::pool workers({.processes = o.processes,
                        .initializer = jobs::worker_init,
                        .method = o.method});
  asio::io_context ioc;
  server srv(ioc, workers, o.port, o.deadline);
  srv.start();
  on_listening(srv);
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < o.threads; ++i) threads.emplace_back([&ioc] { ioc.run(); });
  ioc.run();  // returns once the server has stopped and every connection has ended
  for (auto& t : threads) t.join();
  // stop() terminated the pool: its workers are killed, and this reaps them (at once).
  workers.join();
  return 0;
}

// ---------------------------------------------------------------------------------------
// A small blocking client: one request, one answer.

class client {
 public:
  client(asio::io_context& ioc, const std::string& host, const std::string& port) : socket_(ioc) {
    tcp::resolver resolver(ioc);
    asio::connect(socket_, resolver.resolve(host, port));
  }

  void send(const std::string& line) { asio::write(socket_, asio::buffer(line + "\n")); }

  // The next answer line; nullopt at end of stream.
  std::optional<std::string> receive() {
    boost::system::error_code ec;
    const std::size_t n = asio::read_until(socket_, asio::dynamic_buffer(buffer_), '\n', ec);
    if (ec) return std::nullopt;
    std::string line = buffer_.substr(0, n - 1);
    buffer_.erase(0, n);
    return line;
  }

  std::optional<std::string> ask(const std::string& line) {
    send(line);
    return receive();
  }

 private:
  tcp::socket socket_;
  std::string buffer_;
};

int run_client(const std::string& host, const std::string& port) {
  asio::io_context ioc;
  client c(ioc, host, port);
  for (std::string line; std::getline(std::cin, line);) {
    auto answer = c.ask(line);
    if (!answer) {
      std::cerr << "async_server: the server closed the connection\n";
      return 1;
    }
    std::cout << *answer << std::endl;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// --demo: the server and a client in one program, for the tour.

bool contains(const std::optional<std::string>& s, std::string_view what) {
  return s && s->find(what) != std::string::npos;
}

int run_demo(server_options o) {
  o.port = 0;
  o.deadline = 500ms;
  // Two workers at least: the slow job holds one while the other connection is served.
  if (!o.processes) o.processes = std::max(2, coproc::cpu_count());
  std::promise<std::uint16_t> bound;
  auto port = bound.get_future();
  std::thread server_thread([&] {
    bool listening = false;
    try {
      serve(o, [&](server& s) {
        bound.set_value(s.port());
        listening = true;
      });
    } catch (...) {
      if (!listening) bound.set_exception(std::current_exception());
    }
  });
  std::uint16_t bound_port = 0;
  try {
    bound_port = port.get();
  } catch (const std::exception& e) {
    server_thread.join();
    std::cerr << "async_server: " << e.what() << "\n";
    return 1;
  }
  const std::string p = std::to_string(bound_port);
  std::cout << "demo: server on 127.0.0.1:" << p << ", " << o.threads << " thread(s), a pool of "
            << *o.processes << " " << coproc::to_string(o.method) << " worker(s), deadline "
            << o.deadline.count() << " ms\n";

  bool good = true;
  auto show = [&](const char* who, const std::optional<std::string>& answer, std::string_view want) {
    std::cout << who << (answer ? *answer : std::string("(connection closed)")) << std::endl;
    if (!contains(answer, want)) {
      std::cout << "demo: expected '" << want << "' in that answer\n";
      good = false;
    }
  };

  asio::io_context ioc;
  client slow(ioc, "127.0.0.1", p), fast(ioc, "127.0.0.1", p);
  // A job that overruns its deadline is in flight on one connection...
  std::cout << "[slow] > sleep 3000\n";
  slow.send("sleep 3000");
  // ...while the other connection is served.
  const std::pair<const char*, const char*> jobs[] = {
      {"fib 36", "ok result=14930352 exitcode=0"},
      {"crash", "crashed signal=SIGSEGV exitcode=-11"},
      {"exit 3", "exited exitcode=3"},
      {"throw", "raised std::runtime_error: the job failed"},
      {"fib 60 within 100", "killed deadline=100ms exitcode=-9"},
      {"sleep 20", "ok exitcode=0"},
      {"bogus", "error unknown job"},
  };
  for (auto [line, want] : jobs) {
    std::cout << "[fast] > " << line << "\n";
    show("[fast] < ", fast.ask(line), want);
  }
  show("[slow] < ", slow.receive(), "killed deadline=500ms exitcode=-9");
  std::cout << "[fast] > quit\n";
  show("[fast] < ", fast.ask("quit"), "bye");
  server_thread.join();
  std::cout << (good ? "demo: all answers as expected\n" : "demo: some answers were unexpected\n");
  return good ? 0 : 1;
}

// ---------------------------------------------------------------------------------------

[[noreturn]] void usage(const char* why) {
  std::cerr << "async_server: " << why << "\n"
            << "usage: async_server [PORT] [--threads N] [--deadline MS] [--processes N]\n"
            << "                    [--method forkserver|spawn]\n"
            << "       async_server --client HOST PORT\n"
            << "       async_server --demo [--threads N] [--processes N] [--method forkserver|spawn]\n";
  std::exit(2);
}

long number_arg(const char* s, long max, const char* what) {
  auto v = parse_number(s, max);
  if (!v) usage((std::string("bad ") + what + " '" + s + "'").c_str());
  return *v;
}

}  // namespace

int main(int argc, char** argv) {
  coproc::init(argc, argv);
  try {
    server_options o;
    bool demo = false;
    std::vector<std::string> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
      const auto& a = args[i];
      const bool has_value = i + 1 < args.size();
      if (a == "--client") {
        if (args.size() != i + 3) usage("--client takes HOST PORT");
        return run_client(args[i + 1], args[i + 2]);
      } else if (a == "--demo") {
        demo = true;
      } else if (a == "--threads" && has_value) {
        o.threads = static_cast<unsigned>(number_arg(args[++i].c_str(), 256, "thread count"));
        if (o.threads == 0) usage("--threads must be at least 1");
      } else if (a == "--deadline" && has_value) {
        o.deadline = milliseconds(number_arg(args[++i].c_str(), 86'400'000, "deadline"));
      } else if (a == "--processes" && has_value) {
        o.processes = static_cast<int>(number_arg(args[++i].c_str(), 1024, "process count"));
        if (*o.processes == 0) usage("--processes must be at least 1");
      } else if (a == "--method" && has_value) {
        // Not fork: the server runs threads (the io_context's, the pool's), and a fork copies
        // whatever locks they hold (docs/fork-policy.md).
        const std::string m = args[++i];
        if (m == "forkserver")
          o.method = coproc::start_method::forkserver;
        else if (m == "spawn")
          o.method = coproc::start_method::spawn;
        else
          usage(("--method is forkserver or spawn, not '" + m + "'").c_str());
      } else if (a == "-h" || a == "--help") {
        usage("an Asio server that runs each request in a pool of worker processes");
      } else if (!a.empty() && a[0] != '-') {
        o.port = static_cast<std::uint16_t>(number_arg(a.c_str(), 65535, "port"));
      } else {
        usage(("unknown argument '" + a + "'").c_str());
      }
    }
    if (demo) return run_demo(o);
    return serve(o, [&](server& s) {
      // The first line of stdout is the port, for scripts and tests; the rest goes to stderr.
      std::cout << s.port() << std::endl;
      std::cerr << "async_server: listening on 127.0.0.1:" << s.port() << " (" << o.threads
                << " thread(s), a pool of " << s.workers().size() << " "
                << coproc::to_string(o.method) << " worker(s), deadline " << s.deadline().count()
                << " ms); try: async_server --client 127.0.0.1 " << s.port() << "\n";
    });
  } catch (const std::exception& e) {
    std::cerr << "async_server: " << e.what() << "\n";
    return 1;
  }
}
