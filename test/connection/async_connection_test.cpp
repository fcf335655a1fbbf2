// connection's asynchronous operations (async_send_bytes, async_recv_bytes,
// async_recv_bytes_into, async_send<T>, async_recv<T>): every completion token, where and when
// handlers run, long sequences of awaits, messages larger than the socket buffer, one
// operation per direction, end of stream and broken frames, per-operation cancellation before
// and inside a frame, close() and the io_context's end with operations pending, four threads
// on one io_context, async_wait over connections, a coproc child as the peer.
//
// Ordering never relies on sleeps: an operation is known to be pending because a handler
// bound to an io_context that was polled has not run, and a send is known to be stuck inside
// its frame because it is larger than any socket buffer and the peer does not read.
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <future>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <variant>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "../async/async_support.hpp"
#include "peer_support.hpp"

using namespace std::chrono_literals;
using namespace boost::asio::experimental::awaitable_operators;
using async_test::rethrow;
using async_test::run_guarded;
using async_test::run_until;
using coproc::bytes;
using coproc_test::b;
using coproc_test::guard;
using coproc_test::pattern;
using coproc_test::text;
namespace asio = boost::asio;
using error_code = boost::system::error_code;

namespace {

constexpr std::size_t sixteen_mib = 16u << 20;  // larger than any socket buffer here

template <class T>
T get(std::future<T>& f) {
  BOOST_REQUIRE_MESSAGE(f.wait_for(guard) == std::future_status::ready, "hang guard expired");
  return f.get();
}

// What one completion saw.
template <class R>
struct outcome {
  int calls = 0;
  error_code ec;
  R value{};
  std::thread::id thread;
};
struct no_value {};

// A completion handler that records into `o` (R: the second argument's type; no_value for
// void(error_code)).
template <class R>
auto recorder(outcome<R>& o) {
  if constexpr (std::is_same_v<R, no_value>) {
    return [&o](error_code ec) {
      ++o.calls;
      o.ec = ec;
      o.thread = std::this_thread::get_id();
    };
  } else {
    return [&o](error_code ec, R v) {
      ++o.calls;
      o.ec = ec;
      o.value = std::move(v);
      o.thread = std::this_thread::get_id();
    };
  }
}

// Bound to `io`, and to `signal`'s slot when given.
template <class R>
auto on(asio::io_context& io, outcome<R>& o) {
  return asio::bind_executor(io, recorder(o));
}
template <class R>
auto on(asio::io_context& io, outcome<R>& o, asio::cancellation_signal& signal) {
  return asio::bind_cancellation_slot(signal.slot(), asio::bind_executor(io, recorder(o)));
}

// Raw bytes straight onto the socket of `c` (a scripted peer that may break the framing).
void raw_write(const coproc::connection& c, std::span<const std::byte> data) {
  BOOST_REQUIRE(coproc_test::write_all(c.fileno(), data.data(), data.size()));
}
void raw_write(const coproc::connection& c, std::initializer_list<unsigned char> data) {
  std::vector<std::byte> v;
  for (unsigned char x : data) v.push_back(std::byte{x});
  raw_write(c, v);
}
std::array<std::byte, 4> header(std::uint32_t n) {
  return {std::byte(n >> 24), std::byte(n >> 16), std::byte(n >> 8), std::byte(n)};
}

// The filler frames of fill_send_buffer(): 56 bytes of 'f'.
const bytes& filler() {
  static const bytes f(56, std::byte{'f'});
  return f;
}

// Writes whole filler frames to `c`'s socket without blocking until its send buffer is full,
// so that the next send cannot move a single byte while the peer does not read. A small
// write on a Unix stream socket is one buffer of the kernel's: all of it or EAGAIN.
std::size_t fill_send_buffer(const coproc::connection& c) {
  std::vector<std::byte> frame;
  const auto h = header(static_cast<std::uint32_t>(filler().size()));
  frame.insert(frame.end(), h.begin(), h.end());
  frame.insert(frame.end(), filler().begin(), filler().end());
  std::size_t n = 0;
  for (;;) {
    const auto r = ::send(c.fileno(), frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0 && errno == EAGAIN) break;
    BOOST_REQUIRE_MESSAGE(r == static_cast<long>(frame.size()), "a filler frame was cut");
    ++n;
  }
  BOOST_REQUIRE(n > 0);
  return n;
}

void drain_fillers(coproc::connection& peer, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    BOOST_REQUIRE(peer.poll(guard));
    BOOST_REQUIRE((peer.recv_bytes() == filler()));
  }
}

// The error code of a boost::system::system_error thrown by `f` (an awaited operation).
template <class F>
error_code thrown_code(F&& f) {
  try {
    f();
  } catch (const boost::system::system_error& e) {
    return e.code();
  }
  return {};
}

// Message `i` of the long sequences.
std::string numbered(int i) { return "message " + std::to_string(i); }

// Message `i` of direction `dir` of pair `pair` in the four-thread test: its identity in its
// first six bytes, a pattern after; every 50th one is larger than the socket buffer.
bytes identified(int pair, int dir, int i) {
  const std::size_t size = i % 50 == 7 ? 300'000 : 6 + static_cast<std::size_t>(i * 37 % 500);
  bytes m = pattern(size, static_cast<unsigned>(pair * 2 + dir));
  m[0] = std::byte(pair);
  m[1] = std::byte(dir);
  m[2] = std::byte(i >> 24);
  m[3] = std::byte(i >> 16);
  m[4] = std::byte(i >> 8);
  m[5] = std::byte(i);
  return m;
}

// Coroutines. Named functions taking their objects by reference (the test keeps them alive):
// no lambda temporaries next to a co_await (GCC 12).

asio::awaitable<void> send_numbered(coproc::connection& c, int n) {
  for (int i = 0; i < n; ++i) {
    const std::string m = numbered(i);
    const std::size_t sent = co_await c.async_send_bytes(b(m), asio::use_awaitable);
    if (sent != m.size()) throw std::runtime_error("short send at " + std::to_string(i));
  }
}

// Alternates async_recv_bytes and async_recv_bytes_into; counts the messages that matched.
asio::awaitable<void> recv_numbered(coproc::connection& c, int n, int& matched) {
  std::array<std::byte, 64> buf;
  for (int i = 0; i < n; ++i) {
    std::string got;
    if (i % 2 == 0) {
      got = text(co_await c.async_recv_bytes(asio::use_awaitable));
    } else {
      const std::size_t size = co_await c.async_recv_bytes_into(buf, asio::use_awaitable);
      got = text(std::span(buf).first(size));
    }
    if (got == numbered(i)) ++matched;
  }
}

asio::awaitable<void> send_patterns(coproc::connection& c, int n, std::size_t size) {
  for (int i = 0; i < n; ++i) {
    const bytes m = pattern(size, static_cast<unsigned>(i));
    co_await c.async_send_bytes(m, asio::use_awaitable);
  }
}

asio::awaitable<void> send_identified(coproc::connection& c, int pair, int dir, int n) {
  for (int i = 0; i < n; ++i) {
    const bytes m = identified(pair, dir, i);
    co_await c.async_send_bytes(m, asio::use_awaitable);
  }
}

