// coproc-probe: one loop at a time, with nothing else in the process, for `perf stat` and
// `perf record` (the harness runs many variants in one program, which a profile cannot tell
// apart). docs/performance.md uses it to show where coproc's time goes.
//
//   coproc-probe start-join coproc|raw [count]     start+join of a no-op child, `count` times
//   coproc-probe live-children coproc|raw K [count]  the same while K other children are alive
//                                                    and awaited (coproc: async_join pending)
//   coproc-probe fanout coproc|raw N [reps]        the harness's fan-out group at one N: N children
//                                                    started (coproc: each awaited by a coroutine;
//                                                    raw: fork+pidfd_open+epoll), then all released
//                                                    and reaped; prints us/child for the starts and
//                                                    in all, and the parent's page faults/child.
//       Two knobs make the raw loop carry one of coproc's costs at a time, to tell them apart:
//       PROBE_BALLAST=B  the parent mallocs and touches B bytes per child as it starts it (the
//                        bookkeeping every later fork copies the page tables of);
//       PROBE_CLOSE=1    each child closes its siblings' pidfds with one close_range before
//                        it waits (what coproc's children do at start instead of at exit)
//   coproc-probe wakeup coproc|coproc-join|asio-raw|raw [count]
//       a child stamps CLOCK_MONOTONIC as its last act and _exits; the parent stamps again when
//       it resumes: coproc with co_await async_join, coproc with the blocking join(), a raw
//       fork awaited by an Asio coroutine, a raw fork awaited by poll()
//
// Prints the median latency in microseconds. Example:
//   perf stat -e task-clock,page-faults build/bench/coproc-probe start-join coproc 2000
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <coproc/coproc.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "bench.hpp"

namespace {

void noop() {}

void wait_for_go(int go_r, int go_w) {
  ::close(go_w);
  char c;
  while (::read(go_r, &c, 1) == -1 && errno == EINTR) {
  }
}

double start_join_once(bool coproc_way) {
  const double t0 = bench::now_us();
  if (coproc_way) {
    coproc::process p(noop);
    p.start();
    p.join();
  } else {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    bench::wait_exit(pid);
  }
  return bench::now_us() - t0;
}

// ---------------------------------------------------------------------------------------
// Wake-up: which part of coproc's wake-up is the wait, and which the child.

namespace asio = boost::asio;

[[noreturn]] void stamp_and_exit(bench::shared_stamp* stamp) {
  timespec d{0, 2'000'000};  // long enough for the parent to be asleep in its wait
  while (::nanosleep(&d, &d) == -1 && errno == EINTR) {
  }
  stamp->t_us = bench::now_us();
  ::_exit(0);
}

asio::awaitable<void> await_coproc(coproc::process& p, double& resumed) {
  p.start();
  co_await p.async_join(asio::use_awaitable);
  resumed = bench::now_us();
}

asio::awaitable<void> await_raw(int pidfd, double& resumed) {
  asio::posix::stream_descriptor d(co_await asio::this_coro::executor, pidfd);
  co_await d.async_wait(asio::posix::stream_descriptor::wait_read, asio::use_awaitable);
  resumed = bench::now_us();
  (void)d.release();  // the caller reaps and closes
}

double wakeup_once(const std::string& how, bench::shared_stamp* stamp, asio::io_context& ctx) {
  double resumed = 0;
  stamp->t_us = 0;
  if (how == "coproc" || how == "coproc-join") {
    coproc::process p(stamp_and_exit, stamp);
    if (how == "coproc") {
      asio::co_spawn(ctx, await_coproc(p, resumed), asio::detached);
      ctx.run();
      ctx.restart();
    } else {
      p.start();
      p.join();
      resumed = bench::now_us();
    }
  } else {
    const pid_t pid = ::fork();
    if (pid == 0) stamp_and_exit(stamp);
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u));
    if (fd < 0) bench::throw_errno("pidfd_open");
    if (how == "raw") {
      pollfd w{fd, POLLIN, 0};
      while (::poll(&w, 1, -1) == -1 && errno == EINTR) {
      }
      resumed = bench::now_us();
    } else {
      asio::co_spawn(ctx, await_raw(fd, resumed), asio::detached);
      ctx.run();
      ctx.restart();
    }
    bench::wait_exit(pid);
    ::close(fd);
  }
  return resumed - stamp->t_us;
}

