// The pool's engine: its workers, the queue of requests, deadlines, and replacing the dead.
//
// Who reads a worker's reply:
// - a blocking caller that found an idle worker sends its request and reads the reply itself
//   (polling first: pool_options::spin), so a blocking apply wakes no other thread;
// - otherwise the pool's own thread, which waits in epoll on the busy workers' sockets and on
//   every worker's sentinel, armed one-shot by whoever hands a worker a request (arming wakes
//   nobody). It also fires deadlines (a timerfd) and retries workers that failed to start.
// Whoever learns that a worker ended (its sentinel, the end of its socket, a deadline it
// missed) reaps it, fails its task, and starts its replacement.
//
// Every slot's `seq` changes whenever the slot changes hands; an epoll event carries the seq it
// was armed with, so an event about a previous task is recognised and dropped.
#include <coproc/pool.hpp>

#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "async/io_thread.hpp"
#include "async/operation.hpp"
#include "core/fd.hpp"
#include "pool/wire.hpp"
#include "pool/worker.hpp"
#include "remote_exception.hpp"
#include "start/fork_policy.hpp"

namespace coproc::detail {

namespace {

using clock = std::chrono::steady_clock;
namespace asio = boost::asio;

enum class tag_kind : std::uint64_t { wake = 0, timer = 1, channel = 2, sentinel = 3 };

constexpr std::uint64_t seq_mask = (std::uint64_t(1) << 46) - 1;

std::uint64_t make_tag(tag_kind k, std::size_t slot, std::uint64_t seq) {
  return static_cast<std::uint64_t>(k) | (static_cast<std::uint64_t>(slot) << 2) |
         ((seq & seq_mask) << 18);
}

std::atomic<std::uint64_t> worker_counter{0};

// getpid() is a system call (glibc stopped caching it); every task checks it.
std::atomic<pid_t> cached_pid{0};
pid_t self_pid() noexcept {
  pid_t p = cached_pid.load(std::memory_order_relaxed);
  if (p == 0) {
    static const int registered = ::pthread_atfork(nullptr, nullptr, [] { cached_pid.store(0); });
    (void)registered;
    p = ::getpid();
    cached_pid.store(p, std::memory_order_relaxed);
  }
  return p;
}

const char* worker_prefix(start_method m) {
  switch (m) {
    case start_method::fork:
      return "ForkPoolWorker-";
    case start_method::spawn:
      return "SpawnPoolWorker-";
    case start_method::forkserver:
      return "ForkServerPoolWorker-";
  }
  return "PoolWorker-";
}

[[noreturn]] void fail_os(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// The join waiters.
class join_wait final : public operation<> {
 public:
  using operation::operation;
  void start() {
    auto l = lock();
    if (done()) return;  // the workers ended since the wait was listed: the handler is gone
    accept_cancellation();
  }
  void finish() {
    auto l = lock();
    if (!done()) complete_later(l, {});
  }

 private:
  void on_cancel(lock_type& l, asio::cancellation_type) override {
    complete_later(l, asio::error::operation_aborted);
  }
};

// A blocking caller's wait for a queued request.
struct blocking_sink final : pool_sink {
  std::mutex mutex;
  std::condition_variable changed;
  std::optional<pool_outcome> outcome;
  void deliver(std::size_t, pool_outcome&& o) noexcept override {
    {
      std::lock_guard l(mutex);
      outcome.emplace(std::move(o));
    }
    changed.notify_all();
  }
  pool_outcome wait() {
    std::unique_lock l(mutex);
    changed.wait(l, [&] { return outcome.has_value(); });
    return std::move(*outcome);
  }
};

}  // namespace

struct pool_core::impl {
  enum class slot_state { starting, idle, busy, ending, ended };
  enum class pool_state { running, closed, terminated };

  struct slot {
    std::size_t index = 0;
    std::optional<process> proc;
    private_fd channel;  // ours; the worker holds the other end
    int sentinel = -1;
    slot_state state = slot_state::ended;
    bool claimed = false;        // a blocking caller reads the reply
    bool deadline_kill = false;  // killed for missing its deadline
    bool idle_armed = false;     // its sentinel is armed for `seq` and has not fired
    bool retiring = false;       // told to end (closed pool): never given a task again
    std::uint64_t seq = 0;
    std::uint64_t tasks = 0;
    pool_request job;  // in flight (no sink: a blocking caller's)
    std::optional<clock::time_point> deadline;
    std::chrono::nanoseconds timeout{0};  // the deadline's length, for the error
  };

