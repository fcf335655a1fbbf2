// The pool's outcomes as their consumers wait for them: one call (async_result), a map (its
// chunks joined in order), an imap (chunks taken in order or as they come).
#include <coproc/pool.hpp>

#include <condition_variable>
#include <map>
#include <mutex>

#include "async/io_thread.hpp"
#include "async/operation.hpp"

namespace coproc::detail {

namespace asio = boost::asio;

[[noreturn]] void raise(const pool_outcome& o) {
  using k = pool_outcome::kind;
  switch (o.what) {
    case k::remote:
      throw remote_error(o.type, o.message);
    case k::init_failed:
      throw remote_error(o.type, "in the pool's initializer: " + o.message);
    case k::died:
      throw process_error("the pool's worker exited with exit code " + std::to_string(o.exitcode) +
                          " while running the task (it was replaced)");
    case k::timed_out:
      throw timeout_error(
          "the task ran past its deadline of " +
          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(o.timeout).count()) +
          " ms: its worker was killed and replaced");
    case k::terminated:
      throw process_error("the pool was terminated before the task ended");
    case k::not_started:
      throw process_error("no pool worker could be started: " + o.message);
    case k::value:
      break;
  }
  throw std::logic_error("raise() of a successful outcome");
}

boost::system::error_code error_of(const pool_outcome& o) noexcept {
  using k = pool_outcome::kind;
  switch (o.what) {
    case k::value:
      return {};
    case k::remote:
      return make_error_code(errc::remote_error);
    case k::init_failed:
      return make_error_code(errc::init_failed);
    case k::died:
      return make_error_code(errc::child_died);
    case k::timed_out:
      return make_error_code(errc::task_timed_out);
    case k::terminated:
      return make_error_code(errc::pool_terminated);
    case k::not_started:
      break;
  }
  return make_error_code(boost::system::errc::resource_unavailable_try_again);
}

namespace {

// One asynchronous wait for an outcome: completed by the outcome, its timeout or cancellation.
class outcome_wait final : public operation<> {
 public:
  using operation::operation;
  void start(std::optional<std::chrono::nanoseconds> timeout) {
    auto l = lock();
    if (done()) return;  // the outcome came since the wait was listed: the handler is gone
    accept_cancellation();
    if (timeout) arm_deadline(*timeout);
  }
  void finish(error_code ec) {
    auto l = lock();
    if (!done()) complete_later(l, ec);
  }
  bool finished() {
    auto l = lock();
    return done();
  }

 private:
  void on_cancel(lock_type& l, asio::cancellation_type) override {
    complete_later(l, asio::error::operation_aborted);
  }
  void on_deadline(lock_type& l) override { complete(l, asio::error::timed_out); }
};

// The pending waits of one outcome. The list owns them (nothing else does until they
// complete); cancelled ones are dropped when the next wait is added.
struct waiters {
  std::vector<std::shared_ptr<outcome_wait>> list;

  // Under the owner's lock.
  std::shared_ptr<outcome_wait> add(const asio::any_io_executor& io,
                                    asio::any_completion_handler<void(error_code)> handler) {
    auto op = std::make_shared<outcome_wait>(reactor_for(io).executor, std::move(handler));
    std::erase_if(list, [](const auto& w) { return w->finished(); });
    list.push_back(op);
    return op;
  }
  std::vector<std::shared_ptr<outcome_wait>> take() { return std::exchange(list, {}); }
};

void finish_all(std::vector<std::shared_ptr<outcome_wait>> ws, error_code ec) {
  for (auto& op : ws) op->finish(ec);
}

// Completes at once (through the reactor, never inside the initiating call).
void complete_now(const asio::any_io_executor& io,
                  asio::any_completion_handler<void(error_code)> handler, error_code ec) {
  auto op = std::make_shared<outcome_wait>(reactor_for(io).executor, std::move(handler));
  op->finish(ec);
}

class pool_result_state final : public result_state, public pool_sink {
 public:
  void deliver(std::size_t, pool_outcome&& o) noexcept override {
    std::vector<std::shared_ptr<outcome_wait>> ws;
    error_code ec;
    {
      std::lock_guard l(mutex_);
      if (outcome_) return;
      outcome_.emplace(std::move(o));
      ec = error_of(*outcome_);
      ws = waiters_.take();
    }
    changed_.notify_all();
    finish_all(std::move(ws), ec);
  }

  bool wait(std::optional<std::chrono::steady_clock::time_point> deadline) override {
    std::unique_lock l(mutex_);
    if (!deadline) {
      changed_.wait(l, [&] { return outcome_.has_value(); });
      return true;
    }
    return changed_.wait_until(l, *deadline, [&] { return outcome_.has_value(); });
  }
  bool ready() override {
    std::lock_guard l(mutex_);
    return outcome_.has_value();
  }
  std::span<const std::byte> value() const override {
    std::lock_guard l(mutex_);
    if (!outcome_) throw std::logic_error("result is not ready");
    if (outcome_->what != pool_outcome::kind::value) raise(*outcome_);
    return outcome_->value;
  }
  void async_wait(asio::any_io_executor io, std::optional<std::chrono::nanoseconds> timeout,
                  asio::any_completion_handler<void(error_code)> handler) override {
    std::unique_lock l(mutex_);
    if (outcome_) {
      const error_code ec = error_of(*outcome_);
      l.unlock();
      return complete_now(io, std::move(handler), ec);
    }
    auto op = waiters_.add(io, std::move(handler));
    l.unlock();
    op->start(timeout);
  }
  std::optional<exit_status> status() const override {
    std::lock_guard l(mutex_);
    return outcome_ ? outcome_->status : std::nullopt;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<pool_outcome> outcome_;
  waiters waiters_;
};

// A map's chunks, joined into one JSON array in order; the first failure is the map's.
class map_sink final : public pool_sink {
 public:
  map_sink(std::size_t chunks, std::shared_ptr<pool_result_state> result)
      : parts_(chunks), result_(std::move(result)) {}