asio::awaitable<void> recv_identified(coproc::connection& c, int pair, int dir, int n,
                                      std::atomic<int>& matched) {
  for (int i = 0; i < n; ++i) {
    const bytes m = co_await c.async_recv_bytes(asio::use_awaitable);
    if (m == identified(pair, dir, i)) matched.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(tokens)

// A plain callback has no executor: it runs on coproc's I/O thread, never on the initiating
// thread inside the initiating call, even when the message is already there.
BOOST_AUTO_TEST_CASE(plain_callback) {
  auto [a, peer] = coproc::pipe();
  static thread_local bool initiating = false;
  struct seen {
    std::promise<void> done;
    error_code ec;
    bytes value;
    std::size_t size = 0;
    bool inside = false;
    std::thread::id thread;
  };
  {
    seen s;
    auto f = s.done.get_future();
    const bytes message = b("plain");
    initiating = true;
    a.async_send_bytes(message, [&s](error_code ec, std::size_t n) {
      s.ec = ec;
      s.size = n;
      s.inside = initiating;
      s.thread = std::this_thread::get_id();
      s.done.set_value();
    });
    initiating = false;
    get(f);
    BOOST_TEST(!s.ec);
    BOOST_TEST(s.size == 5u);
    BOOST_TEST(!s.inside);
    BOOST_TEST((s.thread != std::this_thread::get_id()));
    BOOST_TEST(text(peer.recv_bytes()) == "plain");
  }
  {
    peer.send_bytes(b("already there"));
    seen s;
    auto f = s.done.get_future();
    initiating = true;
    a.async_recv_bytes([&s](error_code ec, bytes m) {
      s.ec = ec;
      s.value = std::move(m);
      s.inside = initiating;
      s.done.set_value();
    });
    initiating = false;
    get(f);
    BOOST_TEST(!s.ec);
    BOOST_TEST(text(s.value) == "already there");
    BOOST_TEST(!s.inside);
  }
  {
    // Pending first: the wait is on coproc's I/O thread's reactor.
    seen s;
    auto f = s.done.get_future();
    std::array<std::byte, 16> buf{};
    a.async_recv_bytes_into(buf, [&s](error_code ec, std::size_t n) {
      s.ec = ec;
      s.size = n;
      s.done.set_value();
    });
    peer.send_bytes(b("later"));
    get(f);
    BOOST_TEST(!s.ec);
    BOOST_TEST(text(std::span(buf).first(s.size)) == "later");
  }
}

// Bound to an io_context, initiated from inside a handler of that io_context (where a
// dispatch would run at once): the completion still comes after the initiating call, with
// the message already there or the send fitting the buffer.
BOOST_AUTO_TEST_CASE(never_completes_inside_the_initiating_call) {
  auto [a, peer] = coproc::pipe();
  peer.send_bytes(b("one"));
  peer.send_bytes(b("two"));
  peer.send<int>(3);
  asio::io_context io;
  bool initiated = false, inner_initiated = false;
  std::vector<std::string> order;
  std::array<std::byte, 8> buf{};
  const bytes out = b("out");
  asio::post(io, [&] {
    a.async_send_bytes(out, asio::bind_executor(io, [&](error_code ec, std::size_t n) {
      BOOST_TEST(initiated);
      BOOST_TEST(!ec);
      BOOST_TEST(n == 3u);
      order.push_back("send_bytes");
    }));
    a.async_recv_bytes(asio::bind_executor(io, [&](error_code ec, bytes m) {
      BOOST_TEST(initiated);
      BOOST_TEST(!ec);
      BOOST_TEST(text(m) == "one");
      order.push_back("recv_bytes");
      // The next receive, from this handler: again never inside its initiating call.
      a.async_recv_bytes_into(buf, asio::bind_executor(io, [&](error_code ec2, std::size_t n) {
        BOOST_TEST(inner_initiated);
        BOOST_TEST(!ec2);
        BOOST_TEST(text(std::span(buf).first(n)) == "two");
        order.push_back("recv_bytes_into");
        a.async_recv<int>(asio::bind_executor(io, [&](error_code ec3, int v) {
          BOOST_TEST(!ec3);
          BOOST_TEST(v == 3);
          order.push_back("recv");
        }));
      }));
      inner_initiated = true;
    }));
    initiated = true;
  });
  run_guarded(io);
  BOOST_TEST((order == std::vector<std::string>{"send_bytes", "recv_bytes", "recv_bytes_into", "recv"}));
  BOOST_TEST(text(peer.recv_bytes()) == "out");
}

// Each completion runs once, after the initiating call, on the thread running the io_context.
BOOST_AUTO_TEST_CASE(handlers_bound_to_an_io_context) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  outcome<std::size_t> sent, into;
  outcome<bytes> got;
  outcome<no_value> typed_sent;
  outcome<std::map<std::string, std::vector<int>>> typed_got;
  const bytes abc = b("abc");
  a.async_send_bytes(abc, on(io, sent));
  a.async_send<std::vector<std::string>>({"x", "y"}, on(io, typed_sent));  // after the first
  BOOST_TEST(sent.calls == 0);
  BOOST_TEST(typed_sent.calls == 0);
  run_guarded(io);
  BOOST_TEST(sent.calls == 1);
  BOOST_TEST(!sent.ec);
  BOOST_TEST(sent.value == 3u);
  BOOST_TEST((sent.thread == std::this_thread::get_id()));
  BOOST_TEST(typed_sent.calls == 1);
  BOOST_TEST(!typed_sent.ec);
  BOOST_TEST(text(peer.recv_bytes()) == "abc");
  BOOST_TEST((peer.recv<std::vector<std::string>>() == std::vector<std::string>{"x", "y"}));

  a.async_recv_bytes(on(io, got));
  io.restart();
  io.poll();
  BOOST_TEST(got.calls == 0);  // nothing there yet: pending
  peer.send_bytes(b("in"));
  run_guarded(io);
  BOOST_TEST(got.calls == 1);
  BOOST_TEST(text(got.value) == "in");

  std::array<std::byte, 8> buf{};
  a.async_recv_bytes_into(buf, on(io, into));
  peer.send_bytes(b("into"));
  run_guarded(io);
  BOOST_TEST(into.calls == 1);
  BOOST_TEST(into.value == 4u);
  BOOST_TEST(text(std::span(buf).first(4)) == "into");

  const std::map<std::string, std::vector<int>> value{{"a", {1, 2}}, {"b", {}}};
  peer.send(value);
  a.async_recv<std::map<std::string, std::vector<int>>>(on(io, typed_got));
  run_guarded(io);
  BOOST_TEST(typed_got.calls == 1);
  BOOST_TEST(!typed_got.ec);
  BOOST_TEST((typed_got.value == value));
}

BOOST_AUTO_TEST_CASE(use_awaitable_and_as_tuple) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  std::vector<std::string> seen;
  error_code tuple_eof, thrown_eof;
  auto body = [&]() -> asio::awaitable<void> {
    const std::size_t n = co_await a.async_send_bytes(b("to peer"), asio::use_awaitable);
    seen.push_back(std::to_string(n));
    co_await a.async_send<std::string>("typed", asio::use_awaitable);
    const bytes m = co_await a.async_recv_bytes(asio::use_awaitable);
    seen.push_back(text(m));
    std::array<std::byte, 16> buf{};
    const std::size_t k = co_await a.async_recv_bytes_into(buf, asio::use_awaitable);
    seen.push_back(text(std::span(buf).first(k)));
    const double d = co_await a.async_recv<double>(asio::use_awaitable);
    seen.push_back(std::to_string(d));
    auto [ec1, n1] = co_await a.async_send_bytes(b("tuple"), asio::as_tuple(asio::use_awaitable));
    seen.push_back(ec1 ? ec1.message() : std::to_string(n1));
    // The peer has gone: eof as a value (as_tuple) and as an exception (use_awaitable).
    auto [ec2, m2] = co_await a.async_recv_bytes(asio::as_tuple(asio::use_awaitable));
    tuple_eof = ec2;
    BOOST_TEST(m2.empty());
    try {
      co_await a.async_recv<int>(asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      thrown_eof = e.code();
    }
  };
  peer.send_bytes(b("from peer"));
  peer.send_bytes(b("into"));
  peer.send(2.5);
  // The peer reads what comes, then hangs up (no checks in this thread: Boost.Test is not
  // thread-safe).
  auto closer = std::async(std::launch::async, [&peer = peer] {
    std::vector<std::string> read;
    if (peer.poll(guard)) {
      read.push_back(text(peer.recv_bytes()));
      read.push_back(peer.recv<std::string>());
      read.push_back(text(peer.recv_bytes()));
    }
    peer.close();
    return read;
  });
  asio::co_spawn(io, body(), rethrow{});
  run_guarded(io);
  BOOST_TEST((get(closer) == std::vector<std::string>{"to peer", "typed", "tuple"}));
  BOOST_TEST((seen == std::vector<std::string>{"7", "from peer", "into", std::to_string(2.5), "5"}));
  BOOST_TEST((tuple_eof == asio::error::eof));
  BOOST_TEST((thrown_eof == asio::error::eof));
}

// use_future: the operation runs on coproc's I/O thread; errors arrive as exceptions.
BOOST_AUTO_TEST_CASE(use_future) {
  auto [a, peer] = coproc::pipe();
  const bytes message = b("future");
  auto sent = a.async_send_bytes(message, asio::use_future);
  BOOST_TEST(get(sent) == 6u);
  BOOST_TEST(text(peer.recv_bytes()) == "future");
  auto got = a.async_recv_bytes(asio::use_future);
  peer.send_bytes(b("back"));
  BOOST_TEST(text(get(got)) == "back");
  std::array<std::byte, 4> buf{};
  auto into = a.async_recv_bytes_into(buf, asio::use_future);
  peer.send_bytes(b("four"));
  BOOST_TEST(get(into) == 4u);
  auto typed = a.async_recv<std::vector<int>>(asio::use_future);
  peer.send(std::vector<int>{1, 2, 3});
  BOOST_TEST((get(typed) == std::vector<int>{1, 2, 3}));
  auto typed_sent = a.async_send(std::string("s"), asio::use_future);
  get(typed_sent);
  BOOST_TEST(peer.recv<std::string>() == "s");
  auto eof = a.async_recv_bytes(asio::use_future);
  peer.close();
  BOOST_REQUIRE(eof.wait_for(guard) == std::future_status::ready);
  BOOST_TEST((thrown_code([&] { eof.get(); }) == asio::error::eof));
}

// deferred: nothing is sent or read until the deferred operation is launched.
BOOST_AUTO_TEST_CASE(deferred) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  outcome<std::size_t> sent;
  const bytes message = b("deferred");
  auto send = a.async_send_bytes(message, asio::deferred);
  BOOST_TEST(!peer.poll());
  std::move(send)(on(io, sent));
  run_guarded(io);
  BOOST_TEST(sent.calls == 1);
  BOOST_TEST(sent.value == 8u);
  BOOST_TEST(text(peer.recv_bytes()) == "deferred");

  peer.send_bytes(b("first"));
  peer.send<int>(42);
  outcome<bytes> got;
  auto recv = a.async_recv_bytes(asio::deferred);
  BOOST_TEST(a.poll());  // not read yet
  std::move(recv)(on(io, got));
  run_guarded(io);
  BOOST_TEST(text(got.value) == "first");

  int typed = 0;
  auto body = [&]() -> asio::awaitable<void> {
    typed = co_await a.async_recv<int>(asio::deferred);
  };
  asio::co_spawn(io, body(), rethrow{});
  run_guarded(io);
  BOOST_TEST(typed == 42);
}