  // Set once by the constructor.
  start_method method = start_method::fork;
  int processes = 1;
  std::function<void()> initializer;
  std::string init_key;
  std::uint64_t maxtasks = 0;
  std::optional<std::chrono::nanoseconds> timeout;
  std::chrono::microseconds spin{0};
  pid_t creator = self_pid();
  private_fd epoll, wake, timer;
  std::thread engine;

  mutable std::mutex mutex;
  std::condition_variable changed;  // a slot ended (join)
  std::vector<std::unique_ptr<slot>> slots;
  std::deque<pool_request> queue;
  pool_state state = pool_state::running;
  std::optional<pool_outcome> broken;  // the initializer threw
  std::string start_error;
  std::optional<clock::time_point> retry_at;
  std::vector<std::shared_ptr<join_wait>> join_waiters;  // owned until the workers end
  bool stopping = false;
  bool joined = false;  // join() returned: the pool's thread is gone, nothing more is accepted
  std::once_flag stopped;

  // ---- epoll ---------------------------------------------------------------------------

  void ctl(int op, int fd, std::uint32_t events, std::uint64_t tag) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (::epoll_ctl(epoll.get(), op, fd, &ev) != 0 && op != EPOLL_CTL_DEL)
      fail_os("pool: epoll_ctl");
  }
  // Under the lock.
  void arm_idle(slot& s) {
    ctl(EPOLL_CTL_MOD, s.sentinel, EPOLLIN | EPOLLONESHOT, make_tag(tag_kind::sentinel, s.index, s.seq));
    s.idle_armed = true;
  }
  void arm_busy(slot& s) {
    s.idle_armed = false;
    ctl(EPOLL_CTL_MOD, s.channel.get(), EPOLLIN | EPOLLONESHOT,
        make_tag(tag_kind::channel, s.index, s.seq));
    ctl(EPOLL_CTL_MOD, s.sentinel, EPOLLIN | EPOLLONESHOT, make_tag(tag_kind::sentinel, s.index, s.seq));
  }

  // Under the lock: the timerfd at the earliest deadline of a task the engine watches, or a
  // retry.
  void update_timer() {
    std::optional<clock::time_point> at = retry_at;
    for (auto& s : slots)
      if (s->state == slot_state::busy && !s->claimed && s->deadline && !s->deadline_kill)
        if (!at || *s->deadline < *at) at = s->deadline;
    itimerspec its{};
    if (at) {
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(at->time_since_epoch()).count();
      its.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      its.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    }
    ::timerfd_settime(timer.get(), TFD_TIMER_ABSTIME, &its, nullptr);
  }

  // ---- workers -------------------------------------------------------------------------

  // Starts the worker of `s` (state starting, owned by this thread); throws on failure.
  void start_worker(slot& s) {
    int theirs = -1;
    private_fd ours = private_fd::create([&] {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
      theirs = sv[1];
      return sv[0];
    });
    if (!ours) fail_os("pool: socketpair");
    connection end(theirs);
    process_options o{.name = worker_prefix(method) + std::to_string(++worker_counter),
                      .daemon = true,
                      .method = method};
    std::optional<process> p;
    if (method == start_method::fork) {
      p.emplace(std::move(o),
                [init = initializer, max = maxtasks, sp = spin](connection ch) {
                  serve_pool(ch, init ? &init : nullptr, {}, max, sp);
                },
                std::move(end));
    } else {
      p.emplace(std::move(o), pool_worker, std::move(end), init_key, maxtasks,
                static_cast<std::int64_t>(spin.count()));
    }
    p->start();
    s.sentinel = p->sentinel();
    s.channel = std::move(ours);
    s.proc.emplace(std::move(*p));
    s.tasks = 0;
    s.retiring = false;
    s.deadline_kill = false;
    s.claimed = false;
    // Registered disarmed; armed when the slot changes hands.
    std::lock_guard l(mutex);
    ++s.seq;
    ctl(EPOLL_CTL_ADD, s.channel.get(), EPOLLONESHOT, make_tag(tag_kind::channel, s.index, s.seq));
    ctl(EPOLL_CTL_ADD, s.sentinel, EPOLLONESHOT, make_tag(tag_kind::sentinel, s.index, s.seq));
  }

