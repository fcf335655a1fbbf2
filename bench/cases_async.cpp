// The awaitable side: N children alive at once awaited on one io_context thread, the parent's
// memory per awaited child, and the wake-up latency from a child's last instruction to the
// awaiting coroutine. Each against the raw pidfd loop a C programmer would write.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <exception>
#include <string>
#include <system_error>
#include <functional>
#include <vector>

#include <coproc/coproc.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>

#include "bench.hpp"

namespace bench {
namespace {

namespace asio = boost::asio;

// Descriptors a case needs besides its children's: standard streams, the log, the result
// pipe, the go pipe, the reactor's epoll and eventfd descriptors.
constexpr std::size_t fd_slack = 64;

// Room for N awaited children. A raw loop holds one descriptor per child; coproc is given
// room for two (a pidfd and, should it keep one, a duplicate for the reactor), or what the
// hard limit allows. Running out is reported with the limit, never hidden.
std::size_t room_for_children(std::size_t n, std::size_t per_child) {
  return raise_nofile(per_child * n + fd_slack);
}

case_result out_of_descriptors(const std::system_error& e, std::size_t limit, std::size_t n) {
  return failed(std::string(e.what()) + " while starting " + std::to_string(n) +
                " children with RLIMIT_NOFILE at " + std::to_string(limit));
}

// glibc 2.36's <sys/pidfd.h> lacks extern "C" and its waitid() takes no rusage: go direct.
int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u)); }
constexpr int p_pidfd = 3;  // P_PIDFD, Linux 5.4
int waitid_pidfd(int pidfd, siginfo_t* info, rusage* usage) {
  // Same information as coproc keeps for status(): the exit and the rusage.
  return static_cast<int>(::syscall(SYS_waitid, p_pidfd, pidfd, info, WEXITED, usage));
}

// The waiting process's own minor page faults: after a fork, the first write to each of its
// pages takes one, which on this kind of VM costs more than most system calls.
long own_page_faults() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

long voluntary_switches() {
  rusage u{};
  ::getrusage(RUSAGE_THREAD, &u);
  return u.ru_nvcsw;
}

// Every child of a fan-out stays alive until the parent closes the write end of the "go"
// pipe: then all N see end-of-file at once and exit, so all N are alive and awaited together.
void wait_for_go(int go_r, int go_w) {
  ::close(go_w);  // otherwise our own copy would keep the pipe open forever
  char c;
  while (::read(go_r, &c, 1) == -1 && errno == EINTR) {
  }
}

struct go_pipe {
  int r = -1, w = -1;
  go_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) == -1) throw_errno("pipe2");
    r = fds[0];
    w = fds[1];
  }
  void release() {
    if (w >= 0) ::close(w);
    w = -1;
  }
  ~go_pipe() {
    release();
    ::close(r);
  }
  go_pipe(const go_pipe&) = delete;
  go_pipe& operator=(const go_pipe&) = delete;
};

// ---------------------------------------------------------------------------------------
// N children awaited at once.

// What one fan-out repetition reads, at the same points in both variants: before the first
// start, after the last start, and around the drain.
struct fanout_meter {
  std::size_t heap0 = heap_in_use(), heap1 = 0;
  long faults0 = own_page_faults(), faults1 = 0;
  double t0 = now_us(), t1 = 0, t2 = 0;
  long switches0 = 0, switches1 = 0;

  void started() {
    t1 = now_us();
    heap1 = heap_in_use();
  }
  void draining() { switches0 = voluntary_switches(); }
  void drained() {
    switches1 = voluntary_switches();
    t2 = now_us();
    faults1 = own_page_faults();
  }
  // The sample (us per child) and the metrics; `per_exit` counts what woke the waiter.
  void record(case_result& r, std::size_t n, const char* per_exit_name, double per_exit,
              const char* heap_name) const {
    const double dn = static_cast<double>(n);
    r.samples.push_back((t2 - t0) / dn);
    r.metrics.emplace_back("start_us_per_child", (t1 - t0) / dn);
    r.metrics.emplace_back("drain_us_per_child", (t2 - t1) / dn);
    r.metrics.emplace_back(per_exit_name, per_exit / dn);
    r.metrics.emplace_back("parent_faults_per_child", static_cast<double>(faults1 - faults0) / dn);
    r.metrics.emplace_back("wakeups_per_exit", static_cast<double>(switches1 - switches0) / dn);
    r.metrics.emplace_back(heap_name, (static_cast<double>(heap1) - static_cast<double>(heap0)) / dn);
  }
};