// Handlers bound to a strand of an io_context run by two threads run inside the strand; a
// thread_pool's handlers run on the pool.
BOOST_AUTO_TEST_CASE(strand_and_thread_pool_executors) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  auto strand = asio::make_strand(io);
  constexpr int rounds = 50;
  std::vector<bytes> messages;
  for (int i = 0; i < rounds; ++i) messages.push_back(b(numbered(i)));
  // Touched on the strand only.
  int outside = 0, chains_left = 2;
  std::promise<void> finished;
  auto work = asio::make_work_guard(io);
  std::thread t1([&] { io.run(); }), t2([&] { io.run(); });
  auto chain_done = [&] {
    if (--chains_left == 0) finished.set_value();
  };
  // A sequence on the strand: each send's handler starts the next, each receive likewise.
  std::function<void(int)> send_next = [&](int i) {
    if (i == rounds) return chain_done();
    a.async_send_bytes(messages[i], asio::bind_executor(strand, [&, i](error_code ec, std::size_t) {
      if (!strand.running_in_this_thread() || ec) ++outside;
      send_next(i + 1);
    }));
  };
  std::function<void(int)> recv_next = [&](int i) {
    if (i == rounds) return chain_done();
    a.async_recv_bytes(asio::bind_executor(strand, [&, i](error_code ec, bytes m) {
      if (!strand.running_in_this_thread() || ec || text(m) != numbered(i)) ++outside;
      recv_next(i + 1);
    }));
  };
  asio::post(strand, [&] {
    send_next(0);
    recv_next(0);
  });
  auto echo = std::async(std::launch::async, [&peer = peer] {
    for (int i = 0; i < rounds && peer.poll(guard); ++i) peer.send_bytes(peer.recv_bytes());
  });
  get(echo);
  auto all_done = finished.get_future();
  get(all_done);
  work.reset();
  t1.join();
  t2.join();
  BOOST_TEST(outside == 0);

  asio::thread_pool pool(1);
  std::promise<std::thread::id> pool_thread;
  asio::post(pool, [&] { pool_thread.set_value(std::this_thread::get_id()); });
  auto pool_id = pool_thread.get_future();
  const std::thread::id expected = get(pool_id);
  std::promise<std::thread::id> ran_on;
  auto ran = ran_on.get_future();
  a.async_recv_bytes(asio::bind_executor(pool, [&](error_code, bytes) {
    ran_on.set_value(std::this_thread::get_id());
  }));
  peer.send_bytes(b("pool"));
  BOOST_TEST((get(ran) == expected));
  pool.join();
}

BOOST_AUTO_TEST_CASE(typed_messages) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  // A value that has no JSON form: message_error from the initiating call, nothing sent, and
  // the end is not left busy.
  outcome<no_value> never;
  BOOST_CHECK_THROW(a.async_send(std::nan(""), on(io, never)), coproc::message_error);
  BOOST_TEST(!peer.poll());
  outcome<no_value> sent;
  a.async_send(1.5, on(io, sent));
  run_guarded(io);
  BOOST_TEST(never.calls == 0);
  BOOST_TEST(sent.calls == 1);
  BOOST_TEST(!sent.ec);
  BOOST_TEST(peer.recv<double>() == 1.5);
  // A message that does not convert: bad_message and a default T; consumed; the end goes on.
  peer.send_bytes(b("not json"));
  peer.send<int>(7);
  outcome<int> bad, good;
  a.async_recv<int>(on(io, bad));
  run_guarded(io);
  BOOST_TEST((bad.ec == boost::system::errc::bad_message));
  BOOST_TEST(bad.value == 0);
  a.async_recv<int>(on(io, good));
  run_guarded(io);
  BOOST_TEST(!good.ec);
  BOOST_TEST(good.value == 7);
}