  // Starts the worker of `s` and puts it to work; on failure leaves the slot ended and, when
  // no worker is left to run the queue, fails it.
  void replace(slot& s) {
    try {
      start_worker(s);
    } catch (const std::exception& e) {
      std::deque<pool_request> failed;
      {
        std::lock_guard l(mutex);
        s.state = slot_state::ended;
        start_error = e.what();
        if (state == pool_state::running) retry_at = clock::now() + std::chrono::milliseconds(100);
        bool any = false;
        for (auto& o : slots) any |= o->state != slot_state::ended;
        if (!any) failed = std::move(queue);
        update_timer();
      }
      changed.notify_all();
      notify_join();
      pool_outcome o;
      o.what = pool_outcome::kind::not_started;
      o.message = e.what();
      for (auto& r : failed) r.sink->deliver(r.index, pool_outcome(o));
      return;
    }
    std::unique_lock l(mutex);
    if (state == pool_state::terminated) {
      s.state = slot_state::idle;
      ++s.seq;
      arm_idle(s);
      s.proc->kill();
      return;
    }
    become_idle(s, l);
  }

  // Under the lock: `s` has no task. Gives it the next queued request, or lets it end when the
  // pool is closed and nothing is left, or arms its sentinel.
  void become_idle(slot& s, std::unique_lock<std::mutex>& l) {
    s.state = slot_state::idle;
    s.deadline.reset();
    if (s.claimed && s.idle_armed) {
      // A blocking caller's task: the sentinel's arm from before it (same seq) still stands,
      // which saves an epoll_ctl per call.
      s.claimed = false;
    } else {
      s.claimed = false;
      ++s.seq;
      arm_idle(s);
    }
    if (!queue.empty()) return dispatch(l);
    if (state == pool_state::closed) retire(s);
  }

  // Under the lock: the idle worker of a closed pool with nothing left to do reads the end of
  // its socket and exits; its sentinel then reaps it.
  void retire(slot& s) {
    s.retiring = true;
    ::shutdown(s.channel.get(), SHUT_WR);
  }

  slot* idle_slot() {
    for (auto& s : slots)
      if (s->state == slot_state::idle && !s->retiring) return s.get();
    return nullptr;
  }

  // Under the lock: hands queued requests to idle workers. Unlocks to send.
  void dispatch(std::unique_lock<std::mutex>& l) {
    std::vector<std::pair<slot*, std::uint64_t>> ready;
    bool any_deadline = false;
    while (!queue.empty()) {
      slot* s = idle_slot();
      if (!s) break;
      s->state = slot_state::busy;
      s->claimed = false;
      s->job = std::move(queue.front());
      queue.pop_front();
      ++s->seq;
      bool timed = false;
      if (auto t = s->job.timeout ? s->job.timeout : timeout) {
        s->deadline = clock::now() + *t;
        s->timeout = *t;
        timed = true;
      }
      any_deadline |= timed;
      ready.emplace_back(s, s->seq);
    }
    if (ready.empty()) return;
    if (any_deadline) update_timer();
    l.unlock();
    bool requeued = false;
    for (auto [s, seq] : ready) {
      bool sent = true;
      try {
        pool_wire::send(s->channel.get(), {}, s->job.message);
      } catch (const std::system_error&) {
        sent = false;
      }
      std::lock_guard g(mutex);
      if (!sent && s->seq == seq && state != pool_state::terminated) {
        // The worker had ended (killed while idle) before the request reached it: the task did
        // not run. It goes back to the queue; the slot stays busy without a task until its
        // sentinel reports the end (then it is reaped and replaced, failing nothing).
        queue.push_front(std::move(s->job));
        s->job = {};
        s->deadline.reset();
        s->proc->kill();  // should a send have failed otherwise, the worker ends all the same
        requeued = true;
      }
      // The request is kept until its reply: a worker found dead with the request still unread
      // had not started it, and it goes back to the queue (worker_ended).
      if (s->seq == seq) arm_busy(*s);
    }
    l.lock();
    if (requeued) {
      update_timer();
      dispatch(l);  // to another idle worker, if any
    }
  }

