// The worker pool (issue 10): coproc::pool against the raw round trips it cannot beat and
// Python's Pool and ProcessPoolExecutor.
//
// - pool_apply: one blocking round trip of a trivial task, one worker; with the CPU time each
//   round trip costs (caller + worker) and the CPU an idle pool burns;
// - pool_map: map of 1,000,000 trivial tasks over cpu_count() workers, Python's chunking;
// - pool_replace: a task that kills its worker, until the exception, plus the next trivial
//   apply (served by the replacement), against one start+join of the same start method.
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ranges>
#include <string>
#include <thread>
#include <vector>

#include <coproc/coproc.hpp>

#include "bench.hpp"
#include "start_join.hpp"

namespace bench::pool_tasks {

// The trivial task of every group.
int id(int x) { return x; }

// CPU time (user + system) of the process that runs it, in microseconds: run in a worker, it
// says what the worker has used so far (its polling included).
std::int64_t cpu_us() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<std::int64_t>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000 +
         u.ru_utime.tv_usec + u.ru_stime.tv_usec;
}

// Kills the worker that runs it.
int crash() {
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();
}

COPROC_TARGET(id);
COPROC_TARGET(cpu_us);
COPROC_TARGET(crash);

}  // namespace bench::pool_tasks

namespace bench {
namespace {

using namespace std::chrono_literals;
namespace tasks = pool_tasks;

// The metrics of a round-trip loop: CPU per call (caller, worker, both) and what the two
// processes used over 200 ms of idleness after the last call.
void cpu_metrics(case_result& r, int calls, std::int64_t caller_us, std::int64_t worker_us,
                 std::int64_t idle_us) {
  const double n = calls;
  r.metrics.push_back({"cpu_us_per_call", static_cast<double>(caller_us + worker_us) / n});
  r.metrics.push_back({"caller_cpu_us_per_call", static_cast<double>(caller_us) / n});
  r.metrics.push_back({"worker_cpu_us_per_call", static_cast<double>(worker_us) / n});
  r.metrics.push_back({"idle_cpu_us_in_200ms", static_cast<double>(idle_us)});
}

// ---------------------------------------------------------------------------------------
// Raw anchors: two processes, a socketpair, 16 bytes each way. The child echoes; a message
// starting with 'c' asks for its CPU time instead (for the CPU figures, outside the timing).

constexpr std::size_t msg = 16;

// spin_us > 0: polls that long before blocking; yield: sched_yield() between polls, so that a
// peer the scheduler put on this same CPU gets to run (without it, a sender and a receiver
// that share a CPU each poll their whole spin before the other runs).
bool read16(int fd, char* buf, std::int64_t spin_us, bool yield = false) {
  std::size_t got = 0;
  if (spin_us > 0) {
    const double until = now_us() + static_cast<double>(spin_us);
    do {
      const ssize_t k = ::recv(fd, buf + got, msg - got, MSG_DONTWAIT);
      if (k > 0) {
        got += static_cast<std::size_t>(k);
        if (got == msg) return true;
        continue;
      }
      if (k == 0) return false;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
      if (yield) ::sched_yield();
    } while (now_us() < until);
  }
  while (got < msg) {
    const ssize_t k = ::recv(fd, buf + got, msg - got, 0);
    if (k > 0) {
      got += static_cast<std::size_t>(k);
    } else if (k == 0 || errno != EINTR) {
      return false;
    }
  }
  return true;
}

bool write16(int fd, const char* buf) {
  std::size_t put = 0;
  while (put < msg) {
    const ssize_t k = ::send(fd, buf + put, msg - put, MSG_NOSIGNAL);
    if (k > 0) {
      put += static_cast<std::size_t>(k);
    } else if (errno != EINTR) {
      return false;
    }
  }
  return true;
}

// spin_us > 0: both sides poll (non-blocking recv) that long after each message before they
// block, as coproc's caller and worker do; 0: plain blocking reads.
case_result raw_round_trip(const case_env& env, std::int64_t spin_us, bool yield = false) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) throw_errno("socketpair");
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    ::close(sv[0]);
    char buf[msg];
    bool served = false;
    while (read16(sv[1], buf, served ? spin_us : 0, yield)) {
      if (buf[0] == 'c') {
        const std::int64_t c = tasks::cpu_us();
        std::memcpy(buf + 8, &c, sizeof c);
      }
      if (!write16(sv[1], buf)) break;
      served = true;
    }
    ::_exit(0);
  }
  ::close(sv[1]);
  const int fd = sv[0];
  char buf[msg] = {};
  const auto child_cpu = [&]() -> std::int64_t {
    char q[msg] = {'c'};
    if (!write16(fd, q) || !read16(fd, q, spin_us, yield)) return -1;
    std::int64_t c;
    std::memcpy(&c, q + 8, sizeof c);
    return c;
  };
  case_result r;
  const int n = env.warmup + env.iterations;
  r.samples.reserve(static_cast<std::size_t>(env.iterations));
  std::int64_t caller0 = 0, worker0 = 0;
  for (int i = 0; i < n; ++i) {
    if (i == env.warmup) {
      worker0 = child_cpu();
      caller0 = tasks::cpu_us();
    }
    buf[0] = 'e';
    std::memcpy(buf + 4, &i, sizeof i);
    const double t0 = now_us();
    if (!write16(fd, buf) || !read16(fd, buf, spin_us, yield)) return failed("raw child went away");
    const double t1 = now_us();
    int back;
    std::memcpy(&back, buf + 4, sizeof back);
    if (back != i) return failed("wrong echo");
    if (i >= env.warmup) r.samples.push_back(t1 - t0);
  }
  const std::int64_t caller1 = tasks::cpu_us();
  const std::int64_t worker1 = child_cpu();
  std::this_thread::sleep_for(200ms);
  const std::int64_t caller2 = tasks::cpu_us();
  const std::int64_t worker2 = child_cpu();
  ::close(fd);
  const int status = wait_exit(pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return failed("raw child failed");
  cpu_metrics(r, env.iterations, caller1 - caller0, worker1 - worker0,
              (caller2 - caller1) + (worker2 - worker1));
  return r;
}

