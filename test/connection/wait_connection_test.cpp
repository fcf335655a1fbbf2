// coproc::wait over connections, raw descriptors and sentinels: CPython's TestWait
// (test_wait, test_wait_slow, test_wait_socket, test_wait_integer, test_neg_timeout), a
// connection with a message already there, the end of the stream, and misuse.
// (The process-only cases are in test/process/wait_test.cpp.)
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "peer_support.hpp"

using namespace std::chrono_literals;
using coproc::bytes;
using coproc::waitable;
using coproc_test::b;
using coproc_test::expect_misuse;
using coproc_test::guard;

namespace {

int join_guarded(coproc::process& p) {
  if (auto code = p.join(guard)) return *code;
  BOOST_ERROR("hang guard expired: the child is killed");
  p.kill();
  return p.join();
}

std::vector<waitable> waitables_of(const std::vector<coproc::connection*>& cs) {
  return {cs.begin(), cs.end()};
}

using message = std::tuple<int, int>;  // (i, pid), as Python's (i, os.getpid())

std::vector<message> expected_messages(const std::vector<std::unique_ptr<coproc::process>>& procs) {
  std::vector<message> out;
  for (auto& p : procs)
    for (int i = 0; i < 10; ++i) out.emplace_back(i, static_cast<int>(*p->pid()));
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cpython_wait)

BOOST_AUTO_TEST_CASE(test_wait) {
  // Four children, ten messages each, through Pipe(duplex=False); wait() until every reader
  // has reached its end.
  std::array<coproc::connection, 4> readers;
  std::vector<std::unique_ptr<coproc::process>> procs;
  for (auto& reader : readers) {
    auto [r, w] = coproc::pipe(false);
    reader = std::move(r);
    procs.push_back(std::make_unique<coproc::process>(
        [](coproc::connection& c) {
          for (int i = 0; i < 10; ++i) c.send(message{i, static_cast<int>(::getpid())});
          c.close();
        },
        std::move(w)));
    procs.back()->daemon(true);
    procs.back()->start();
  }
  std::vector<coproc::connection*> open;
  for (auto& r : readers) open.push_back(&r);
  std::vector<message> messages;
  while (!open.empty()) {
    const auto ready = coproc::wait(waitables_of(open), guard);
    BOOST_REQUIRE_MESSAGE(!ready.empty(), "hang guard expired");
    for (const auto& w : ready) {
      auto* c = std::get<coproc::connection*>(w);
      try {
        messages.push_back(c->recv<message>());
      } catch (const coproc::eof_error&) {
        open.erase(std::find(open.begin(), open.end(), c));
        c->close();
      }
    }
  }
  std::sort(messages.begin(), messages.end());
  BOOST_TEST((messages == expected_messages(procs)));
  for (auto& p : procs) BOOST_TEST(join_guarded(*p) == 0);
}

BOOST_AUTO_TEST_CASE(test_wait_slow) {
  // Python's children sleep at random between messages, so that they arrive while wait()
  // blocks. Here each child sends its next message only when the parent asks for it, so wait()
  // is always asleep when one comes.
  std::array<coproc::connection, 4> ends;
  std::vector<std::unique_ptr<coproc::process>> procs;
  for (auto& end : ends) {
    auto [mine, theirs] = coproc::pipe();
    end = std::move(mine);
    procs.push_back(std::make_unique<coproc::process>(
        [](coproc::connection& c) {
          for (int i = 0; i < 10; ++i) {
            (void)c.recv_bytes();  // "next, please"
            c.send(message{i, static_cast<int>(::getpid())});
          }
          c.close();
        },
        std::move(theirs)));
    procs.back()->daemon(true);
    procs.back()->start();
  }
  std::vector<coproc::connection*> open;
  for (auto& e : ends) {
    e.send_bytes(b("next"));
    open.push_back(&e);
  }
  std::map<coproc::connection*, int> count;
  std::vector<message> messages;
  while (!open.empty()) {
    const auto ready = coproc::wait(waitables_of(open), guard);
    BOOST_REQUIRE_MESSAGE(!ready.empty(), "hang guard expired");
    for (const auto& w : ready) {
      auto* c = std::get<coproc::connection*>(w);
      try {
        messages.push_back(c->recv<message>());
        if (++count[c] < 10) c->send_bytes(b("next"));
      } catch (const coproc::eof_error&) {
        open.erase(std::find(open.begin(), open.end(), c));
        c->close();
      }
    }
  }
  std::sort(messages.begin(), messages.end());
  BOOST_TEST((messages == expected_messages(procs)));
  for (auto& p : procs) BOOST_TEST(join_guarded(*p) == 0);
}

BOOST_AUTO_TEST_CASE(test_wait_socket) {
  // Raw sockets as raw descriptors (ints): each child writes "0\n".."9\n" and closes.
  std::vector<int> readers;
  std::vector<std::unique_ptr<coproc::process>> procs;
  for (int k = 0; k < 4; ++k) {
    int s[2];
    BOOST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) == 0);
    const int w = s[1];
    procs.push_back(std::make_unique<coproc::process>([w] {
      for (int i = 0; i < 10; ++i) {
        const std::string line = std::to_string(i) + "\n";
        if (!coproc_test::write_all(w, line.data(), line.size())) coproc::exit(3);
      }
      ::close(w);
    }));
    procs.back()->daemon(true);
    procs.back()->start();
    ::close(w);  // before the next child starts, or it would keep this socket open
    readers.push_back(s[0]);
  }
  std::map<int, std::string> got;
  std::vector<int> open = readers;
  while (!open.empty()) {
    const auto ready = coproc::wait(std::vector<waitable>(open.begin(), open.end()), guard);
    BOOST_REQUIRE_MESSAGE(!ready.empty(), "hang guard expired");
    for (const auto& w : ready) {
      const int fd = std::get<int>(w);
      char buf[32];
      const auto n = ::read(fd, buf, sizeof buf);
      BOOST_REQUIRE(n >= 0);
      if (n == 0) {
        open.erase(std::find(open.begin(), open.end(), fd));
        ::close(fd);
      } else {
        got[fd].append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  std::string expected;
  for (int i = 0; i < 10; ++i) expected += std::to_string(i) + "\n";
  BOOST_TEST(got.size() == 4u);
  for (auto& [fd, text] : got) BOOST_TEST(text == expected);
  for (auto& p : procs) BOOST_TEST(join_guarded(*p) == 0);
}

BOOST_AUTO_TEST_CASE(test_wait_integer) {
  auto [a, bb] = coproc::pipe();
  auto [release, child_end] = coproc::pipe();
  coproc::process p([](coproc::connection& c) { (void)c.recv_bytes(); }, std::move(child_end));
  p.start();
  const int sentinel = p.sentinel();
  BOOST_TEST(coproc::wait({&a, sentinel, &bb}, 0s).empty());
  release.send_bytes(b("go"));
  auto ready = coproc::wait({&a, sentinel, &bb}, guard);
  BOOST_TEST((ready == std::vector<waitable>{sentinel}));
  // wait() reaped nothing and read nothing: the sentinel stays ready, and a ready connection
  // joins it, in the order given.
  a.send_bytes(b("to bb"));
  ready = coproc::wait({&a, sentinel, &bb}, guard);
  BOOST_TEST((ready == std::vector<waitable>{sentinel, &bb}));
  bb.send_bytes(b("to a"));
  ready = coproc::wait({&a, sentinel, &bb}, guard);
  BOOST_TEST((ready == std::vector<waitable>{&a, sentinel, &bb}));
  // The process object and its sentinel mix too.
  ready = coproc::wait({&p, &a}, 0s);
  BOOST_TEST((ready == std::vector<waitable>{&p, &a}));
  BOOST_TEST(join_guarded(p) == 0);
  BOOST_TEST(coproc_test::text(a.recv_bytes()) == "to a");
  BOOST_TEST(coproc_test::text(bb.recv_bytes()) == "to bb");
}

BOOST_AUTO_TEST_CASE(test_neg_timeout) {
  // A negative timeout polls once and returns at once. Run in a child so that a wait that
  // took it for "forever" is a failure, not a hang.
  auto [a, bb] = coproc::pipe();
  coproc::process p(
      [](coproc::connection& c) {
        int bad = 0;
        if (!coproc::wait({&c}, -1s).empty()) bad |= 1;
        if (!coproc::wait({&c}, -1ns).empty()) bad |= 2;
        if (!coproc::wait({&c}, std::chrono::duration<double>(-1.0)).empty()) bad |= 4;
        if (!coproc::wait({&c}, std::chrono::nanoseconds::min()).empty()) bad |= 8;
        if (!coproc::wait({&c}, std::chrono::hours::min()).empty()) bad |= 16;
        if (c.poll(-1s)) bad |= 32;
        coproc::exit(bad);
      },
      std::ref(a));
  p.start();
  BOOST_TEST(join_guarded(p) == 0);
  BOOST_TEST(coproc::wait({&a}, -1s).empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(wait_on_connections)

BOOST_AUTO_TEST_CASE(a_connection_with_a_message_already_there_is_ready) {
  // Two messages arrive together; after the first is read, the second is still there: the
  // connection is ready for wait() and poll() (nothing was read ahead into a hidden buffer).
  auto [a, bb] = coproc::pipe();
  a.send_bytes(b("one"));
  a.send_bytes(b("two"));
  BOOST_TEST((coproc::wait({&bb}, guard) == std::vector<waitable>{&bb}));
  BOOST_TEST(coproc_test::text(bb.recv_bytes()) == "one");
  BOOST_TEST((coproc::wait({&bb}, 0s) == std::vector<waitable>{&bb}));
  BOOST_TEST((coproc::wait({&a, &bb}) == std::vector<waitable>{&bb}));
  BOOST_TEST(bb.poll());
  BOOST_TEST(coproc_test::text(bb.recv_bytes()) == "two");
  BOOST_TEST(coproc::wait({&bb}, 0s).empty());
  BOOST_TEST(!bb.poll());
}

BOOST_AUTO_TEST_CASE(wait_reads_nothing_and_reports_the_end_of_the_stream) {
  auto [a, bb] = coproc::pipe();
  a.send_bytes(coproc_test::pattern(100000));
  auto ready = coproc::wait({&bb}, guard);
  BOOST_REQUIRE(ready.size() == 1u);
  BOOST_TEST((bb.recv_bytes() == coproc_test::pattern(100000)));
  a.close();
  ready = coproc::wait({&bb}, guard);
  BOOST_TEST((ready == std::vector<waitable>{&bb}));
  BOOST_CHECK_THROW(bb.recv_bytes(), coproc::eof_error);
  // Still ready: the end stays the end.
  BOOST_TEST((coproc::wait({&bb}, 0s) == std::vector<waitable>{&bb}));
}

BOOST_AUTO_TEST_CASE(only_the_ready_ones_of_many) {
  std::array<std::pair<coproc::connection, coproc::connection>, 6> pairs;
  for (auto& p : pairs) p = coproc::pipe();
  std::vector<waitable> all;
  for (auto& p : pairs) all.push_back(&p.second);
  BOOST_TEST(coproc::wait(all, 0s).empty());
  pairs[4].first.send_bytes(b("4"));
  pairs[1].first.send_bytes(b("1"));
  BOOST_TEST((coproc::wait(all, guard) == std::vector<waitable>{&pairs[1].second, &pairs[4].second}));
  BOOST_TEST(coproc_test::text(pairs[1].second.recv_bytes()) == "1");
  BOOST_TEST((coproc::wait(all, guard) == std::vector<waitable>{&pairs[4].second}));
}

// Python's Pipe(duplex=False) writer is an os.pipe() write end: wait() finds it ready only
// when its reader has gone, never merely because it cannot be read.
BOOST_AUTO_TEST_CASE(a_one_way_writer_is_ready_only_when_its_reader_has_gone) {
  auto [r, w] = coproc::pipe(false);
  BOOST_TEST(coproc::wait({&w}, 0s).empty());
  w.send_bytes(b("to the reader"));
  BOOST_TEST(coproc::wait({&w}, 0s).empty());
  BOOST_TEST((coproc::wait({&r, &w}, guard) == std::vector<waitable>{&r}));
  BOOST_TEST(coproc_test::text(r.recv_bytes()) == "to the reader");
  r.close();
  BOOST_TEST((coproc::wait({&w}, guard) == std::vector<waitable>{&w}));
}

BOOST_AUTO_TEST_CASE(misuse) {
  auto [a, bb] = coproc::pipe();
  coproc::connection closed_one = std::move(a);
  closed_one.close();
  expect_misuse([&] { (void)coproc::wait({&closed_one, &bb}, 0s); }, "handle is closed");
  expect_misuse([&] { (void)coproc::wait({&a, &bb}, 0s); }, "handle is closed");  // moved from
  coproc::connection* none = nullptr;
  expect_misuse([&] { (void)coproc::wait({none}, 0s); }, "null connection");
  // An empty list with a zero timeout returns at once, empty.
  BOOST_TEST(coproc::wait({}, 0s).empty());
}

BOOST_AUTO_TEST_SUITE_END()