BOOST_AUTO_TEST_CASE(misuse_throws_from_the_initiating_call) {
  asio::io_context io;
  outcome<std::size_t> sent;
  outcome<bytes> got;
  {
    auto [reader, writer] = coproc::pipe(false);
    coproc_test::expect_misuse([&] { reader.async_send_bytes(b("x"), on(io, sent)); },
                               "connection is read-only");
    coproc_test::expect_misuse([&] { reader.async_send<int>(1, asio::use_future); },
                               "connection is read-only");
    coproc_test::expect_misuse([&] { writer.async_recv_bytes(on(io, got)); },
                               "connection is write-only");
    std::array<std::byte, 4> buf{};
    coproc_test::expect_misuse([&] { writer.async_recv_bytes_into(buf, on(io, sent)); },
                               "connection is write-only");
    coproc_test::expect_misuse([&] { writer.async_recv<int>(asio::use_future); },
                               "connection is write-only");
    reader.close();
    coproc_test::expect_misuse([&] { reader.async_recv_bytes(on(io, got)); }, "handle is closed");
  }
  coproc::connection never_opened;
  coproc_test::expect_misuse([&] { never_opened.async_send_bytes(b("x"), on(io, sent)); },
                             "handle is closed");
  auto [a, peer] = coproc::pipe();
  coproc::connection moved = std::move(a);
  coproc_test::expect_misuse([&] { a.async_recv_bytes(on(io, got)); }, "handle is closed");
  run_guarded(io);
  BOOST_TEST(sent.calls == 0);
  BOOST_TEST(got.calls == 0);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(sequences)

// REGRESSION: the end was released only when the operation object died, and the operation
// outlives its handler when it completes from the reactor (the handler is dispatched from the
// reactor's completion): the coroutine's next await, started from inside that handler, found
// the end busy (operation_in_progress) and the bench's awaited row hung. The receiver starts
// first on an empty socket, so its first receive already completes that way.
BOOST_AUTO_TEST_CASE(ten_thousand_awaits_each_way_in_coroutines) {
  constexpr int n = 10'000;
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  int matched = 0;
  asio::co_spawn(io, recv_numbered(peer, n, matched), rethrow{});
  asio::co_spawn(io, send_numbered(a, n), rethrow{});
  run_guarded(io, 240s);
  BOOST_TEST(matched == n);
  BOOST_TEST(!peer.poll());
  BOOST_TEST(!a.poll());
}

// The bench's shape: awaited sends to a blocking reader; the socket buffer fills again and
// again, so most sends complete from the reactor.
BOOST_AUTO_TEST_CASE(ten_thousand_awaited_sends_to_a_blocking_reader) {
  constexpr int n = 10'000;
  constexpr std::size_t size = 4096;
  auto [a, peer] = coproc::pipe();
  auto reader = std::async(std::launch::async, [&peer = peer] {
    int matched = 0;
    for (int i = 0; i < n; ++i) {
      if (!peer.poll(guard)) break;
      if (peer.recv_bytes() == pattern(size, static_cast<unsigned>(i))) ++matched;
    }
    return matched;
  });
  asio::io_context io;
  asio::co_spawn(io, send_patterns(a, n, size), rethrow{});
  run_guarded(io, 240s);
  BOOST_TEST(get(reader) == n);
}

// The same with callbacks: each send's handler starts the next. Every message is larger than
// the socket buffer, so every send completes from the reactor.
BOOST_AUTO_TEST_CASE(callback_chain_of_sends) {
  constexpr int n = 16;
  constexpr std::size_t size = 1u << 20;
  auto [a, peer] = coproc::pipe();
  std::vector<bytes> messages;
  for (int i = 0; i < n; ++i) messages.push_back(pattern(size, static_cast<unsigned>(i)));
  asio::io_context io;
  int completed = 0;
  error_code first_error;
  std::function<void(int)> next = [&](int i) {
    a.async_send_bytes(messages[i], asio::bind_executor(io, [&, i](error_code ec, std::size_t sent) {
      if (ec && !first_error) first_error = ec;
      if (ec || sent != size) return;
      ++completed;
      if (i + 1 < n) next(i + 1);
    }));
  };
  auto reader = std::async(std::launch::async, [&peer = peer, &messages] {
    int matched = 0;
    for (int i = 0; i < n; ++i) {
      if (!peer.poll(guard)) break;
      if (peer.recv_bytes() == messages[i]) ++matched;
    }
    return matched;
  });
  next(0);
  run_guarded(io);
  a.close();  // a broken chain: the reader sees the end of the stream instead of waiting
  BOOST_TEST(!first_error, first_error.message());
  BOOST_TEST(completed == n);
  BOOST_TEST(get(reader) == n);
}

// Receives in a callback chain from a blocking writer: every message is larger than the
// socket buffer, so every receive waits inside its frame and completes from the reactor.
BOOST_AUTO_TEST_CASE(callback_chain_of_receives) {
  constexpr int n = 16;
  constexpr std::size_t size = 1u << 20;
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  int matched = 0;
  error_code first_error;
  std::function<void(int)> next = [&](int i) {
    a.async_recv_bytes(asio::bind_executor(io, [&, i](error_code ec, bytes m) {
      if (ec && !first_error) first_error = ec;
      if (ec) return;
      if (m == pattern(size, static_cast<unsigned>(i))) ++matched;
      if (i + 1 < n) next(i + 1);
    }));
  };
  auto writer = std::async(std::launch::async, [&peer = peer] {
    for (int i = 0; i < n; ++i) peer.send_bytes(pattern(size, static_cast<unsigned>(i)));
  });
  next(0);
  run_guarded(io);
  a.close();  // a broken chain: the writer fails (EPIPE) instead of waiting
  BOOST_TEST(!first_error, first_error.message());
  BOOST_TEST(matched == n);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(large_messages)

// 16 MiB sent asynchronously to a peer that reads slowly: 4 KiB read(2) calls of its own,
// blocking, in a thread.
BOOST_AUTO_TEST_CASE(sixteen_mib_to_a_slow_reader) {
  auto [a, peer] = coproc::pipe();
  const bytes message = pattern(sixteen_mib, 3);
  auto reader = std::async(std::launch::async, [fd = peer.fileno()] {
    bytes all;
    std::array<std::byte, 4096> chunk;
    while (all.size() < 4 + sixteen_mib) {
      if (!coproc_test::wait_readable(fd, guard)) break;
      const auto want = std::min(chunk.size(), 4 + sixteen_mib - all.size());
      const auto n = ::read(fd, chunk.data(), want);
      if (n <= 0) break;
      all.insert(all.end(), chunk.begin(), chunk.begin() + n);
    }
    return all;
  });
  asio::io_context io;
  outcome<std::size_t> sent;
  a.async_send_bytes(message, on(io, sent));
  run_guarded(io);
  const bytes wire = get(reader);
  BOOST_TEST(sent.calls == 1);
  BOOST_TEST(!sent.ec);
  BOOST_TEST(sent.value == sixteen_mib);
  BOOST_REQUIRE(wire.size() == 4 + sixteen_mib);
  const auto h = header(static_cast<std::uint32_t>(sixteen_mib));
  BOOST_TEST(std::equal(h.begin(), h.end(), wire.begin()));
  BOOST_TEST(std::equal(message.begin(), message.end(), wire.begin() + 4));
}

// 16 MiB each way at once on one end, awaited, with a blocking peer in a thread (echo), and
// received into a caller's buffer.
BOOST_AUTO_TEST_CASE(sixteen_mib_each_way_awaited) {
  auto [a, peer] = coproc::pipe();
  const bytes out = pattern(sixteen_mib, 5), back = pattern(sixteen_mib, 6);
  // The peer sends twice and receives twice at once, blocking, in two threads.
  auto peer_sends = std::async(std::launch::async, [&peer = peer, &back] {
    peer.send_bytes(back);
    peer.send_bytes(back);
  });
  auto peer_receives = std::async(std::launch::async, [&peer = peer] {
    std::vector<bytes> got;
    while (got.size() < 2 && peer.poll(guard)) got.push_back(peer.recv_bytes());
    return got;
  });
  asio::io_context io;
  bytes received;
  std::vector<std::byte> into(sixteen_mib + 10);
  std::size_t into_size = 0;
  auto sending = [&]() -> asio::awaitable<void> {
    co_await a.async_send_bytes(out, asio::use_awaitable);
    co_await a.async_send_bytes(out, asio::use_awaitable);
  };
  auto receiving = [&]() -> asio::awaitable<void> {
    received = co_await a.async_recv_bytes(asio::use_awaitable);
    into_size = co_await a.async_recv_bytes_into(into, asio::use_awaitable);
  };
  asio::co_spawn(io, sending(), rethrow{});
  asio::co_spawn(io, receiving(), rethrow{});
  run_guarded(io);
  get(peer_sends);
  const std::vector<bytes> got = get(peer_receives);
  BOOST_REQUIRE(got.size() == 2u);
  BOOST_TEST((got[0] == out));
  BOOST_TEST((got[1] == out));
  BOOST_TEST((received == back));
  BOOST_REQUIRE(into_size == sixteen_mib);
  BOOST_TEST(std::equal(back.begin(), back.end(), into.begin()));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(one_operation_per_direction)

BOOST_AUTO_TEST_CASE(a_second_send_while_one_is_pending) {
  auto [a, peer] = coproc::pipe();
  const bytes big = pattern(sixteen_mib, 9);
  asio::io_context io;
  outcome<std::size_t> first, second, third;
  a.async_send_bytes(big, on(io, first));
  io.poll();
  BOOST_REQUIRE(first.calls == 0);  // stuck: the peer does not read
  const bytes second_message = b("second");
  a.async_send_bytes(second_message, on(io, second));
  io.poll();
  BOOST_TEST(second.calls == 1);
  BOOST_TEST((second.ec == boost::system::errc::operation_in_progress));
  BOOST_TEST((std::error_code(second.ec) == std::errc::operation_in_progress));
  BOOST_TEST(second.value == 0u);
  // The refusal did not free the end: the first send still holds it.
  a.async_send<int>(3, asio::bind_executor(io, [&](error_code ec) { third.ec = ec; ++third.calls; }));
  io.poll();
  BOOST_TEST(third.calls == 1);
  BOOST_TEST((third.ec == boost::system::errc::operation_in_progress));
  coproc_test::expect_misuse([&] { a.send_bytes(b("blocking")); }, "another send is in progress");
  // The other direction is free meanwhile.
  outcome<bytes> got;
  a.async_recv_bytes(on(io, got));
  peer.send_bytes(b("other way"));
  run_until(io, [&] { return got.calls == 1; });
  BOOST_TEST(!got.ec);
  BOOST_TEST(text(got.value) == "other way");
  BOOST_TEST(first.calls == 0);
  // The first one is intact and alone on the wire.
  auto reader = std::async(std::launch::async, [&peer = peer] {
    bytes m = peer.recv_bytes();
    return std::make_pair(std::move(m), peer.poll());
  });
  run_guarded(io);
  auto [m, more] = get(reader);
  BOOST_TEST(first.calls == 1);
  BOOST_TEST(!first.ec);
  BOOST_TEST(first.value == sixteen_mib);
  BOOST_TEST((m == big));
  BOOST_TEST(!more);
  // The end is free again.
  a.send_bytes(b("after"));
  BOOST_TEST(text(peer.recv_bytes()) == "after");
}

BOOST_AUTO_TEST_CASE(a_second_receive_while_one_is_pending) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  outcome<bytes> first;
  outcome<std::size_t> second;
  a.async_recv_bytes(on(io, first));
  io.poll();
  BOOST_REQUIRE(first.calls == 0);
  std::array<std::byte, 8> buf{};
  a.async_recv_bytes_into(buf, on(io, second));
  io.poll();
  BOOST_TEST(second.calls == 1);
  BOOST_TEST((second.ec == boost::system::errc::operation_in_progress));
  BOOST_TEST((std::error_code(second.ec) == std::errc::operation_in_progress));
  coproc_test::expect_misuse([&] { (void)a.recv_bytes(); }, "another receive is in progress");
  outcome<int> typed;
  a.async_recv<int>(on(io, typed));
  io.poll();
  BOOST_TEST((typed.ec == boost::system::errc::operation_in_progress));
  peer.send_bytes(b("for the first"));
  peer.send_bytes(b("next"));
  run_guarded(io);
  BOOST_TEST(first.calls == 1);
  BOOST_TEST(!first.ec);
  BOOST_TEST(text(first.value) == "for the first");
  BOOST_TEST(text(a.recv_bytes()) == "next");
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(errors)

// End of stream before a frame: eof, at once or after a wait, for every receive; it stays the
// end of the stream (the end is not poisoned by it).
BOOST_AUTO_TEST_CASE(end_of_stream_before_a_frame_is_eof) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  outcome<bytes> waiting;
  a.async_recv_bytes(on(io, waiting));
  io.poll();
  BOOST_REQUIRE(waiting.calls == 0);
  peer.close();
  run_guarded(io);
  BOOST_TEST((waiting.ec == asio::error::eof));
  outcome<bytes> at_once;
  outcome<std::size_t> into;
  outcome<int> typed;
  std::array<std::byte, 4> buf{};
  a.async_recv_bytes(on(io, at_once));
  run_guarded(io);
  a.async_recv_bytes_into(buf, on(io, into));
  run_guarded(io);
  a.async_recv<int>(on(io, typed));
  run_guarded(io);
  BOOST_TEST((at_once.ec == asio::error::eof));
  BOOST_TEST((into.ec == asio::error::eof));
  BOOST_TEST((typed.ec == asio::error::eof));
  BOOST_TEST(a.readable());
}

// End of stream inside a frame: an I/O error, and the end no longer reads (the stream is out
// of step), whether the bytes were there at once or came in two parts.
BOOST_AUTO_TEST_CASE(end_of_stream_inside_a_frame_poisons_reading) {
  for (bool wait_first : {false, true}) {
    BOOST_TEST_CONTEXT((wait_first ? "after a wait" : "at once")) {
      auto [a, peer] = coproc::pipe();
      asio::io_context io;
      outcome<bytes> got;
      raw_write(peer, header(10));
      if (!wait_first) {
        raw_write(peer, b("abc"));
        peer.close();
      }
      a.async_recv_bytes(on(io, got));
      io.poll();
      if (wait_first) {
        BOOST_REQUIRE(got.calls == 0);
        raw_write(peer, b("abc"));
        peer.close();
      }
      run_guarded(io);
      BOOST_TEST(got.calls == 1);
      BOOST_TEST((got.ec == boost::system::errc::io_error));
      BOOST_TEST(!a.readable());
      BOOST_TEST(a.writable());
      coproc_test::expect_misuse([&] { a.async_recv_bytes(on(io, got)); }, "connection is write-only");
      coproc_test::expect_misuse([&] { (void)a.recv_bytes(); }, "connection is write-only");
    }
  }
}

// A negative length other than -1 (Python never sends one): protocol_error, end poisoned.
// The long form (-1, then 64 bits) is Python's and reads, whatever the length.
BOOST_AUTO_TEST_CASE(headers) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  outcome<bytes> long_form, bad;
  raw_write(peer, {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o'});
  a.async_recv_bytes(on(io, long_form));
  run_guarded(io);
  BOOST_TEST(!long_form.ec);
  BOOST_TEST(text(long_form.value) == "hello");
  raw_write(peer, {0x80, 0, 0, 0, 'x'});
  a.async_recv_bytes(on(io, bad));
  run_guarded(io);
  BOOST_TEST((bad.ec == boost::system::errc::protocol_error));
  BOOST_TEST(!a.readable());
  coproc_test::expect_misuse([&] { a.async_recv<int>(asio::use_future); }, "connection is write-only");
}

// A peer that has gone: broken_pipe, on a socket and on a pipe, and SIGPIPE does not end us.
BOOST_AUTO_TEST_CASE(send_to_a_peer_that_has_gone) {
  asio::io_context io;
  {
    auto [a, peer] = coproc::pipe();
    peer.close();
    outcome<std::size_t> sent;
    const bytes message = b("nobody");
    a.async_send_bytes(message, on(io, sent));
    run_guarded(io);
    BOOST_TEST((sent.ec == boost::system::errc::broken_pipe));
  }
  {
    int fds[2];
    BOOST_REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    coproc::connection w(fds[1], false, true);
    ::close(fds[0]);
    outcome<std::size_t> sent;
    const bytes message = b("nobody");
    w.async_send_bytes(message, on(io, sent));
    run_guarded(io);
    BOOST_TEST((sent.ec == boost::system::errc::broken_pipe));
  }
}

// recv_bytes_into with a buffer too small: message_size with the message's length; the
// message is consumed and the next one reads correctly (also one that came in many parts).
BOOST_AUTO_TEST_CASE(receive_into_a_buffer_too_small) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  std::array<std::byte, 8> buf{};
  peer.send_bytes(b("twelve bytes"));
  peer.send_bytes(b("eight..."));
  peer.send_bytes(b(""));
  outcome<std::size_t> too_long, exact, empty;
  a.async_recv_bytes_into(buf, on(io, too_long));
  run_guarded(io);
  BOOST_TEST((too_long.ec == asio::error::message_size));
  BOOST_TEST(too_long.value == 12u);
  a.async_recv_bytes_into(buf, on(io, exact));
  run_guarded(io);
  BOOST_TEST(!exact.ec);
  BOOST_TEST(exact.value == 8u);
  BOOST_TEST(text(buf) == "eight...");
  a.async_recv_bytes_into(std::span<std::byte>(), on(io, empty));
  run_guarded(io);
  BOOST_TEST(!empty.ec);
  BOOST_TEST(empty.value == 0u);

  constexpr std::size_t big = 1u << 20;
  auto writer = std::async(std::launch::async, [&peer = peer] {
    peer.send_bytes(pattern(big, 1));
    peer.send_bytes(b("in step"));
  });
  outcome<std::size_t> large, after;
  a.async_recv_bytes_into(buf, on(io, large));
  run_guarded(io);
  BOOST_TEST((large.ec == asio::error::message_size));
  BOOST_TEST(large.value == big);
  a.async_recv_bytes_into(buf, on(io, after));
  run_guarded(io);
  get(writer);
  BOOST_TEST(!after.ec);
  BOOST_TEST(text(std::span(buf).first(after.value)) == "in step");
  BOOST_TEST(a.readable());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(cancellation)

const asio::cancellation_type all_types[] = {asio::cancellation_type::total,
                                             asio::cancellation_type::partial,
                                             asio::cancellation_type::terminal};

const char* name_of(asio::cancellation_type t) {
  return t == asio::cancellation_type::total ? "total" : t == asio::cancellation_type::partial ? "partial" : "terminal";
}

// Before any byte moved, every type of cancellation completes with operation_aborted and the
// end goes on as if nothing had happened.
BOOST_AUTO_TEST_CASE(receive_before_any_byte) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  for (auto type : all_types) {
    BOOST_TEST_CONTEXT(name_of(type)) {
      asio::cancellation_signal signal;
      outcome<bytes> got;
      a.async_recv_bytes(on(io, got, signal));
      io.restart();
      io.poll();
      BOOST_REQUIRE(got.calls == 0);
      signal.emit(type);
      run_guarded(io);
      BOOST_TEST(got.calls == 1);
      BOOST_TEST((got.ec == asio::error::operation_aborted));
      BOOST_TEST(a.readable());
      // Emitted again after completion: nothing happens.
      signal.emit(type);
      outcome<bytes> next;
      a.async_recv_bytes(on(io, next));
      peer.send_bytes(b(name_of(type)));
      run_guarded(io);
      BOOST_TEST(got.calls == 1);
      BOOST_TEST(!next.ec);
      BOOST_TEST(text(next.value) == name_of(type));
    }
  }
}

BOOST_AUTO_TEST_CASE(send_before_any_byte) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  const std::size_t fillers = fill_send_buffer(a);
  const bytes cancelled = b("cancelled"), in_step = b("in step");
  for (auto type : all_types) {
    BOOST_TEST_CONTEXT(name_of(type)) {
      asio::cancellation_signal signal;
      outcome<std::size_t> sent;
      a.async_send_bytes(cancelled, on(io, sent, signal));
      io.restart();
      io.poll();
      BOOST_REQUIRE(sent.calls == 0);  // the buffer is full
      signal.emit(type);
      run_guarded(io);
      BOOST_TEST(sent.calls == 1);
      BOOST_TEST((sent.ec == asio::error::operation_aborted));
      BOOST_TEST(a.writable());
    }
  }
  // Nothing of the cancelled sends reached the wire: after the fillers, the next message.
  drain_fillers(peer, fillers);
  outcome<std::size_t> sent;
  a.async_send_bytes(in_step, on(io, sent));
  run_guarded(io);
  BOOST_TEST(!sent.ec);
  BOOST_TEST(text(peer.recv_bytes()) == "in step");
  BOOST_TEST(!peer.poll());
}

// Inside a frame, partial and total cancellation are ignored: the operation completes as if
// never asked.
BOOST_AUTO_TEST_CASE(partial_and_total_inside_a_frame_are_ignored) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  {
    const bytes big = pattern(sixteen_mib, 11);
    asio::cancellation_signal signal;
    outcome<std::size_t> sent;
    a.async_send_bytes(big, on(io, sent, signal));
    io.poll();
    BOOST_REQUIRE(sent.calls == 0);  // stuck inside the frame
    signal.emit(asio::cancellation_type::partial);
    signal.emit(asio::cancellation_type::total);
    io.poll();
    BOOST_TEST(sent.calls == 0);
    auto reader = std::async(std::launch::async, [&peer = peer] { return peer.recv_bytes(); });
    run_guarded(io);
    BOOST_TEST(sent.calls == 1);
    BOOST_TEST(!sent.ec);
    BOOST_TEST(sent.value == sixteen_mib);
    BOOST_TEST((get(reader) == big));
    BOOST_TEST(a.writable());
  }
  {
    asio::cancellation_signal signal;
    outcome<bytes> got;
    raw_write(peer, header(10));
    raw_write(peer, b("01234"));
    a.async_recv_bytes(on(io, got, signal));  // reads the first half at once
    io.restart();
    io.poll();
    BOOST_REQUIRE(got.calls == 0);
    signal.emit(asio::cancellation_type::partial);
    signal.emit(asio::cancellation_type::total);
    io.poll();
    BOOST_TEST(got.calls == 0);
    raw_write(peer, b("56789"));
    run_guarded(io);
    BOOST_TEST(got.calls == 1);
    BOOST_TEST(!got.ec);
    BOOST_TEST(text(got.value) == "0123456789");
    BOOST_TEST(a.readable());
  }
}