  void deliver(std::size_t index, pool_outcome&& o) noexcept override {
    std::unique_lock l(mutex_);
    if (failed_ || index >= parts_.size() || parts_[index]) return;
    if (o.what != pool_outcome::kind::value) {
      failed_ = true;
      l.unlock();
      result_->deliver(0, std::move(o));
      return;
    }
    add_status(o.status);
    parts_[index].emplace(std::move(o.value));
    if (++arrived_ < parts_.size()) return;
    pool_outcome all;
    try {
      all.value = join();
    } catch (const std::bad_alloc&) {
      all.what = pool_outcome::kind::remote;
      all.type = "std::bad_alloc";
      all.message = "the map's results do not fit in memory";
    }
    all.status = status_;
    parts_.clear();
    l.unlock();
    result_->deliver(0, std::move(all));
  }

 private:
  void add_status(const std::optional<exit_status>& s) {
    if (!s) return;
    if (!status_) {
      status_ = *s;
      return;
    }
    status_->user_time += s->user_time;
    status_->system_time += s->system_time;
    status_->max_rss_kib = std::max(status_->max_rss_kib, s->max_rss_kib);
  }
  // "[a,b]" and "[c]" make "[a,b,c]".
  bytes join() const {
    std::size_t total = 2;
    for (const auto& p : parts_) total += p->size();
    bytes out;
    out.reserve(total);
    out.push_back(std::byte{'['});
    bool any = false;
    for (const auto& p : parts_) {
      if (p->size() <= 2) continue;  // "[]"
      if (any) out.push_back(std::byte{','});
      out.insert(out.end(), p->begin() + 1, p->end() - 1);
      any = true;
    }
    out.push_back(std::byte{']'});
    return out;
  }

  std::mutex mutex_;
  std::vector<std::optional<bytes>> parts_;
  std::size_t arrived_ = 0;
  bool failed_ = false;
  std::optional<exit_status> status_;
  std::shared_ptr<pool_result_state> result_;
};

}  // namespace

std::shared_ptr<result_state> make_pool_result(std::shared_ptr<pool_sink>& sink) {
  auto state = std::make_shared<pool_result_state>();
  sink = state;
  return state;
}

std::shared_ptr<result_state> make_map_result(std::size_t chunks, std::shared_ptr<pool_sink>& sink) {
  auto state = std::make_shared<pool_result_state>();
  sink = std::make_shared<map_sink>(chunks, state);
  if (chunks == 0) {
    pool_outcome empty;
    empty.value = as_bytes("[]");
    state->deliver(0, std::move(empty));
  }
  return state;
}

// ---------------------------------------------------------------------------------------

struct imap_window::impl {
  explicit impl(bool o) : ordered(o) {}
  bool takeable() const { return ordered ? done.count(next) > 0 : !done.empty(); }

  const bool ordered;
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::size_t, pool_outcome> done;
  std::size_t next = 0;         // ordered: the index taken next
  std::size_t outstanding = 0;  // expected and not yet taken
  waiters waiting;
};

imap_window::imap_window(bool ordered) : impl_(std::make_shared<impl>(ordered)) {}
imap_window::~imap_window() = default;

void imap_window::deliver(std::size_t index, pool_outcome&& o) noexcept {
  std::vector<std::shared_ptr<outcome_wait>> ws;
  {
    std::lock_guard l(impl_->mutex);
    impl_->done.emplace(index, std::move(o));
    if (impl_->takeable()) ws = impl_->waiting.take();
  }
  impl_->changed.notify_all();
  finish_all(std::move(ws), {});
}

void imap_window::expect(std::size_t) {
  std::lock_guard l(impl_->mutex);
  ++impl_->outstanding;
}

std::size_t imap_window::outstanding() const {
  std::lock_guard l(impl_->mutex);
  return impl_->outstanding;
}

std::optional<pool_outcome> imap_window::take(
    std::optional<std::chrono::steady_clock::time_point> deadline) {
  auto& s = *impl_;
  std::unique_lock l(s.mutex);
  if (!deadline)
    s.changed.wait(l, [&] { return s.takeable(); });
  else if (!s.changed.wait_until(l, *deadline, [&] { return s.takeable(); }))
    return std::nullopt;
  auto it = s.ordered ? s.done.find(s.next) : s.done.begin();
  pool_outcome o = std::move(it->second);
  s.done.erase(it);
  if (s.ordered) ++s.next;
  --s.outstanding;
  return o;
}

void imap_window::async_wait(asio::any_io_executor io, std::optional<std::chrono::nanoseconds> timeout,
                             asio::any_completion_handler<void(error_code)> handler) {
  std::unique_lock l(impl_->mutex);
  if (impl_->takeable()) {
    l.unlock();
    return complete_now(io, std::move(handler), {});
  }
  auto op = impl_->waiting.add(io, std::move(handler));
  l.unlock();
  op->start(timeout);
}

}  // namespace coproc::detail