asio::awaitable<void> start_and_await(coproc::process& p, long& exited_ok) {
  p.start();
  const int code = co_await p.async_join(asio::use_awaitable);
  if (code == 0) ++exited_ok;
}

// A forkserver child waits for the go on a connection handed to it (its raw descriptors are
// not inherited): end of stream is the go.
void wait_for_go_connection(coproc::connection& go) {
  try {
    (void)go.recv_bytes();
  } catch (const std::exception&) {
  }
}
COPROC_TARGET(wait_for_go_connection);

case_result coproc_fanout_with(const case_env& env, coproc::start_method method) {
  const bool forkserver = method == coproc::start_method::forkserver;
  const auto n = static_cast<std::size_t>(env.param);
  // fork: a pidfd per child; forkserver: a pidfd and a status socket (and the server's copy).
  const std::size_t limit = room_for_children(n, forkserver ? 3 : 2);
  case_result r;
  for (int rep = 0; rep < env.warmup + env.iterations; ++rep) {
    go_pipe go;
    auto [go_r, go_w] = coproc::pipe(false);
    asio::io_context ctx(1);
    // The raw loop makes its epoll set before the clock starts; an io_context makes its reactor
    // (epoll, eventfd, timerfd) on first use. Make it here too, so both start equal.
    { asio::posix::stream_descriptor warm_up(ctx); }
    long ok = 0;
    std::exception_ptr failure;
    std::vector<coproc::process> procs;
    fanout_meter meter;
    procs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      if (forkserver)
        procs.emplace_back(coproc::process_options{.method = method}, wait_for_go_connection,
                           std::ref(go_r));
      else
        procs.emplace_back(coproc::process_options{.method = method}, wait_for_go, go.r, go.w);
      asio::co_spawn(ctx, start_and_await(procs.back(), ok), [&](std::exception_ptr e) {
        if (e && !failure) failure = e;
      });
    }
    ctx.poll();  // every coroutine starts its child and suspends in async_join
    meter.started();
    go.release();
    go_w.close();
    meter.draining();
    const std::size_t handlers = ctx.run();
    meter.drained();
    if (failure) {
      try {
        std::rethrow_exception(failure);
      } catch (const std::system_error& e) {
        if (e.code().value() == EMFILE) return out_of_descriptors(e, limit, n);
        throw;
      }
    }
    if (static_cast<std::size_t>(ok) != n)
      return failed(std::to_string(n - static_cast<std::size_t>(ok)) + " children failed");
    if (rep < env.warmup) continue;
    meter.record(r, n, "handlers_per_exit", static_cast<double>(handlers),
                 "heap_bytes_per_child_incl_coroutine");
  }
  return r;
}

case_result coproc_fanout(const case_env& env) {
  return coproc_fanout_with(env, coproc::start_method::fork);
}
case_result coproc_forkserver_fanout(const case_env& env) {
  return coproc_fanout_with(env, coproc::start_method::forkserver);
}

// The anchor: fork + pidfd_open + one epoll set, reaped with waitid(P_PIDFD).
struct raw_children {
  int epfd = -1;
  std::size_t live = 0;
  raw_children() {
    epfd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd == -1) throw_errno("epoll_create1");
  }
  ~raw_children() { ::close(epfd); }
  raw_children(const raw_children&) = delete;
  raw_children& operator=(const raw_children&) = delete;

  void start(const go_pipe& go) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      wait_for_go(go.r, go.w);
      ::_exit(0);
    }
    if (pid < 0) throw_errno("fork");
    const int fd = pidfd_open(pid);
    if (fd < 0) throw_errno("pidfd_open");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) throw_errno("epoll_ctl");
    ++live;
  }

  // Reaps every child; returns how many epoll_wait calls it took, or -1 if a child failed.
  long drain() {
    long calls = 0;
    bool all_ok = true;
    epoll_event events[256];
    while (live > 0) {
      const int k = ::epoll_wait(epfd, events, 256, -1);
      ++calls;
      if (k == -1) {
        if (errno == EINTR) continue;
        throw_errno("epoll_wait");
      }
      for (int i = 0; i < k; ++i) {
        const int fd = events[i].data.fd;
        siginfo_t info{};
        rusage usage{};
        if (waitid_pidfd(fd, &info, &usage) == -1) throw_errno("waitid");
        all_ok = all_ok && info.si_code == CLD_EXITED && info.si_status == 0;
        // Deregister before closing: forked siblings hold copies of this pidfd, and epoll
        // watches the open file, not the descriptor.
        ::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        --live;
      }
    }
    return all_ok ? calls : -1;
  }
};