  // The reply in `frame` for the task of `s` (busy, owned by this thread). Returns the outcome
  // of a blocking caller's task; delivers any other.
  std::optional<pool_outcome> reply_arrived(slot& s, const bytes& frame) {
    pool_outcome o;
    const char kind = frame.empty() ? 'e' : static_cast<char>(frame[0]);
    if (frame.size() >= pool_reply_head) {
      std::uint64_t u, sy, rss;
      std::memcpy(&u, frame.data() + 1, 8);
      std::memcpy(&sy, frame.data() + 9, 8);
      std::memcpy(&rss, frame.data() + 17, 8);
      o.status = exit_status{0, std::nullopt, false, std::chrono::microseconds(u),
                             std::chrono::microseconds(sy), static_cast<std::size_t>(rss)};
    }
    const std::span<const std::byte> body =
        frame.size() >= pool_reply_head ? std::span<const std::byte>(frame).subspan(pool_reply_head)
                                        : std::span<const std::byte>();
    if (kind == 'v') {
      o.value.assign(body.begin(), body.end());
    } else {
      o.what = kind == 'i' ? pool_outcome::kind::init_failed : pool_outcome::kind::remote;
      read_exception(body, o);
    }
    std::unique_lock l(mutex);
    pool_request job = std::move(s.job);
    ++s.tasks;
    std::deque<pool_request> failed;
    const bool retire = kind == 'i' || (maxtasks && s.tasks >= maxtasks);
    if (kind == 'i') failed = set_broken(o);
    if (retire) {
      s.state = slot_state::ending;
      ++s.seq;
      l.unlock();
      for (auto& r : failed) r.sink->deliver(r.index, pool_outcome(o));
      // The worker ends by itself after its last task: reap it and start the next.
      std::optional<pool_outcome> mine;
      if (job.sink)
        job.sink->deliver(job.index, std::move(o));
      else
        mine = std::move(o);
      worker_ended(s);
      return mine;
    }
    become_idle(s, l);
    l.unlock();
    if (!job.sink) return o;
    job.sink->deliver(job.index, std::move(o));
    return std::nullopt;
  }

  static void read_exception(std::span<const std::byte> body, pool_outcome& o) {
    read_exception_text(body, o.type, o.message, "a malformed reply from the worker");
  }

  // Under the lock: the initializer threw; every queued request fails with it (returned).
  std::deque<pool_request> set_broken(const pool_outcome& o) {
    if (!broken) {
      broken = o;
      broken->what = pool_outcome::kind::init_failed;
      broken->value.clear();
    }
    return std::move(queue);
  }