case_result raw_blocking(const case_env& env) { return raw_round_trip(env, 0); }
case_result raw_polling(const case_env& env) { return raw_round_trip(env, 50); }
case_result raw_polling_yield(const case_env& env) { return raw_round_trip(env, 50, true); }

// ---------------------------------------------------------------------------------------
// coproc pool(1).apply(id, i), one worker; spin unset: the pool's default.

case_result coproc_apply(const case_env& env, std::optional<std::chrono::microseconds> spin) {
  coproc::pool p({.processes = 1, .method = coproc::start_method::fork, .spin = spin});
  case_result r;
  const int n = env.warmup + env.iterations;
  r.samples.reserve(static_cast<std::size_t>(env.iterations));
  std::int64_t caller0 = 0, worker0 = 0;
  for (int i = 0; i < n; ++i) {
    if (i == env.warmup) {
      worker0 = p.apply(tasks::cpu_us);
      caller0 = tasks::cpu_us();
    }
    const double t0 = now_us();
    const int got = p.apply(tasks::id, i);
    const double t1 = now_us();
    if (got != i) return failed("wrong result");
    if (i >= env.warmup) r.samples.push_back(t1 - t0);
  }
  const std::int64_t caller1 = tasks::cpu_us();
  const std::int64_t worker1 = p.apply(tasks::cpu_us);
  // Idle: the worker and the pool's thread should sleep (the worker polls at most `spin`
  // after the reply above, which this figure includes).
  std::this_thread::sleep_for(200ms);
  const std::int64_t caller2 = tasks::cpu_us();
  const std::int64_t worker2 = p.apply(tasks::cpu_us);
  cpu_metrics(r, env.iterations, caller1 - caller0, worker1 - worker0,
              (caller2 - caller1) + (worker2 - worker1));
  p.close();
  p.join();
  return r;
}