case_result raw_fanout(const case_env& env) {
  const auto n = static_cast<std::size_t>(env.param);
  (void)room_for_children(n, 1);
  case_result r;
  for (int rep = 0; rep < env.warmup + env.iterations; ++rep) {
    go_pipe go;
    raw_children kids;
    fanout_meter meter;
    for (std::size_t i = 0; i < n; ++i) kids.start(go);
    meter.started();
    go.release();
    meter.draining();
    const long calls = kids.drain();
    meter.drained();
    if (calls < 0) return failed("a child did not exit with 0");
    if (rep < env.warmup) continue;
    meter.record(r, n, "epoll_waits_per_exit", static_cast<double>(calls), "heap_bytes_per_child");
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// Parent memory per awaited child. One measurement per case child: a fresh process, whose
// growth is not hidden by memory that malloc kept from an earlier repetition.

case_result coproc_memory(const case_env& env) {
  const auto n = static_cast<std::size_t>(env.param);
  const std::size_t limit = room_for_children(n, 2);
  case_result r;
  for (int rep = 0; rep < env.warmup + env.iterations; ++rep) {
    go_pipe go;
    asio::io_context ctx(1);
    long ok = 0;
    const std::size_t heap0 = heap_in_use();
    const std::size_t rss0 = resident_bytes();
    std::vector<coproc::process> procs;
    procs.reserve(n);
    try {
      for (std::size_t i = 0; i < n; ++i) {
        auto& p = procs.emplace_back(wait_for_go, go.r, go.w);
        p.start();
        // The lightest handler that still runs on our io_context: a callback bound to it.
        p.async_join(asio::bind_executor(ctx, [&ok](boost::system::error_code ec, int code) {
          if (!ec && code == 0) ++ok;
        }));
      }
    } catch (const std::system_error& e) {
      if (e.code().value() == EMFILE) return out_of_descriptors(e, limit, n);
      throw;
    }
    const std::size_t heap1 = heap_in_use();
    const std::size_t rss1 = resident_bytes();
    go.release();
    ctx.run();
    if (static_cast<std::size_t>(ok) != n)
      return failed(std::to_string(n - static_cast<std::size_t>(ok)) + " children failed");
    if (rep < env.warmup) continue;
    const double dn = static_cast<double>(n);
    r.samples.push_back((static_cast<double>(rss1) - static_cast<double>(rss0)) / dn);
    r.metrics.emplace_back("heap_bytes_per_child",
                           (static_cast<double>(heap1) - static_cast<double>(heap0)) / dn);
  }
  return r;
}

case_result raw_memory(const case_env& env) {
  const auto n = static_cast<std::size_t>(env.param);
  (void)room_for_children(n, 1);
  case_result r;
  for (int rep = 0; rep < env.warmup + env.iterations; ++rep) {
    go_pipe go;
    raw_children kids;
    const std::size_t heap0 = heap_in_use();
    const std::size_t rss0 = resident_bytes();
    for (std::size_t i = 0; i < n; ++i) kids.start(go);
    const std::size_t heap1 = heap_in_use();
    const std::size_t rss1 = resident_bytes();
    go.release();
    if (kids.drain() < 0) return failed("a child did not exit with 0");
    if (rep < env.warmup) continue;
    const double dn = static_cast<double>(n);
    r.samples.push_back((static_cast<double>(rss1) - static_cast<double>(rss0)) / dn);
    r.metrics.emplace_back("heap_bytes_per_child",
                           (static_cast<double>(heap1) - static_cast<double>(heap0)) / dn);
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// Wake-up latency: the child stamps CLOCK_MONOTONIC into a shared page as its last act before
// _exit; the waiter stamps again the moment it resumes. The child first sleeps long enough
// for the parent to be asleep in its wait, which is the case being measured.

constexpr long child_delay_ns = 2'000'000;

void sleep_then_stamp(shared_stamp* stamp) {
  timespec d{0, child_delay_ns};
  while (::nanosleep(&d, &d) == -1 && errno == EINTR) {
  }
  stamp->t_us = now_us();
}

[[noreturn]] void stamp_and_exit(shared_stamp* stamp) {
  sleep_then_stamp(stamp);
  ::_exit(0);
}

asio::awaitable<void> start_await_stamp(coproc::process& p, double& resumed, int& code) {
  p.start();
  code = co_await p.async_join(asio::use_awaitable);
  resumed = now_us();
}

case_result coproc_wakeup_impl(const case_env& env, void (*target)(shared_stamp*)) {
  shared_stamp* stamp = map_shared_stamp();
  asio::io_context ctx(1);
  case_result r;
  for (int i = 0; i < env.warmup + env.iterations; ++i) {
    stamp->t_us = 0;
    coproc::process p(target, stamp);
    double resumed = 0;
    int code = -1;
    std::exception_ptr failure;
    asio::co_spawn(ctx, start_await_stamp(p, resumed, code),
                   [&](std::exception_ptr e) { failure = e; });
    ctx.run();
    ctx.restart();
    if (failure) std::rethrow_exception(failure);
    if (code != 0) return failed("child ended with " + std::to_string(code));
    if (i >= env.warmup) r.samples.push_back(resumed - stamp->t_us);
  }
  unmap_shared_stamp(stamp);
  return r;
}

case_result coproc_wakeup(const case_env& env) { return coproc_wakeup_impl(env, stamp_and_exit); }
case_result coproc_wakeup_return(const case_env& env) {
  return coproc_wakeup_impl(env, sleep_then_stamp);
}

// reap_first: the waiter reaps the child (waitid with rusage) before it counts as resumed, as
// any wait that hands back the exit status must (async_join does).
template <class Wait>
case_result raw_wakeup_impl(const case_env& env, Wait wait_ready, bool reap_first = false) {
  shared_stamp* stamp = map_shared_stamp();
  case_result r;
  for (int i = 0; i < env.warmup + env.iterations; ++i) {
    stamp->t_us = 0;
    const pid_t pid = ::fork();
    if (pid == 0) stamp_and_exit(stamp);
    if (pid < 0) throw_errno("fork");
    const int fd = pidfd_open(pid);
    if (fd < 0) throw_errno("pidfd_open");
    wait_ready(fd);
    double resumed = reap_first ? 0 : now_us();
    siginfo_t info{};
    rusage usage{};
    if (waitid_pidfd(fd, &info, &usage) == -1) throw_errno("waitid");
    if (reap_first) resumed = now_us();
    ::close(fd);
    if (i >= env.warmup) r.samples.push_back(resumed - stamp->t_us);
  }
  unmap_shared_stamp(stamp);
  return r;
}

void poll_ready(int fd) {
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, -1) == -1)
    if (errno != EINTR) throw_errno("poll");
}

case_result raw_poll_wakeup(const case_env& env) { return raw_wakeup_impl(env, poll_ready); }
case_result raw_poll_reap_wakeup(const case_env& env) { return raw_wakeup_impl(env, poll_ready, true); }

case_result raw_epoll_wakeup(const case_env& env) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  if (ep == -1) throw_errno("epoll_create1");
  auto r = raw_wakeup_impl(env, [ep](int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) throw_errno("epoll_ctl");
    epoll_event out{};
    while (::epoll_wait(ep, &out, 1, -1) == -1)
      if (errno != EINTR) throw_errno("epoll_wait");
    ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
  });
  ::close(ep);
  return r;
}