  // The worker of `s` ended, or must (state busy, ending or idle, owned by this thread): reaps
  // it, fails its task (returned for a blocking caller's), and replaces it unless the pool is
  // ending.
  std::optional<pool_outcome> worker_ended(slot& s, bool* not_started = nullptr) {
    // A worker that ended while idle may have said why: its initializer threw.
    std::optional<pool_outcome> init_failure;
    {
      bytes frame;
      if (pool_wire::try_receive(s.channel.get(), frame) == pool_wire::got::frame &&
          !frame.empty() && frame[0] == std::byte{'i'}) {
        init_failure.emplace();
        init_failure->what = pool_outcome::kind::init_failed;
        read_exception(
            std::span<const std::byte>(frame).subspan(std::min(frame.size(), pool_reply_head)),
            *init_failure);
      }
    }
    const int code = s.proc->join();
    const auto status = s.proc->status();
    // Bytes of ours that no one has read: the request is still in the worker's socket, so the
    // worker never started it (it reads a whole request before it calls). That happens when a
    // worker dies while idle and the request reaches it before its sentinel is seen, and
    // another process (the forkserver, a child forked meanwhile) still holds the worker's end,
    // so that the send did not fail. (Once no process holds that end, the kernel drops what it
    // held; but then the send itself failed, and dispatch() re-queued the request.)
    int unread = 0;
    if (::ioctl(s.channel.get(), SIOCOUTQ, &unread) != 0) unread = 0;
    std::unique_lock l(mutex);
    std::deque<pool_request> failed;
    if (init_failure) failed = set_broken(*init_failure);
    pool_request job = std::move(s.job);
    bool had_task = s.state == slot_state::busy;
    if (had_task && unread > 0 && state != pool_state::terminated && !s.deadline_kill &&
        !init_failure) {
      had_task = false;  // it fails nothing: it goes back to the queue, or to its caller
      if (job.sink)
        queue.push_front(std::move(job));
      else if (not_started)
        *not_started = true;
    }
    pool_outcome o;
    if (state == pool_state::terminated) {
      o.what = pool_outcome::kind::terminated;
    } else if (s.deadline_kill) {
      o.what = pool_outcome::kind::timed_out;
      o.timeout = s.timeout;
    } else if (init_failure) {
      o = *broken;
    } else {
      o.what = pool_outcome::kind::died;
      o.exitcode = code;
    }
    if (o.what != pool_outcome::kind::init_failed) o.status = status;
    ctl(EPOLL_CTL_DEL, s.channel.get(), 0, 0);
    ctl(EPOLL_CTL_DEL, s.sentinel, 0, 0);
    s.channel.reset();
    s.sentinel = -1;
    s.proc.reset();
    s.job = {};
    s.deadline.reset();
    s.claimed = false;
    ++s.seq;
    const bool again = state != pool_state::terminated && !broken &&
                       !(state == pool_state::closed && queue.empty());
    s.state = again ? slot_state::starting : slot_state::ended;
    std::optional<pool_outcome> why = broken;
    if (broken) {
      auto more = std::move(queue);
      for (auto& r : more) failed.push_back(std::move(r));
    }
    l.unlock();
    changed.notify_all();
    notify_join();
    for (auto& r : failed) r.sink->deliver(r.index, pool_outcome(*why));
    std::optional<pool_outcome> mine;
    if (had_task) {
      if (job.sink)
        job.sink->deliver(job.index, std::move(o));
      else
        mine = std::move(o);
    }
    if (again) replace(s);
    return mine;
  }

  // ---- the engine thread ---------------------------------------------------------------