// Terminal cancellation inside a frame: operation_aborted, and that direction of the end is
// unusable from then on (the peer would read, or we would, the rest of a frame); the other
// direction goes on.
BOOST_AUTO_TEST_CASE(terminal_inside_a_frame_poisons_the_direction) {
  {
    auto [a, peer] = coproc::pipe();
    asio::io_context io;
    asio::cancellation_signal signal;
    outcome<std::size_t> sent;
    const bytes big = pattern(sixteen_mib, 12);
    a.async_send_bytes(big, on(io, sent, signal));
    io.poll();
    BOOST_REQUIRE(sent.calls == 0);
    signal.emit(asio::cancellation_type::terminal);
    run_guarded(io);
    BOOST_TEST(sent.calls == 1);
    BOOST_TEST((sent.ec == asio::error::operation_aborted));
    BOOST_TEST(!a.writable());
    BOOST_TEST(a.readable());
    coproc_test::expect_misuse([&] { a.async_send_bytes(b("x"), asio::use_future); }, "read-only");
    coproc_test::expect_misuse([&] { a.send_bytes(b("x")); }, "read-only");
    peer.send_bytes(b("still reads"));
    BOOST_TEST(text(a.recv_bytes()) == "still reads");
  }
  {
    auto [a, peer] = coproc::pipe();
    asio::io_context io;
    asio::cancellation_signal signal;
    outcome<bytes> got;
    raw_write(peer, header(10));
    raw_write(peer, b("01234"));
    a.async_recv_bytes(on(io, got, signal));
    io.poll();
    BOOST_REQUIRE(got.calls == 0);
    signal.emit(asio::cancellation_type::terminal);
    run_guarded(io);
    BOOST_TEST((got.ec == asio::error::operation_aborted));
    BOOST_TEST(!a.readable());
    BOOST_TEST(a.writable());
    coproc_test::expect_misuse([&] { a.async_recv_bytes(asio::use_future); }, "write-only");
    a.send_bytes(b("still writes"));
    BOOST_TEST(text(peer.recv_bytes()) == "still writes");
  }
}