// ---------------------------------------------------------------------------------------
// The floor of any Asio design: a raw fork whose pidfd a coroutine awaits through Asio's
// stream_descriptor. What coproc adds beyond it is coproc's own cost, not Asio's.

// Forks a child running `child` (which must not return), awaits its pidfd through the reactor,
// stamps the moment the coroutine resumes, then reaps.
asio::awaitable<void> fork_and_await(void (*child)(shared_stamp*), shared_stamp* stamp,
                                     double& resumed) {
  const pid_t pid = ::fork();
  if (pid == 0) child(stamp);
  if (pid < 0) throw_errno("fork");
  const int fd = pidfd_open(pid);
  if (fd < 0) throw_errno("pidfd_open");
  asio::posix::stream_descriptor sentinel(co_await asio::this_coro::executor, fd);
  co_await sentinel.async_wait(asio::posix::stream_descriptor::wait_read, asio::use_awaitable);
  resumed = now_us();
  siginfo_t info{};
  rusage usage{};
  if (waitid_pidfd(fd, &info, &usage) == -1) throw_errno("waitid");
}

[[noreturn]] void exit_at_once(shared_stamp*) { ::_exit(0); }

template <void (*Child)(shared_stamp*), bool Wakeup>
case_result asio_raw_fork_impl(const case_env& env) {
  shared_stamp* stamp = map_shared_stamp();
  asio::io_context ctx(1);
  case_result r;
  for (int i = 0; i < env.warmup + env.iterations; ++i) {
    stamp->t_us = 0;
    double resumed = 0;
    std::exception_ptr failure;
    const double t0 = now_us();
    asio::co_spawn(ctx, fork_and_await(Child, stamp, resumed),
                   [&](std::exception_ptr e) { failure = e; });
    ctx.run();
    ctx.restart();
    const double t1 = now_us();
    if (failure) std::rethrow_exception(failure);
    if (i >= env.warmup) r.samples.push_back(Wakeup ? resumed - stamp->t_us : t1 - t0);
  }
  unmap_shared_stamp(stamp);
  return r;
}

}  // namespace