  void run() {
    count_own_thread(+1);  // not the user's thread: the fork policy does not count it
    epoll_event events[32];
    for (;;) {
      const int n = ::epoll_wait(epoll.get(), events, 32, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      for (int i = 0; i < n; ++i) {
        const std::uint64_t tag = events[i].data.u64;
        const auto kind = static_cast<tag_kind>(tag & 3);
        if (kind == tag_kind::wake) {
          std::uint64_t v;
          (void)!::read(wake.get(), &v, sizeof v);
          std::lock_guard l(mutex);
          if (stopping) {
            count_own_thread(-1);
            return;
          }
        } else if (kind == tag_kind::timer) {
          std::uint64_t v;
          (void)!::read(timer.get(), &v, sizeof v);
          on_timer();
        } else {
          on_slot_event(static_cast<std::size_t>((tag >> 2) & 0xFFFF), kind, tag >> 18);
        }
      }
    }
    count_own_thread(-1);
  }

  void on_timer() {
    std::vector<slot*> retry;
    {
      std::lock_guard l(mutex);
      const auto now = clock::now();
      for (auto& s : slots)
        if (s->state == slot_state::busy && !s->claimed && s->deadline && !s->deadline_kill &&
            *s->deadline <= now) {
          s->deadline_kill = true;
          s->proc->kill();  // through the pidfd; its sentinel then reports the end
        }
      if (retry_at && *retry_at <= now) {
        retry_at.reset();
        if (state != pool_state::terminated && !broken)
          for (auto& s : slots)
            if (s->state == slot_state::ended) {
              s->state = slot_state::starting;
              retry.push_back(s.get());
            }
      }
      update_timer();
    }
    for (auto* s : retry) replace(*s);
  }

  void on_slot_event(std::size_t index, tag_kind kind, std::uint64_t seq) {
    slot* s = nullptr;
    slot_state was;
    {
      std::lock_guard l(mutex);
      if (index >= slots.size()) return;
      s = slots[index].get();
      if ((s->seq & seq_mask) != seq) return;  // about an earlier task
      if (kind == tag_kind::sentinel) s->idle_armed = false;  // one-shot: spent
      if (s->claimed) return;  // its caller watches it
      was = s->state;
      if (was == slot_state::idle) {
        if (kind != tag_kind::sentinel) return;
        s->state = slot_state::ending;  // it ended while idle
        ++s->seq;
      } else if (was != slot_state::busy) {
        return;
      }
    }
    if (was == slot_state::idle) {
      worker_ended(*s);
      return;
    }
    bytes frame;
    const auto g = pool_wire::try_receive(s->channel.get(), frame);
    if (g == pool_wire::got::frame) {
      reply_arrived(*s, frame);
    } else if (g == pool_wire::got::nothing && kind == tag_kind::channel) {
      std::lock_guard l(mutex);
      if ((s->seq & seq_mask) == seq) arm_busy(*s);
    } else {
      worker_ended(*s);
    }
  }

  void notify_join() {
    std::vector<std::shared_ptr<join_wait>> ws;
    {
      std::lock_guard l(mutex);
      if (!all_ended()) return;
      ws = std::exchange(join_waiters, {});
    }
    for (auto& op : ws) op->finish();
  }

  // Under the lock.
  bool all_ended() const {
    if (state == pool_state::running || !queue.empty()) return false;
    for (auto& s : slots)
      if (s->state != slot_state::ended) return false;
    return true;
  }

  void stop_engine() {
    std::call_once(stopped, [&] { stop_engine_once(); });
  }
  void stop_engine_once() {
    {
      std::lock_guard l(mutex);
      if (!engine.joinable()) return;
      stopping = true;
    }
    const std::uint64_t one = 1;
    (void)!::write(wake.get(), &one, sizeof one);
    if (engine.get_id() != std::this_thread::get_id()) engine.join();
    else engine.detach();
  }
};

// ---------------------------------------------------------------------------------------

pool_core::pool_core(const pool_options& opts) : impl_(std::make_shared<impl>()) {
  auto& s = *impl_;
  s.method = opts.method.value_or(get_start_method());
  if (opts.processes && *opts.processes < 1)
    throw std::invalid_argument("Number of processes must be at least 1");
  s.processes = opts.processes.value_or(cpu_count());
  if (opts.maxtasksperchild && *opts.maxtasksperchild < 1)
    throw std::invalid_argument("maxtasksperchild must be a positive int or None");
  s.maxtasks = opts.maxtasksperchild.value_or(0);
  if (opts.task_timeout && opts.task_timeout->count() <= 0)
    throw std::invalid_argument("task_timeout must be positive");
  s.timeout = opts.task_timeout;
  s.spin = opts.spin ? std::max(*opts.spin, std::chrono::microseconds(0)) : pool_wire::default_spin();
  if (opts.initializer) {
    if (s.method == start_method::fork) {
      s.initializer = opts.initializer;
    } else {
      auto* const* fp = opts.initializer.target<void (*)()>();
      const registered_target* t = fp ? find_target(reinterpret_cast<const void*>(*fp)) : nullptr;
      if (!t)
        throw std::logic_error(
            "pool: under spawn and forkserver the initializer must be a registered function "
            "(a pointer to a function registered with COPROC_TARGET): a new program finds it by "
            "name");
      s.init_key = target_key(*t);
    }
  }
  s.epoll = private_fd::create([] { return ::epoll_create1(EPOLL_CLOEXEC); });
  if (!s.epoll) fail_os("pool: epoll_create1");
  s.wake = private_fd::create([] { return ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); });
  if (!s.wake) fail_os("pool: eventfd");
  s.timer = private_fd::create([] { return ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK); });
  if (!s.timer) fail_os("pool: timerfd_create");
  s.ctl(EPOLL_CTL_ADD, s.wake.get(), EPOLLIN, make_tag(tag_kind::wake, 0, 0));
  s.ctl(EPOLL_CTL_ADD, s.timer.get(), EPOLLIN, make_tag(tag_kind::timer, 0, 0));
  for (int i = 0; i < s.processes; ++i) {
    s.slots.push_back(std::make_unique<impl::slot>());
    s.slots.back()->index = static_cast<std::size_t>(i);
  }
  try {
    for (auto& sl : s.slots) {
      sl->state = impl::slot_state::starting;
      s.start_worker(*sl);
      std::unique_lock l(s.mutex);
      s.become_idle(*sl, l);
    }
  } catch (...) {
    // Python's Pool() raises when a worker cannot start; no worker is left behind.
    for (auto& sl : s.slots)
      if (sl->proc) {
        sl->proc->kill();
        sl->proc->join();
      }
    throw;
  }
  s.engine = std::thread([&s] { s.run(); });
}