case_result coproc_apply_default(const case_env& env) { return coproc_apply(env, std::nullopt); }
case_result coproc_apply_spin0(const case_env& env) { return coproc_apply(env, 0us); }
case_result coproc_apply_spin50(const case_env& env) { return coproc_apply(env, 50us); }

case_result python_pool_apply_cpu(const case_env& env) {
  return run_python(env, {"pool-apply", "--cpu"});
}
case_result python_executor_submit(const case_env& env) {
  return run_python(env, {"executor-submit", "--cpu"});
}

// ---------------------------------------------------------------------------------------
// map of 1,000,000 trivial tasks over cpu_count() workers, warm pool; tasks per second.

constexpr int map_n = 1'000'000;

case_result coproc_map(const case_env& env, bool unordered) {
  coproc::pool p({.processes = coproc::cpu_count(), .method = coproc::start_method::fork});
  case_result r;
  const auto inputs = std::views::iota(0, map_n);
  for (int rep = 0; rep < env.warmup + env.iterations; ++rep) {
    const double t0 = now_us();
    long long sum = 0;
    std::size_t count = 0;
    if (unordered) {
      for (int v : p.imap_unordered(tasks::id, inputs, 1000)) {
        sum += v;
        ++count;
      }
    } else {
      const std::vector<int> out = p.map(tasks::id, inputs);
      count = out.size();
      for (int v : out) sum += v;
    }
    const double t1 = now_us();
    if (count != static_cast<std::size_t>(map_n) ||
        sum != static_cast<long long>(map_n) * (map_n - 1) / 2)
      return failed("wrong results");
    if (rep >= env.warmup) r.samples.push_back(map_n / ((t1 - t0) / 1e6));
  }
  p.close();
  p.join();
  r.metrics.push_back({"workers", static_cast<double>(p.size())});
  return r;
}

case_result coproc_map_default(const case_env& env) { return coproc_map(env, false); }
case_result coproc_imap_unordered(const case_env& env) { return coproc_map(env, true); }
case_result python_pool_map(const case_env& env) {
  return run_python(env, {"pool-map", "--count", std::to_string(map_n)});
}
case_result python_pool_imap_unordered(const case_env& env) {
  return run_python(env, {"pool-map", "--count", std::to_string(map_n), "--chunksize", "1000",
                          "--unordered"});
}

// ---------------------------------------------------------------------------------------
// Replacing a crashed worker: apply(crash) until the exception, then apply(id) (the
// replacement's first task), timed together.

case_result coproc_replace(const case_env& env, coproc::start_method m) {
  coproc::pool p({.processes = 1, .method = m});
  (void)p.apply(tasks::id, 0);  // the first worker is up
  case_result r;
  std::vector<double> died_us, next_us;
  for (int i = 0; i < env.warmup + env.iterations; ++i) {
    const double t0 = now_us();
    bool threw = false;
    try {
      (void)p.apply(tasks::crash);
    } catch (const coproc::process_error&) {
      threw = true;
    }
    const double t1 = now_us();
    const int got = p.apply(tasks::id, i);
    const double t2 = now_us();
    if (!threw) return failed("apply(crash) did not throw");
    if (got != i) return failed("wrong result");
    if (i >= env.warmup) {
      r.samples.push_back(t2 - t0);
      died_us.push_back(t1 - t0);
      next_us.push_back(t2 - t1);
    }
  }
  // The two parts, as medians of this case (the table shows their median over rounds).
  const auto median = [](std::vector<double> v) {
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
    return v[v.size() / 2];
  };
  r.metrics.push_back({"crash_to_exception_us", median(died_us)});
  r.metrics.push_back({"next_apply_us", median(next_us)});
  p.close();
  p.join();
  return r;
}