case_result asio_raw_fork_start_join(const case_env& env) {
  return asio_raw_fork_impl<exit_at_once, false>(env);
}

void add_async_groups(std::vector<group>& out, const options& opt) {
  const bool s = opt.short_mode;
  // Repetitions per case: enough that the small N take a measurable time.
  struct fan {
    long n;
    int warmup, reps, rounds;
    std::chrono::seconds deadline;
  };
  const std::vector<fan> fans = {
      {1, 20, s ? 100 : 200, s ? 3 : 7, std::chrono::seconds(60)},
      {100, 1, s ? 5 : 7, s ? 3 : 7, std::chrono::seconds(60)},
      {1000, 0, s ? 1 : 2, s ? 2 : 5, std::chrono::seconds(120)},
      {10000, 0, 1, 3, std::chrono::seconds(300)},
  };
  for (const auto& f : fans) {
    group g;
    g.id = "fanout";
    g.title = "N children alive at once, all awaited on one thread: cost per child";
    g.param = f.n;
    g.param_label = "N=" + std::to_string(g.param);
    g.unit = "us/child";
    g.anchor = "raw fork+pidfd_open+epoll loop";
    g.rounds = f.rounds;
    if (s && f.n > 1000) g.skip = "short mode; the default run measures it";
    g.variants = {
        {"coproc start + co_await async_join", role::subject, coproc_fanout, f.warmup, f.reps,
         f.deadline},
        {"coproc forkserver start + co_await async_join", role::subject,
         coproc_forkserver_fanout, f.warmup, f.reps, f.deadline},
        {"raw fork+pidfd_open+epoll loop", role::anchor, raw_fanout, f.warmup, f.reps,
         f.deadline},
    };
    out.push_back(std::move(g));
  }

  {
    group g;
    g.id = "memory";
    g.title = "parent memory per awaited child (RSS growth; heap growth below)";
    g.param = s ? 1000 : 10000;
    g.param_label = "N=" + std::to_string(g.param);
    if (s) g.note = "short mode measures N=1000; the default run measures N=10000";
    g.unit = "bytes/child";
    g.anchor = "raw fork+pidfd_open+epoll";
    // The figure hardly moves between rounds: it counts bytes, not time.
    g.rounds = s ? 1 : 2;
    const std::chrono::seconds dl(300);
    g.variants = {
        {"coproc async_join, callback handler", role::subject, coproc_memory, 0, 1, dl},
        {"raw fork+pidfd_open+epoll", role::anchor, raw_memory, 0, 1, dl},
    };
    out.push_back(std::move(g));
  }

  {
    group g;
    g.id = "wakeup";
    g.title = "wake-up latency: child's last instruction -> waiter resumes";
    g.unit = "us";
    g.anchor = "raw poll() on a pidfd";
    g.rounds = s ? 3 : 9;
    const int it = s ? 40 : 100;
    const std::chrono::seconds dl(60);
    g.variants = {
        {"coproc co_await async_join", role::subject, coproc_wakeup, 5, it, dl},
        {"raw poll() on a pidfd", role::anchor, raw_poll_wakeup, 5, it, dl},
        {"raw epoll_wait() on a pidfd", role::info, raw_epoll_wakeup, 5, it, dl},
        {"raw poll() on a pidfd, then waitid", role::info, raw_poll_reap_wakeup, 5, it, dl},
        {"raw fork, co_await Asio stream_descriptor", role::info,
         asio_raw_fork_impl<stamp_and_exit, true>, 5, it, dl},
        {"coproc co_await, target returns normally", role::info,
         coproc_wakeup_return, 5, it, dl},
    };
    out.push_back(std::move(g));
  }
}

}  // namespace bench