// The awaitable operators cancel the loser (cancellation_type::all, before any byte): the end
// goes on.
BOOST_AUTO_TEST_CASE(awaitable_or) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io;
  std::size_t winner = 99;
  std::string after;
  auto body = [&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto r = co_await (a.async_recv_bytes(asio::use_awaitable) || asio::post(ex, asio::use_awaitable));
    winner = r.index();
    peer.send_bytes(b("after"));
    after = text(co_await a.async_recv_bytes(asio::use_awaitable));
  };
  asio::co_spawn(io, body(), rethrow{});
  run_guarded(io);
  BOOST_TEST(winner == 1u);
  BOOST_TEST(after == "after");
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(lifetime)

// close() (and the destructor) with operations pending, waiting or inside a frame: they
// complete with operation_aborted.
BOOST_AUTO_TEST_CASE(close_aborts_pending_operations) {
  asio::io_context io;
  {
    auto [a, peer] = coproc::pipe();
    const bytes big = pattern(sixteen_mib, 13);
    outcome<std::size_t> sent;
    outcome<bytes> got;
    a.async_send_bytes(big, on(io, sent));
    a.async_recv_bytes(on(io, got));
    io.poll();
    BOOST_REQUIRE(sent.calls == 0);
    BOOST_REQUIRE(got.calls == 0);
    a.close();
    run_guarded(io);
    BOOST_TEST(sent.calls == 1);
    BOOST_TEST((sent.ec == asio::error::operation_aborted));
    BOOST_TEST(got.calls == 1);
    BOOST_TEST((got.ec == asio::error::operation_aborted));
  }
  {
    // Inside a frame, closed from a handler of the same io_context.
    outcome<bytes> got;
    {
      auto [a, peer] = coproc::pipe();
      raw_write(peer, header(10));
      raw_write(peer, b("01"));
      a.async_recv_bytes(on(io, got));
      asio::post(io, [&a = a] { a.close(); });
      run_guarded(io);
    }
    BOOST_TEST(got.calls == 1);
    BOOST_TEST((got.ec == asio::error::operation_aborted));
  }
  {
    // The destructor, with a plain callback waiting on coproc's I/O thread.
    std::promise<error_code> ec;
    auto f = ec.get_future();
    auto [a, peer] = coproc::pipe();  // the peer stays open: no end of stream comes first
    {
      coproc::connection doomed = std::move(a);
      doomed.async_recv_bytes([&ec](error_code e, bytes) { ec.set_value(e); });
    }
    const error_code got = get(f);
    BOOST_TEST((got == asio::error::operation_aborted), got.message());
  }
}