pool_core::~pool_core() {
  try {
    terminate();
    join();
  } catch (...) {
  }
  impl_->stop_engine();
}

start_method pool_core::method() const noexcept { return impl_->method; }
int pool_core::size() const noexcept { return impl_->processes; }
std::size_t pool_core::window() const noexcept { return 2 * static_cast<std::size_t>(impl_->processes); }

void pool_core::check_running() const {
  if (self_pid() != impl_->creator)
    throw std::logic_error("a pool can only be used by the process that created it");
  std::lock_guard l(impl_->mutex);
  if (impl_->state != impl::pool_state::running) throw std::logic_error("Pool not running");
}

void pool_core::begin_request(bytes& out, bool chunk, const pool_function& fn) const {
  out.push_back(std::byte{static_cast<unsigned char>(chunk ? 'm' : 's')});
  if (impl_->method == start_method::fork) {
    out.push_back(std::byte{'p'});
    const std::uintptr_t v[3] = {reinterpret_cast<std::uintptr_t>(fn.one),
                                 reinterpret_cast<std::uintptr_t>(fn.many),
                                 reinterpret_cast<std::uintptr_t>(fn.address)};
    const auto* p = reinterpret_cast<const std::byte*>(v);
    out.insert(out.end(), p, p + sizeof v);
    return;
  }
  const registered_target* t = find_target(fn.address);
  if (!t)
    throw std::logic_error(
        "pool: the function is not registered: add COPROC_TARGET(name) at namespace scope, in "
        "the function's namespace (spawn and forkserver workers find it by name)");
  const std::string key = target_key(*t);
  out.push_back(std::byte{'k'});
  const auto n = static_cast<std::uint16_t>(key.size());
  const auto* np = reinterpret_cast<const std::byte*>(&n);
  out.insert(out.end(), np, np + 2);
  const auto* kp = reinterpret_cast<const std::byte*>(key.data());
  out.insert(out.end(), kp, kp + key.size());
}

void pool_core::submit(pool_request request) {
  auto& s = *impl_;
  if (self_pid() != s.creator)
    throw std::logic_error("a pool can only be used by the process that created it");
  std::unique_lock l(s.mutex);
  if (s.state != impl::pool_state::running &&
      !(s.state == impl::pool_state::closed && request.continuation && !s.joined))
    throw std::logic_error("Pool not running");
  if (s.broken) {
    pool_outcome o = *s.broken;
    l.unlock();
    request.sink->deliver(request.index, std::move(o));
    return;
  }
  s.queue.push_back(std::move(request));
  // A closed pool whose workers have all ended gets one back for an imap's next chunk.
  impl::slot* revive = nullptr;
  if (s.state == impl::pool_state::closed) {
    bool alive = false;
    for (auto& w : s.slots) alive |= w->state != impl::slot_state::ended;
    if (!alive) {
      revive = s.slots.front().get();
      revive->state = impl::slot_state::starting;
    }
  }
  if (revive) {
    l.unlock();
    s.replace(*revive);
    return;
  }
  s.dispatch(l);
}