case_result coproc_replace_fork(const case_env& env) {
  return coproc_replace(env, coproc::start_method::fork);
}
case_result coproc_replace_spawn(const case_env& env) {
  return coproc_replace(env, coproc::start_method::spawn);
}
case_result coproc_fork_start_join(const case_env& env) {
  return coproc_start_join_loop(env, coproc::start_method::fork);
}
case_result coproc_spawn_start_join(const case_env& env) {
  return coproc_start_join_loop(env, coproc::start_method::spawn);
}

}  // namespace

void add_pool_groups(std::vector<group>& out, const options& opt) {
  const bool s = opt.short_mode;
  const std::chrono::seconds dl(120);
  {
    group g;
    g.id = "pool_apply";
    g.title = "pool: blocking apply round trip of int id(int), one worker";
    g.unit = "us";
    g.anchor = "raw blocking round trip (socketpair, 16 B)";
    g.rounds = s ? 3 : 9;
    const int it = s ? 1000 : 3000;
    g.variants = {
        {"coproc pool(1).apply, default spin", role::subject, coproc_apply_default, 200, it, dl},
        {"coproc pool(1).apply, spin 0", role::subject, coproc_apply_spin0, 200, it, dl},
        {"coproc pool(1).apply, spin 50 us", role::info, coproc_apply_spin50, 200, it, dl},
        {"raw blocking round trip (socketpair, 16 B)", role::anchor, raw_blocking, 200, it, dl},
        {"raw round trip, both sides poll 50 us", role::anchor, raw_polling, 200, it, dl},
        // What coproc's polling could do if it yielded the CPU between polls.
        {"raw round trip, poll 50 us + sched_yield", role::info, raw_polling_yield, 200, it, dl},
        {"Python Pool(1).apply_async().get()", role::anchor, python_pool_apply_cpu, 200, it, dl},
        {"Python ProcessPoolExecutor(1).submit().result()", role::anchor, python_executor_submit,
         200, s ? 500 : 1500, dl},
    };
    g.note = "CPU us/call: the caller's getrusage(RUSAGE_SELF) (every thread) plus the worker's, "
             "over the timed calls; idle CPU: both processes over 200 ms after the last call";
    out.push_back(std::move(g));
  }
  {
    group g;
    g.id = "pool_map";
    g.title = "pool: map of 1,000,000 x int id(int) over cpu_count() workers (warm pool)";
    g.unit = "tasks/s";
    g.higher_is_better = true;
    g.anchor = "Python Pool(cpu_count()).map, default chunks";
    g.rounds = s ? 3 : 5;
    const int it = s ? 2 : 3;
    g.variants = {
        {"coproc pool.map, default chunks", role::subject, coproc_map_default, 1, it, dl},
        {"coproc imap_unordered, chunksize 1000", role::info, coproc_imap_unordered, 1, it, dl},
        {"Python Pool(cpu_count()).map, default chunks", role::anchor, python_pool_map, 1, it, dl},
        {"Python imap_unordered, chunksize 1000", role::info, python_pool_imap_unordered, 1, it,
         dl},
    };
    out.push_back(std::move(g));
  }
  const struct {
    const char* label;
    long param;
    case_fn replace, start_join;
    int warmup, iterations;
  } methods[] = {
      {"fork", 0, coproc_replace_fork, coproc_fork_start_join, 10, s ? 60 : 150},
      {"spawn", 1, coproc_replace_spawn, coproc_spawn_start_join, 3, s ? 15 : 30},
  };
  for (const auto& m : methods) {
    group g;
    g.id = "pool_replace";
    g.title = std::string("pool: a worker killed by its task, until the exception, plus the "
                          "next apply (") + m.label + ")";
    g.param_label = m.label;
    g.param = m.param;
    g.unit = "us";
    g.anchor = std::string("coproc ") + m.label + " start+join (no-op)";
    g.rounds = s ? 3 : 7;
    g.variants = {
        {std::string("coproc pool(1): apply(crash) + apply(id)"), role::subject, m.replace,
         m.warmup, m.iterations, dl},
        {g.anchor, role::anchor, m.start_join, m.warmup, m.iterations, dl},
    };
    out.push_back(std::move(g));
  }
}

}  // namespace bench