// The io_context destroyed with operations pending (a coroutine, a callback, a send inside
// its frame): no handler runs, nothing leaks (ASan), and the end can be used again, with a new
// io_context at the same address too. A send abandoned inside its frame leaves half a frame on
// the wire: that direction is then unusable, as after a terminal cancellation.
BOOST_AUTO_TEST_CASE(io_context_destroyed_with_operations_pending) {
  auto [a, peer] = coproc::pipe();
  auto [c, c_peer] = coproc::pipe();
  const bytes big = pattern(sixteen_mib, 14);
  int handlers = 0;
  for (int round = 0; round < 3; ++round) {
    BOOST_TEST_CONTEXT("round " << round) {
      {
        asio::io_context io;
        auto body = [&]() -> asio::awaitable<void> {
          co_await a.async_recv_bytes(asio::use_awaitable);
          ++handlers;
        };
        asio::co_spawn(io, body(), rethrow{});
        if (round == 0)
          a.async_send_bytes(big, asio::bind_executor(io, [&](error_code, std::size_t) { ++handlers; }));
        c.async_recv_bytes(asio::bind_executor(io, [&](error_code, bytes) { ++handlers; }));
        io.poll();
      }
      BOOST_TEST(handlers == 0);
      BOOST_TEST(a.readable());
      BOOST_TEST(c.readable());
      BOOST_TEST(!a.writable());  // half of round 0's frame is on the wire
      BOOST_TEST(c.writable());
      // Free again, blocking and asynchronous.
      c_peer.send_bytes(b("blocking"));
      BOOST_TEST(text(c.recv_bytes()) == "blocking");
      asio::io_context io;
      outcome<bytes> got;
      c.async_recv_bytes(on(io, got));
      c_peer.send_bytes(b("async"));
      run_guarded(io);
      BOOST_TEST(text(got.value) == "async");
    }
  }
  // A receive abandoned inside its frame: that end no longer reads.
  {
    asio::io_context io;
    raw_write(c_peer, header(10));
    raw_write(c_peer, b("0123"));
    c.async_recv_bytes(asio::bind_executor(io, [&](error_code, bytes) { ++handlers; }));
    io.poll();
  }
  BOOST_TEST(handlers == 0);
  BOOST_TEST(!c.readable());
}