pool_outcome pool_core::call(bytes request, std::optional<std::chrono::nanoseconds> timeout) {
  auto& s = *impl_;
  if (self_pid() != s.creator)
    throw std::logic_error("a pool can only be used by the process that created it");
  std::unique_lock l(s.mutex);
  if (s.state != impl::pool_state::running) throw std::logic_error("Pool not running");
  if (s.broken) return *s.broken;
  impl::slot* w = s.queue.empty() ? s.idle_slot() : nullptr;
  if (!w) {
    l.unlock();
    auto sink = std::make_shared<blocking_sink>();
    submit({std::move(request), sink, 0, timeout});
    return sink->wait();
  }
  // Ours until the reply: no other thread reads this worker.
  w->state = impl::slot_state::busy;
  w->claimed = true;  // the seq stays: the idle arm of its sentinel is still good afterwards
  std::optional<clock::time_point> deadline;
  if (!timeout) timeout = s.timeout;
  if (timeout) {
    deadline = clock::now() + *timeout;
    w->timeout = *timeout;
  }
  w->deadline = deadline;
  l.unlock();
  try {
    pool_wire::send(w->channel.get(), {}, request);
  } catch (const std::system_error&) {
    // The worker had ended (killed while idle) before the request reached it: the task did
    // not run, so this is not the task's failure. The request goes to the queue (for a live
    // worker, or this one's replacement), and the worker is reaped and replaced.
    auto sink = std::make_shared<blocking_sink>();
    std::optional<pool_outcome> instead;
    {
      std::unique_lock g2(s.mutex);
      w->state = impl::slot_state::ending;
      ++w->seq;
      if (s.state == impl::pool_state::terminated) {
        instead.emplace();
        instead->what = pool_outcome::kind::terminated;
      } else if (s.broken) {
        instead = s.broken;
      } else {
        s.queue.push_back({std::move(request), sink, 0, timeout});
        s.dispatch(g2);
      }
    }
    w->proc->kill();  // should the send have failed otherwise, the worker ends all the same
    s.worker_ended(*w);
    if (instead) return std::move(*instead);
    return sink->wait();
  }
  bytes frame;
  auto g = pool_wire::receive(w->channel.get(), frame, s.spin, w->sentinel, deadline);
  if (g == pool_wire::got::frame) return *s.reply_arrived(*w, frame);
  if (g == pool_wire::got::timeout) {
    {
      std::lock_guard g2(s.mutex);
      w->deadline_kill = true;
    }
    w->proc->kill();
  }
  bool not_started = false;
  auto outcome = s.worker_ended(*w, &not_started);
  if (outcome) return std::move(*outcome);
  // The worker was found dead with the request unread: it goes through the queue, to a live
  // worker or this one's replacement (accepted even if close() came meanwhile: the call did not).
  auto sink = std::make_shared<blocking_sink>();
  try {
    submit({std::move(request), sink, 0, timeout, true});
  } catch (const std::logic_error&) {
    pool_outcome o;  // terminate() or join() came in between
    o.what = pool_outcome::kind::terminated;
    return o;
  }
  return sink->wait();
}

void pool_core::close() {
  auto& s = *impl_;
  std::unique_lock l(s.mutex);
  if (s.state != impl::pool_state::running) return;
  s.state = impl::pool_state::closed;
  if (!s.queue.empty()) return;
  for (auto& w : s.slots)
    if (w->state == impl::slot_state::idle) s.retire(*w);
  l.unlock();
  s.notify_join();
}

void pool_core::terminate() {
  auto& s = *impl_;
  std::deque<pool_request> failed;
  {
    std::lock_guard l(s.mutex);
    if (s.state == impl::pool_state::terminated) return;
    s.state = impl::pool_state::terminated;
    failed = std::move(s.queue);
    s.retry_at.reset();
    for (auto& w : s.slots)
      if ((w->state == impl::slot_state::idle || w->state == impl::slot_state::busy) && w->proc)
        w->proc->kill();
  }
  pool_outcome o;
  o.what = pool_outcome::kind::terminated;
  for (auto& r : failed) r.sink->deliver(r.index, pool_outcome(o));
  s.notify_join();
}

void pool_core::join() {
  auto& s = *impl_;
  {
    std::unique_lock l(s.mutex);
    if (s.state == impl::pool_state::running)
      throw std::logic_error("Pool is still running: call close() or terminate() before join()");
    s.changed.wait(l, [&] { return s.all_ended(); });
    s.joined = true;
  }
  s.stop_engine();
}

void pool_core::async_join(asio::any_io_executor io,
                           asio::any_completion_handler<void(boost::system::error_code)> handler) {
  auto& s = *impl_;
  std::unique_lock l(s.mutex);
  if (s.state == impl::pool_state::running)
    throw std::logic_error("Pool is still running: call close() or terminate() before join()");
  auto op = std::make_shared<join_wait>(reactor_for(io).executor, std::move(handler));
  if (s.all_ended()) {
    l.unlock();
    op->finish();
    return;
  }
  s.join_waiters.push_back(op);
  l.unlock();
  op->start();
}

}  // namespace coproc::detail