long own_page_faults() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

asio::awaitable<void> start_and_await(coproc::process& p, long& ok) {
  p.start();
  // GCC 12 miscompiles a co_await inside the condition: a named result first.
  const int code = co_await p.async_join(asio::use_awaitable);
  if (code == 0) ++ok;
}

// One repetition of the fan-out: {start us/child, total us/child, parent faults/child}.
struct fanout_figures {
  double start_us, total_us, faults;
};

fanout_figures fanout_once(bool coproc_way, std::size_t n) {
  int go[2];
  if (::pipe2(go, O_CLOEXEC) == -1) bench::throw_errno("pipe2");
  const double dn = static_cast<double>(n);
  fanout_figures f{};
  if (coproc_way) {
    asio::io_context ctx(1);
    { asio::posix::stream_descriptor warm_up(ctx); }
    long ok = 0;
    std::vector<coproc::process> procs;
    procs.reserve(n);
    const long faults0 = own_page_faults();
    const double t0 = bench::now_us();
    for (std::size_t i = 0; i < n; ++i) {
      procs.emplace_back(wait_for_go, go[0], go[1]);
      asio::co_spawn(ctx, start_and_await(procs.back(), ok), asio::detached);
    }
    ctx.poll();
    const double t1 = bench::now_us();
    ::close(go[1]);
    ctx.run();
    const double t2 = bench::now_us();
    f = {(t1 - t0) / dn, (t2 - t0) / dn, static_cast<double>(own_page_faults() - faults0) / dn};
    if (static_cast<std::size_t>(ok) != n)
      std::fprintf(stderr, "%zu children failed\n", n - static_cast<std::size_t>(ok));
  } else {
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    const char* b = std::getenv("PROBE_BALLAST");
    const std::size_t ballast = b ? std::strtoul(b, nullptr, 10) : 0;
    std::vector<char*> held;
    const bool child_closes = std::getenv("PROBE_CLOSE") != nullptr;
    int lo = -1, hi = -1;
    const long faults0 = own_page_faults();
    const double t0 = bench::now_us();
    for (std::size_t i = 0; i < n; ++i) {
      const pid_t pid = ::fork();
      if (pid == 0) {
        if (child_closes && lo >= 0) ::syscall(SYS_close_range, lo, hi, 0);
        wait_for_go(go[0], go[1]);
        ::_exit(0);
      }
      const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0u));
      if (fd < 0) bench::throw_errno("pidfd_open");
      if (lo < 0) lo = fd;
      hi = fd;
      if (ballast) {
        held.push_back(static_cast<char*>(std::malloc(ballast)));
        std::memset(held.back(), 1, ballast);
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    const double t1 = bench::now_us();
    ::close(go[1]);
    std::size_t live = n;
    epoll_event events[256];
    while (live > 0) {
      const int k = ::epoll_wait(ep, events, 256, -1);
      for (int i = 0; i < k; ++i) {
        siginfo_t info{};
        ::waitid(static_cast<idtype_t>(3) /* P_PIDFD */, static_cast<id_t>(events[i].data.fd),
                 &info, WEXITED);
        ::epoll_ctl(ep, EPOLL_CTL_DEL, events[i].data.fd, nullptr);
        ::close(events[i].data.fd);
        --live;
      }
    }
    const double t2 = bench::now_us();
    f = {(t1 - t0) / dn, (t2 - t0) / dn, static_cast<double>(own_page_faults() - faults0) / dn};
    for (char* p : held) std::free(p);
    ::close(ep);
  }
  ::close(go[0]);
  return f;
}

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: coproc-probe start-join coproc|raw [count]\n"
               "       coproc-probe live-children coproc|raw K [count]\n"
               "       coproc-probe fanout coproc|raw N [reps]\n"
               "       coproc-probe wakeup coproc|coproc-join|asio-raw|raw [count]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  coproc::init(argc, argv);
  if (argc < 3) usage();
  const std::string what = argv[1];
  if (what == "wakeup") {
    const std::string how = argv[2];
    if (how != "coproc" && how != "coproc-join" && how != "asio-raw" && how != "raw") usage();
    const long count = argc > 3 ? std::atol(argv[3]) : 200;
    bench::shared_stamp* stamp = bench::map_shared_stamp();
    asio::io_context ctx(1);
    std::vector<double> t;
    for (long i = 0; i < count + 10; ++i) {
      const double v = wakeup_once(how, stamp, ctx);
      if (i >= 10) t.push_back(v);  // the first ones fault the code in
    }
    std::sort(t.begin(), t.end());
    std::printf("wakeup %s: median %.1f us over %ld\n", how.c_str(), t[t.size() / 2], count);
    bench::unmap_shared_stamp(stamp);
    return 0;
  }
  const bool coproc_way = std::strcmp(argv[2], "coproc") == 0;
  if (!coproc_way && std::strcmp(argv[2], "raw") != 0) usage();
  if (what == "fanout") {
    if (argc < 4) usage();
    const auto n = static_cast<std::size_t>(std::atol(argv[3]));
    const long reps = argc > 4 ? std::atol(argv[4]) : 1;
    bench::raise_nofile(2 * n + 64);
    for (long i = 0; i < reps; ++i) {
      const fanout_figures f = fanout_once(coproc_way, n);
      std::printf("fanout %s N=%zu: start %.1f us/child, total %.1f us/child, parent faults/child %.2f\n",
                  argv[2], n, f.start_us, f.total_us, f.faults);
      std::fflush(stdout);
    }
    return 0;
  }
  long live = 0;
  int count_arg = 3;
  if (what == "live-children") {
    if (argc < 4) usage();
    live = std::atol(argv[3]);
    count_arg = 4;
  } else if (what != "start-join") {
    usage();
  }
  const long count = argc > count_arg ? std::atol(argv[count_arg]) : 1000;

  bench::raise_nofile(static_cast<std::size_t>(2 * live + 64));
  int go[2];
  if (::pipe(go) == -1) bench::throw_errno("pipe");
  boost::asio::io_context ctx(1);
  std::vector<coproc::process> kids;
  std::vector<pid_t> raw_kids;
  kids.reserve(static_cast<std::size_t>(live));
  for (long i = 0; i < live; ++i) {
    if (coproc_way) {
      auto& p = kids.emplace_back(wait_for_go, go[0], go[1]);
      p.start();
      p.async_join(boost::asio::bind_executor(ctx, [](boost::system::error_code, int) {}));
    } else {
      const pid_t pid = ::fork();
      if (pid == 0) {
        wait_for_go(go[0], go[1]);
        ::_exit(0);
      }
      raw_kids.push_back(pid);
      // The raw loop's descriptor per child, as the harness's raw anchor holds it.
      if (::syscall(SYS_pidfd_open, pid, 0u) < 0) bench::throw_errno("pidfd_open");
    }
  }

  std::vector<double> t;
  t.reserve(static_cast<std::size_t>(count));
  for (long i = 0; i < count; ++i) t.push_back(start_join_once(coproc_way));
  std::sort(t.begin(), t.end());
  std::printf("%s %s live=%ld: median %.1f us over %ld\n", what.c_str(), argv[2], live,
              t[t.size() / 2], count);

  ::close(go[1]);
  if (coproc_way) {
    ctx.run();
  } else {
    for (pid_t pid : raw_kids) bench::wait_exit(pid);
  }
  return 0;
}
