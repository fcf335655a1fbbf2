// Issue 9's proof: a parent whose other threads are busy in malloc/free and hold a mutex that
// the target also takes. Spawn and forkserver children begin as fresh programs (or as copies
// of the single-threaded server), so they never inherit a lock held by a thread that does not
// exist in them: all of them complete, every time, under the sanitizers too. The same load
// with fork shows what the other two methods prevent: a fork child copies the mutex (and the
// allocator's locks) in whatever state another thread left them, and some hang.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>
#include <coproc/fork_policy.hpp>

#include "helpers.hpp"

using namespace std::chrono_literals;
namespace cp = coproc;

namespace threaded_parent {

std::mutex shared_lock;  // held by the parent's busy threads, taken by every target

// Takes the lock and allocates, as the busy threads do: a copy of a held lock never opens.
void take_the_lock_and_allocate(int rounds) {
  for (int i = 0; i < rounds; ++i) {
    std::lock_guard lock(shared_lock);
    std::vector<char> v(static_cast<std::size_t>(64 + i * 16));
    v[0] = 1;
  }
}
COPROC_TARGET(take_the_lock_and_allocate);

// Four threads that hold the lock and churn the allocator until told to stop.
class busy_threads {
 public:
  busy_threads() {
    for (int t = 0; t < 4; ++t)
      threads_.emplace_back([this, t] {
        std::vector<void*> held(32, nullptr);
        unsigned i = static_cast<unsigned>(t);
        while (!stop_.load(std::memory_order_relaxed)) {
          std::lock_guard lock(shared_lock);
          for (int k = 0; k < 16; ++k) {
            i = i * 1103515245u + 12345u;
            void*& slot = held[i % held.size()];
            std::free(slot);
            slot = std::malloc(16 + i % 4096);
          }
        }
        for (void* p : held) std::free(p);
      });
  }
  ~busy_threads() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

void run_all_complete(cp::start_method method, int children) {
  busy_threads load;
  int completed = 0;
  for (int i = 0; i < children; ++i) {
    cp::process p({.method = method}, take_the_lock_and_allocate, 4);
    p.start();
    // A hang guard only: these children take a few milliseconds.
    const auto code = p.join(60s);
    if (!code) {
      p.kill();
      p.join();
      BOOST_ERROR("child " << i << " hung with " << cp::to_string(method));
      break;
    }
    BOOST_TEST(*code == 0);
    completed += *code == 0;
  }
  BOOST_TEST(completed == children);
}

}  // namespace threaded_parent

using namespace threaded_parent;

BOOST_AUTO_TEST_SUITE(threaded_parent)

BOOST_AUTO_TEST_CASE(five_hundred_spawn_children_all_complete) {
  run_all_complete(cp::start_method::spawn, 500);
}

BOOST_AUTO_TEST_CASE(five_hundred_forkserver_children_all_complete) {
  run_all_complete(cp::start_method::forkserver, 500);
}

BOOST_AUTO_TEST_CASE(the_same_load_under_fork_shows_how_often_a_child_hangs) {
  // Reported, not asserted: whether a fork child hangs depends on where the other threads were
  // at the instant of fork. The count is the reason the other two methods exist.
  const auto old = cp::get_fork_thread_policy();
  cp::set_fork_thread_policy(cp::fork_thread_policy::allow);
  int hung = 0;
  constexpr int children = 20;
  {
    busy_threads load;
    for (int i = 0; i < children; ++i) {
      cp::process p({.method = cp::start_method::fork}, take_the_lock_and_allocate, 4);
      p.start();
      if (!p.join(1s)) {
        ++hung;
        p.kill();
        p.join();
      }
    }
  }
  cp::set_fork_thread_policy(old);
  BOOST_TEST_MESSAGE("fork with 4 busy threads: " << hung << " of " << children
                                                  << " children hung (killed after 1 s)");
  BOOST_TEST(!coproc_test::has_zombie_child());
}

BOOST_AUTO_TEST_SUITE_END()
