// start+join latency of a no-op child, one child at a time: coproc per start method against
// raw fork, raw posix_spawn, Boost.Process v2 and Python's multiprocessing.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include <coproc/coproc.hpp>

#include "bench.hpp"
#include "start_join.hpp"

extern char** environ;

namespace bench {

void noop_target() {}

}  // namespace bench

// spawn and forkserver run registered functions only.
namespace bench {
COPROC_TARGET(noop_target);
}  // namespace bench

namespace bench {

case_result coproc_start_join_loop(const case_env& env, coproc::start_method method) {
  case_result r;
  r.samples.reserve(static_cast<std::size_t>(env.iterations));
  for (int i = 0; i < env.warmup + env.iterations; ++i) {
    const double t0 = now_us();
    coproc::process p(coproc::process_options{.method = method}, noop_target);
    p.start();
    const int code = p.join();
    const double t1 = now_us();
    if (code != 0) return failed("coproc child ended with exit code " + std::to_string(code));
    if (i >= env.warmup) r.samples.push_back(t1 - t0);
  }
  return r;
}

case_result raw_fork_loop(const case_env& env) {
  case_result r;
  r.samples.reserve(static_cast<std::size_t>(env.iterations));
  for (int i = 0; i < env.warmup + env.iterations; ++i) {
    const double t0 = now_us();
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    if (pid < 0) throw_errno("fork");
    const int status = wait_exit(pid);
    const double t1 = now_us();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return failed("raw fork child failed");
    if (i >= env.warmup) r.samples.push_back(t1 - t0);
  }
  return r;
}

namespace {
case_result posix_spawn_program(const case_env& env, std::string path, std::vector<std::string> args) {
  case_result r;
  std::vector<char*> argv = {path.data()};
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (int i = 0; i < env.warmup + env.iterations; ++i) {
    const double t0 = now_us();
    pid_t pid = 0;
    const int err = ::posix_spawn(&pid, path.c_str(), nullptr, nullptr, argv.data(), environ);
    if (err != 0) return failed("posix_spawn " + path + ": " + std::strerror(err));
    const int status = wait_exit(pid);
    const double t1 = now_us();
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return failed("no-op program failed");
    if (i >= env.warmup) r.samples.push_back(t1 - t0);
  }
  return r;
}
}  // namespace

case_result posix_spawn_loop(const case_env& env) {
  return posix_spawn_program(env, env.opt.noop_path, {});
}

// What coproc's spawn cannot go under: a posix_spawn of this same program (its loader, its
// libraries, its static initialisers), which returns as soon as init() has run.
case_result posix_spawn_self_loop(const case_env& env) {
  return posix_spawn_program(env, "/proc/self/exe", {"--exit-at-once"});
}

namespace {

case_result coproc_fork(const case_env& env) {
  return coproc_start_join_loop(env, coproc::start_method::fork);
}
case_result coproc_spawn(const case_env& env) {
  return coproc_start_join_loop(env, coproc::start_method::spawn);
}
case_result coproc_forkserver(const case_env& env) {
  return coproc_start_join_loop(env, coproc::start_method::forkserver);
}
case_result python_fork(const case_env& env) {
  return run_python(env, {"start-join", "--method", "fork"});
}
case_result python_forkserver(const case_env& env) {
  return run_python(env, {"start-join", "--method", "forkserver"});
}
case_result python_spawn(const case_env& env) {
  return run_python(env, {"start-join", "--method", "spawn"});
}

}  // namespace

void add_start_join_groups(std::vector<group>& out, const options& opt) {
  const bool s = opt.short_mode;
  // Iteration counts give each case a fraction of a second to a few seconds on a 2-vCPU VM;
  // the slow Python methods get fewer iterations, not less time.
  const auto it = [s](int full, int brief) { return s ? brief : full; };
  const std::chrono::seconds dl(120);
  group g;
  g.id = "start_join";
  g.title = "start+join of a no-op child, one at a time";
  g.unit = "us";
  g.anchor = "raw fork+_exit+waitpid";
  // Many short rounds rather than a few long ones: a burst of other work on the machine then
  // spoils one pair of cases, not a seventh of the samples.
  g.rounds = s ? 3 : 11;
  g.variants = {
      {"coproc fork", role::subject, coproc_fork, 20, it(120, 60), dl},
      {"coproc spawn", role::subject, coproc_spawn, 5, it(40, 20), dl},
      {"coproc forkserver", role::subject, coproc_forkserver, 5, it(60, 40), dl},
      {"raw fork+_exit+waitpid", role::anchor, raw_fork_loop, 20, it(120, 60), dl},
      {"raw fork, co_await Asio stream_descriptor", role::info, asio_raw_fork_start_join, 20,
       it(120, 60), dl},
      {"raw posix_spawn(bench-noop)+waitpid", role::anchor, posix_spawn_loop, 10, it(60, 40),
       dl},
      {"raw posix_spawn(coproc-bench itself)+waitpid", role::anchor, posix_spawn_self_loop, 5,
       it(40, 20), dl},
      {"Boost.Process v2 (bench-noop, async_wait)", role::anchor, bp2_start_join, 10,
       it(60, 40), dl},
      {"Python multiprocessing fork", role::anchor, python_fork, 5, it(40, 20), dl},
      {"Python multiprocessing forkserver", role::anchor, python_forkserver, 5, it(25, 15), dl},
      {"Python multiprocessing spawn", role::anchor, python_spawn, 2, it(10, 6), dl},
  };
  out.push_back(std::move(g));
}

}  // namespace bench