// A reactor that already watches the end's descriptor (the user's own stream_descriptor on
// fileno()), and two io_contexts using the same end one after the other.
BOOST_AUTO_TEST_CASE(registrations) {
  auto [a, peer] = coproc::pipe();
  asio::io_context io1, io2;
  asio::posix::stream_descriptor users(io1, a.fileno());
  outcome<bytes> one, two, three;
  a.async_recv_bytes(on(io1, one));
  peer.send_bytes(b("one"));
  run_guarded(io1);
  BOOST_TEST(text(one.value) == "one");
  a.async_recv_bytes(on(io2, two));
  peer.send_bytes(b("two"));
  run_guarded(io2);
  BOOST_TEST(text(two.value) == "two");
  a.async_recv_bytes(on(io1, three));
  io1.restart();
  io1.poll();
  BOOST_REQUIRE(three.calls == 0);
  peer.send_bytes(b("three"));
  run_guarded(io1);
  BOOST_TEST(text(three.value) == "three");
  (void)users.release();
}

// An os pipe (not a socket): made non-blocking by the first asynchronous use; the blocking
// API then waits with poll(2) both ways.
BOOST_AUTO_TEST_CASE(os_pipe_ends) {
  int fds[2];
  BOOST_REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  coproc::connection r(fds[0], true, false), w(fds[1], false, true);
  constexpr std::size_t big = 1u << 20;  // larger than a pipe's buffer
  asio::io_context io;
  outcome<std::size_t> sent;
  outcome<bytes> got;
  const bytes first = pattern(big, 2);
  w.async_send_bytes(first, on(io, sent));
  r.async_recv_bytes(on(io, got));
  run_guarded(io);
  BOOST_TEST(!sent.ec);
  BOOST_TEST(!got.ec);
  BOOST_TEST((got.value == pattern(big, 2)));
  auto writer = std::async(std::launch::async, [&w] { w.send_bytes(pattern(big, 3)); });
  BOOST_TEST((r.recv_bytes() == pattern(big, 3)));
  get(writer);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(threads)

// Four threads run one io_context; several pairs each carry two directions at once (on every
// end a send and a receive are pending together): every message arrives once, in order.
BOOST_AUTO_TEST_CASE(four_threads_many_pairs) {
  constexpr int pairs = 6, per_direction = coproc_test::sanitized ? 300 : 1000;
  std::vector<std::pair<coproc::connection, coproc::connection>> ends;
  for (int i = 0; i < pairs; ++i) ends.push_back(coproc::pipe());
  asio::io_context io;
  std::atomic<int> matched{0};
  std::atomic<int> errors{0};
  auto count_errors = [&](std::exception_ptr e) {
    if (e) ++errors;
  };
  for (int p = 0; p < pairs; ++p) {
    auto& [x, y] = ends[p];
    asio::co_spawn(io, send_identified(x, p, 0, per_direction), count_errors);
    asio::co_spawn(io, recv_identified(y, p, 0, per_direction, matched), count_errors);
    asio::co_spawn(io, send_identified(y, p, 1, per_direction), count_errors);
    asio::co_spawn(io, recv_identified(x, p, 1, per_direction, matched), count_errors);
  }
  std::vector<std::thread> runners;
  for (int t = 0; t < 4; ++t) runners.emplace_back([&] { io.run(); });
  for (auto& t : runners) t.join();
  BOOST_TEST(errors.load() == 0);
  BOOST_TEST(matched.load() == pairs * 2 * per_direction);
  for (auto& [x, y] : ends) {
    BOOST_TEST(!x.poll());
    BOOST_TEST(!y.poll());
  }
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(waiting)

BOOST_AUTO_TEST_CASE(async_wait_completes_when_a_message_is_there) {
  auto [a, a_peer] = coproc::pipe();
  auto [c, c_peer] = coproc::pipe();
  asio::io_context io;
  outcome<std::vector<coproc::waitable>> ready;
  coproc::async_wait({&a, &c}, on(io, ready));
  io.poll();
  BOOST_REQUIRE(ready.calls == 0);
  c_peer.send_bytes(b("here"));
  run_guarded(io);
  BOOST_TEST(!ready.ec);
  BOOST_REQUIRE(ready.value.size() == 1u);
  BOOST_TEST((std::get<coproc::connection*>(ready.value[0]) == &c));
  // Ready means a receive completes at once.
  outcome<bytes> got;
  c.async_recv_bytes(on(io, got));
  run_guarded(io);
  BOOST_TEST(text(got.value) == "here");
}

// A second message already there after a receive took the first (nothing is read ahead into
// the library: the descriptor's readiness is the end's), and an end at end of stream.
BOOST_AUTO_TEST_CASE(a_buffered_message_is_ready_at_once) {
  auto [a, a_peer] = coproc::pipe();
  auto [c, c_peer] = coproc::pipe();
  a_peer.send_bytes(b("first"));
  a_peer.send_bytes(b("second"));
  asio::io_context io;
  std::string first;
  std::vector<coproc::waitable> ready;
  auto body = [&]() -> asio::awaitable<void> {
    first = text(co_await a.async_recv_bytes(asio::use_awaitable));
    std::vector<coproc::waitable> objects{&a, &c};  // a braced list inside co_await: GCC 12 rejects it
    ready = co_await coproc::async_wait(std::move(objects), asio::use_awaitable);
  };
  asio::co_spawn(io, body(), rethrow{});
  run_guarded(io);
  BOOST_TEST(first == "first");
  BOOST_REQUIRE(ready.size() == 1u);
  BOOST_TEST((std::get<coproc::connection*>(ready[0]) == &a));
  BOOST_TEST(text(a.recv_bytes()) == "second");
  // Half a message there: ready too (a receive would not block on nothing).
  raw_write(a_peer, header(4));
  raw_write(a_peer, b("ab"));
  c_peer.close();
  outcome<std::vector<coproc::waitable>> both;
  coproc::async_wait({&a, &c}, on(io, both));
  run_guarded(io);
  BOOST_TEST(both.value.size() == 2u);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(child_peer)

// A coproc child (fork) sends a few messages through the end it was handed, then exits; a
// coroutine receives them, then the end of the stream, then joins it. The child allocates
// nothing (forked from a parent that may run threads, under the sanitizers too).
BOOST_AUTO_TEST_CASE(a_child_sends_then_exits) {
  auto [mine, theirs] = coproc::pipe();
  coproc::process p(
      [](coproc::connection& c) {
        static const char* const messages[] = {"one", "two", "three"};
        for (const char* m : messages) c.send_bytes(std::as_bytes(std::span(m, std::strlen(m))));
      },
      std::ref(theirs));
  p.start();
  theirs.close();  // our copy: the stream ends when the child's does
  asio::io_context io;
  std::vector<std::string> got;
  error_code end;
  std::optional<int> code;
  auto body = [&]() -> asio::awaitable<void> {
    for (;;) {
      auto [ec, m] = co_await mine.async_recv_bytes(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        end = ec;
        break;
      }
      got.push_back(text(m));
    }
    code = co_await p.async_join(asio::use_awaitable);
  };
  asio::co_spawn(io, body(), rethrow{});
  run_guarded(io);
  BOOST_TEST((got == std::vector<std::string>{"one", "two", "three"}));
  BOOST_TEST((end == asio::error::eof));
  BOOST_TEST(code == 0);
}

BOOST_AUTO_TEST_SUITE_END()
