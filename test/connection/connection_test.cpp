// The blocking API of coproc::connection and coproc::pipe: CPython's _TestConnection
// (test_connection, test_duplex_false, test_spawn_close, test_sendbytes, test_context),
// TestInvalidHandle and _TestPoll (test_empty_string, test_strings, test_boundaries,
// test_dont_merge); Python's framing checked on the wire against raw socket I/O, hostile input
// on the reading side (negative lengths, huge announced lengths, truncated frames, a peer that
// dies inside a message, maxlength); robustness (EPIPE and never SIGPIPE, what children
// inherit, threads, close and moves, blocking calls next to asynchronous ones).
// coproc::wait over connections is in wait_connection_test.cpp.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "peer_support.hpp"

using namespace std::chrono_literals;
using coproc::bytes;
using coproc_test::b;
using coproc_test::expect_misuse;
using coproc_test::guard;
using coproc_test::pattern;
using coproc_test::test_pipe;
namespace asio = boost::asio;

namespace {

// Python's _echo: echoes every message until the empty one (SENTINEL), then closes.
void echo(coproc::connection& c) {
  for (;;) {
    const bytes m = c.recv_bytes();
    if (m.empty()) break;
    c.send_bytes(m);
  }
  c.close();
}

pid_t this_thread_id() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

// join() with a hang guard: a child still running after it is killed and the test fails.
int join_guarded(coproc::process& p) {
  if (auto code = p.join(guard)) return *code;
  BOOST_ERROR("hang guard expired: the child is killed");
  p.kill();
  return p.join();
}

// Runs `f` in a child (its exit code is the result: coproc::exit(n) or 0), with a hang guard.
template <class F, class... Args>
int in_child(F&& f, Args&&... args) {
  coproc::process p(std::forward<F>(f), std::forward<Args>(args)...);
  p.start();
  return join_guarded(p);
}

// A descriptor the test owns.
class raw_fd {
 public:
  explicit raw_fd(int fd = -1) noexcept : fd_(fd) {}
  raw_fd(raw_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  raw_fd& operator=(raw_fd&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~raw_fd() { close(); }
  int get() const noexcept { return fd_; }
  // Gives the descriptor away (to a connection, which owns it from then on).
  int release() noexcept { return std::exchange(fd_, -1); }
  void close() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_;
};

std::pair<raw_fd, raw_fd> raw_socketpair() {
  int s[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) == -1)
    throw std::system_error(errno, std::generic_category(), "socketpair");
  return {raw_fd(s[0]), raw_fd(s[1])};
}

std::pair<raw_fd, raw_fd> raw_os_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) == -1) throw std::system_error(errno, std::generic_category(), "pipe2");
  return {raw_fd(p[0]), raw_fd(p[1])};
}

// A connection over one end of a socketpair whose other end the test reads and writes itself.
struct raw_peered {
  coproc::connection conn;
  raw_fd raw;
};
raw_peered connection_with_raw_peer(bool readable = true, bool writable = true) {
  auto [mine, theirs] = raw_socketpair();
  coproc::connection c(mine.release(), readable, writable);
  return {std::move(c), std::move(theirs)};
}

bytes be(std::uint64_t v, int n) {
  bytes out(static_cast<std::size_t>(n));
  for (int i = n - 1; i >= 0; --i, v >>= 8) out[static_cast<std::size_t>(i)] = static_cast<std::byte>(v & 0xff);
  return out;
}
bytes be32(std::uint32_t v) { return be(v, 4); }
bytes be64(std::uint64_t v) { return be(v, 8); }
bytes cat(std::initializer_list<bytes> parts) {
  bytes out;
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Writes all of `data` to a socket (MSG_NOSIGNAL: a peer that has gone is EPIPE, not SIGPIPE);
// false if it could not.
bool put(int fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    const auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads exactly `n` bytes (fewer at the end of the stream); a hang guard fails the test.
bytes take(int fd, std::size_t n) {
  bytes out(n);
  std::size_t have = 0;
  const auto deadline = std::chrono::steady_clock::now() + guard;
  while (have < n) {
    if (!coproc_test::wait_readable(fd, deadline)) {
      BOOST_ERROR("hang guard expired reading " << n << " raw bytes (got " << have << ")");
      break;
    }
    const auto r = ::read(fd, out.data() + have, n - have);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    have += static_cast<std::size_t>(r);
  }
  out.resize(have);
  return out;
}

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// Readable (or at its end) right now, by one poll(2) that does not wait.
bool readable_now(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// What a receive threw, in a form a test compares: "eof", "io_error: <what>", ...
template <class F>
std::string failure_of(F&& f) {
  try {
    f();
  } catch (const coproc::eof_error&) {
    return "eof";
  } catch (const std::system_error& e) {
    // what() is "<what was given>: <the code's message>": keep the part given.
    std::string what = e.what();
    const std::string suffix = ": " + e.code().message();
    if (what.size() >= suffix.size() && what.compare(what.size() - suffix.size(), suffix.size(), suffix) == 0)
      what.resize(what.size() - suffix.size());
    if (e.code() == std::errc::io_error) return "io_error: " + what;
    if (e.code() == std::errc::protocol_error) return "protocol_error: " + what;
    if (e.code() == std::errc::message_size) return "message_size: " + what;
    if (e.code() == std::errc::broken_pipe) return "broken_pipe";
    return "system_error " + std::to_string(e.code().value()) + ": " + what;
  } catch (const std::bad_alloc&) {
    return "bad_alloc";
  } catch (const std::exception& e) {
    return std::string("other: ") + e.what();
  }
  return "nothing";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---------------------------------------------------------------------------------------
// CPython's _TestConnection and TestInvalidHandle.

BOOST_AUTO_TEST_SUITE(cpython_connection)

BOOST_AUTO_TEST_CASE(test_connection) {
  auto [conn, child_conn] = coproc::pipe();
  // Handed to the child as the target's argument; the parent's copy goes with the target at
  // start(), so the child's close is the end of the stream.
  coproc::process p(echo, std::move(child_conn));
  p.daemon(true);
  p.start();
  BOOST_TEST(conn.fileno() >= 0);

  using seq_t = std::tuple<int, double, std::optional<int>>;  // Python's [1, 2.25, None]
  const seq_t seq{1, 2.25, std::nullopt};
  conn.send(seq);
  BOOST_TEST((conn.recv<seq_t>() == seq));

  const bytes msg = b("hello world");
  bytes longmsg;
  for (int i = 0; i < 10; ++i) longmsg.insert(longmsg.end(), msg.begin(), msg.end());
  conn.send_bytes(msg);
  BOOST_TEST((conn.recv_bytes() == msg));

  // recv_bytes_into an int array, at offset 0 and at 3 * itemsize.
  const std::array<std::int32_t, 4> arr{7, 11, 13, 17};
  std::array<std::int32_t, 10> buffer{};
  conn.send_bytes(std::as_bytes(std::span(arr)));
  BOOST_TEST(conn.recv_bytes_into(std::as_writable_bytes(std::span(buffer))) == sizeof arr);
  BOOST_TEST(buffer == (std::array<std::int32_t, 10>{7, 11, 13, 17, 0, 0, 0, 0, 0, 0}),
             boost::test_tools::per_element());
  buffer = {};
  conn.send_bytes(std::as_bytes(std::span(arr)));
  BOOST_TEST(conn.recv_bytes_into(std::as_writable_bytes(std::span(buffer)), 3 * sizeof(std::int32_t)) ==
             sizeof arr);
  BOOST_TEST(buffer == (std::array<std::int32_t, 10>{0, 0, 0, 7, 11, 13, 17, 0, 0, 0}),
             boost::test_tools::per_element());

  // BufferTooShort carries the whole message; the buffer is left alone, and the stream stays
  // in step (the message was consumed).
  bytes small(40, std::byte{' '});
  conn.send_bytes(longmsg);
  try {
    const auto n = conn.recv_bytes_into(small);
    BOOST_ERROR("expected buffer_too_short, got " << n);
  } catch (const coproc::buffer_too_short& e) {
    BOOST_TEST((e.message() == longmsg));
  }
  BOOST_TEST((small == bytes(40, std::byte{' '})));
  conn.send_bytes(b("in step"));
  BOOST_TEST((conn.recv_bytes() == b("in step")));

  // poll(): nothing there; a zero, negative or short timeout returns false.
  BOOST_TEST(!conn.poll());
  BOOST_TEST(!conn.poll(-1s));
  BOOST_TEST(!conn.poll(100ms));
  conn.send(std::optional<int>{});  // Python's send(None)
  BOOST_TEST(conn.poll(guard));
  BOOST_TEST(conn.poll());  // poll reads nothing
  BOOST_TEST(!conn.recv<std::optional<int>>().has_value());

  const bytes really_big(16u << 20, std::byte{'X'});
  conn.send_bytes(really_big);
  BOOST_TEST((conn.recv_bytes() == really_big));

  conn.send_bytes(bytes{});  // tell the child to quit
  BOOST_TEST(conn.readable());
  BOOST_TEST(conn.writable());
  BOOST_REQUIRE_MESSAGE(conn.poll(guard), "the end of the stream never came");
  BOOST_CHECK_THROW(conn.recv<int>(), coproc::eof_error);
  BOOST_CHECK_THROW(conn.recv_bytes(), coproc::eof_error);
  BOOST_TEST(join_guarded(p) == 0);
}

BOOST_AUTO_TEST_CASE(test_duplex_false) {
  auto [reader, writer] = coproc::pipe(false);
  writer.send(1);
  BOOST_TEST(reader.recv<int>() == 1);
  BOOST_TEST(reader.readable());
  BOOST_TEST(!reader.writable());
  BOOST_TEST(!writer.readable());
  BOOST_TEST(writer.writable());
  expect_misuse([&] { reader.send(2); }, "connection is read-only");
  expect_misuse([&] { reader.send_bytes(b("x")); }, "connection is read-only");
  expect_misuse([&] { (void)writer.recv<int>(); }, "connection is write-only");
  expect_misuse([&] { (void)writer.recv_bytes(); }, "connection is write-only");
  bytes buf(8);
  expect_misuse([&] { (void)writer.recv_bytes_into(buf); }, "connection is write-only");
  expect_misuse([&] { (void)writer.poll(); }, "connection is write-only");
  expect_misuse([&] { (void)writer.poll(1s); }, "connection is write-only");
  // The misuse sent nothing, and both ends still work.
  BOOST_TEST(!reader.poll());
  writer.send_bytes(b("after"));
  BOOST_TEST((reader.recv_bytes() == b("after")));
}

BOOST_AUTO_TEST_CASE(test_spawn_close) {
  auto [conn, child_conn] = coproc::pipe();
  // By reference: the parent keeps its copy and closes it right after start().
  coproc::process p(echo, std::ref(child_conn));
  p.daemon(true);
  p.start();
  child_conn.close();
  conn.send_bytes(b("hello"));
  BOOST_TEST((conn.recv_bytes() == b("hello")));
  conn.send_bytes(bytes{});
  // The child closed its copy and the parent's is closed: the stream ends.
  BOOST_REQUIRE(conn.poll(guard));
  BOOST_CHECK_THROW(conn.recv_bytes(), coproc::eof_error);
  conn.close();
  BOOST_TEST(join_guarded(p) == 0);
}

BOOST_AUTO_TEST_CASE(test_sendbytes) {
  const bytes msg = b("abcdefghijklmnopqrstuvwxyz");
  auto [a, bb] = coproc::pipe();
  auto slice = [&](std::size_t from, std::size_t n) {
    return bytes(msg.begin() + static_cast<long>(from), msg.begin() + static_cast<long>(from + n));
  };
  a.send_bytes(msg);
  BOOST_TEST((bb.recv_bytes() == msg));
  a.send_bytes(msg, 5);
  BOOST_TEST((bb.recv_bytes() == slice(5, 21)));
  a.send_bytes(msg, 7, 8);
  BOOST_TEST((bb.recv_bytes() == slice(7, 8)));
  a.send_bytes(msg, 26);
  BOOST_TEST(bb.recv_bytes().empty());
  a.send_bytes(msg, 26, 0);
  BOOST_TEST(bb.recv_bytes().empty());

  constexpr auto huge = std::numeric_limits<std::size_t>::max();
  expect_misuse([&] { a.send_bytes(msg, 27); }, "buffer length < offset");
  expect_misuse([&] { a.send_bytes(msg, 22, 5); }, "buffer length < offset + size");
  expect_misuse([&] { a.send_bytes(msg, 26, 1); }, "buffer length < offset + size");
  expect_misuse([&] { a.send_bytes(msg, huge); }, "buffer length < offset");          // Python's -1
  expect_misuse([&] { a.send_bytes(msg, 4, huge); }, "buffer length < offset + size");  // (4, -1)
  // offset + size wraps around to 0 (or to 1): still refused, checked without overflow.
  expect_misuse([&] { a.send_bytes(msg, 4, huge - 3); }, "buffer length < offset + size");
  expect_misuse([&] { a.send_bytes(msg, 26, huge - 24); }, "buffer length < offset + size");
  // None of these sent anything.
  BOOST_TEST(!bb.poll());
}

BOOST_AUTO_TEST_CASE(test_context) {
  auto [a, bb] = coproc::pipe();
  a.send(1729);
  BOOST_TEST(bb.recv<int>() == 1729);
  BOOST_TEST(!a.closed());
  BOOST_TEST(!bb.closed());
  a.close();
  bb.close();
  BOOST_TEST(a.closed());
  BOOST_TEST(bb.closed());
  bytes buf(4);
  for (auto* c : {&a, &bb}) {
    expect_misuse([&] { (void)c->recv<int>(); }, "handle is closed");
    expect_misuse([&] { (void)c->recv_bytes(); }, "handle is closed");
    expect_misuse([&] { (void)c->recv_bytes_into(buf); }, "handle is closed");
    expect_misuse([&] { c->send_bytes(b("x")); }, "handle is closed");
    expect_misuse([&] { c->send(1); }, "handle is closed");
    expect_misuse([&] { (void)c->poll(); }, "handle is closed");
    expect_misuse([&] { (void)c->poll(1s); }, "handle is closed");
    expect_misuse([&] { (void)c->fileno(); }, "handle is closed");
  }
}

BOOST_AUTO_TEST_CASE(poll_and_poll_with_timeout) {
  auto [a, bb] = coproc::pipe();
  BOOST_TEST(!a.poll());
  BOOST_TEST(!a.poll(0s));
  BOOST_TEST(!a.poll(-1s));
  BOOST_TEST(!a.poll(std::chrono::nanoseconds::min()));
  BOOST_TEST(!a.poll(std::chrono::duration<double>(-0.5)));
  BOOST_TEST(!a.poll(std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN())));
  BOOST_TEST(!a.poll(20ms));
  bb.send_bytes(b("x"));
  BOOST_TEST(a.poll(guard));
  // Ready stays ready until the message is read, whatever the timeout.
  BOOST_TEST(a.poll());
  BOOST_TEST(a.poll(-1s));
  BOOST_TEST(a.poll(std::chrono::hours::max()));
  BOOST_TEST((a.recv_bytes() == b("x")));
  BOOST_TEST(!a.poll());
  // The end of the stream is "ready" too; the receive then says so.
  bb.close();
  BOOST_TEST(a.poll());
  BOOST_TEST(a.poll(guard));
  BOOST_CHECK_THROW(a.recv_bytes(), coproc::eof_error);
  BOOST_TEST(a.poll());
}

BOOST_AUTO_TEST_CASE(poll_with_an_unlimited_timeout_waits_for_the_message) {
  // Timeouts too long for the clock mean "no limit": they neither overflow into the past
  // (poll would return false at once) nor fail. A thread sends once this one sleeps in poll.
  const pid_t pid = ::getpid(), tid = this_thread_id();
  auto late_send = [&](coproc::connection& to) {
    return std::thread([&to, pid, tid] {
      (void)coproc_test::wait_until_asleep(pid, tid);
      to.send_bytes(b("late"));
    });
  };
  auto [a, bb] = coproc::pipe();
  {
    auto t = late_send(bb);
    BOOST_TEST(a.poll(std::chrono::hours::max()));
    t.join();
    BOOST_TEST((a.recv_bytes() == b("late")));
  }
  {
    auto t = late_send(bb);
    BOOST_TEST(a.poll(std::chrono::nanoseconds::max()));
    t.join();
    BOOST_TEST((a.recv_bytes() == b("late")));
  }
  {
    auto t = late_send(bb);
    BOOST_TEST(a.poll(std::chrono::duration<double>(1e300)));
    t.join();
    BOOST_TEST((a.recv_bytes() == b("late")));
  }
}

BOOST_AUTO_TEST_CASE(test_invalid_handle) {
  expect_misuse([] { coproc::connection c(-1); }, "invalid handle");
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  expect_misuse([&] { coproc::connection c(fd, false, false); },
                "at least one of `readable` and `writable` must be True");
  // Refused, so not taken: the descriptor is still the caller's.
  BOOST_TEST(fd_open(fd));
  ::close(fd);
  // A number that is no descriptor: an error, not a crash.
  coproc::connection bogus(44977608);
  BOOST_CHECK_THROW((void)bogus.poll(), std::system_error);
  BOOST_CHECK_THROW((void)bogus.recv_bytes(), std::system_error);
  BOOST_CHECK_THROW(bogus.send_bytes(b("x")), std::system_error);
  // A default-constructed connection is closed.
  coproc::connection none;
  BOOST_TEST(none.closed());
  BOOST_TEST(!none.readable());
  BOOST_TEST(!none.writable());
  expect_misuse([&] { (void)none.fileno(); }, "handle is closed");
  expect_misuse([&] { (void)none.recv_bytes(); }, "handle is closed");
  none.close();
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// CPython's _TestPoll.

BOOST_AUTO_TEST_SUITE(cpython_poll)

BOOST_AUTO_TEST_CASE(test_empty_string) {
  auto [a, bb] = coproc::pipe();
  BOOST_TEST(!a.poll());
  bb.send_bytes(bytes{});
  BOOST_TEST(a.poll());
  BOOST_TEST(a.poll());
  BOOST_TEST(a.recv_bytes().empty());
  BOOST_TEST(!a.poll());
}

BOOST_AUTO_TEST_CASE(test_strings) {
  const std::vector<std::string> strings{"hello", "", "a", "b", "", "bye", "", "lop"};
  auto [a, bb] = coproc::pipe();
  coproc::process p(
      [&strings](coproc::connection& c) {
        for (auto& s : strings) c.send_bytes(b(s));
        c.close();
      },
      std::move(bb));
  p.start();
  for (auto& s : strings) {
    BOOST_REQUIRE(a.poll(guard));
    BOOST_TEST(coproc_test::text(a.recv_bytes()) == s);
  }
  BOOST_REQUIRE(a.poll(guard));
  BOOST_CHECK_THROW(a.recv_bytes(), coproc::eof_error);
  BOOST_TEST(join_guarded(p) == 0);
}

BOOST_AUTO_TEST_CASE(test_boundaries) {
  // poll() in another process must not pull part of a message out of the shared stream.
  auto [r, w] = coproc::pipe(false);
  coproc::process p([](coproc::connection& c) { (void)c.poll(30s); }, std::ref(r));
  p.start();
  // Its poll is under way when it sleeps in the kernel (the guard only bounds the wait).
  (void)coproc_test::wait_until_asleep(*p.pid(), *p.pid());
  w.send_bytes(b("first"));
  w.send_bytes(b("second"));
  w.close();
  BOOST_TEST(join_guarded(p) == 0);
  BOOST_TEST(coproc_test::text(r.recv_bytes()) == "first");
  BOOST_TEST(coproc_test::text(r.recv_bytes()) == "second");
  BOOST_CHECK_THROW(r.recv_bytes(), coproc::eof_error);
}

BOOST_AUTO_TEST_CASE(test_dont_merge) {
  auto [a, bb] = coproc::pipe();
  BOOST_TEST(!a.poll(0s));
  BOOST_TEST(!a.poll(100ms));
  coproc::process p(
      [](coproc::connection& c) {
        c.send_bytes(b("a"));
        c.send_bytes(b("b"));
        c.send_bytes(b("cd"));
      },
      std::move(bb));
  p.start();
  BOOST_REQUIRE(a.poll(guard));
  BOOST_TEST(coproc_test::text(a.recv_bytes()) == "a");
  BOOST_TEST(a.poll(guard));
  BOOST_TEST(a.poll(guard));
  BOOST_TEST(coproc_test::text(a.recv_bytes()) == "b");
  BOOST_TEST(a.poll(guard));
  BOOST_TEST(a.poll(guard));
  BOOST_TEST(a.poll(0s));
  BOOST_TEST(coproc_test::text(a.recv_bytes()) == "cd");
  BOOST_TEST(join_guarded(p) == 0);
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Python's framing, on the wire.

BOOST_AUTO_TEST_SUITE(framing)

BOOST_AUTO_TEST_CASE(the_header_is_four_bytes_big_endian) {
  auto [c, raw] = connection_with_raw_peer();
  // Each message is read back before the next one is sent (the socket buffer is not
  // unlimited), so sizes stay below it.
  for (std::size_t n : {0u, 1u, 5u, 255u, 256u, 300u, 16384u, 16385u, 70000u}) {
    BOOST_TEST_CONTEXT("message of " << n << " bytes") {
      const bytes payload = pattern(n, static_cast<unsigned>(n));
      c.send_bytes(payload);
      const bytes wire = take(raw.get(), 4 + n);
      BOOST_REQUIRE(wire.size() == 4 + n);
      BOOST_TEST(coproc_test::hex(std::span(wire).first(4)) ==
                 coproc_test::hex(be32(static_cast<std::uint32_t>(n))));
      BOOST_TEST((bytes(wire.begin() + 4, wire.end()) == payload));
    }
  }
  // Nothing more than the frames went out.
  BOOST_TEST(!readable_now(raw.get()));

  // A message larger than the socket buffer: the header is still the 4-byte form.
  const bytes big = pattern(3u << 20, 3);
  std::thread sender([&] { c.send_bytes(big); });
  const bytes wire = take(raw.get(), 4 + big.size());
  sender.join();
  BOOST_REQUIRE(wire.size() == 4 + big.size());
  BOOST_TEST(coproc_test::hex(std::span(wire).first(4)) == "00300000");
  BOOST_TEST((bytes(wire.begin() + 4, wire.end()) == big));

  // And the other way: frames a raw peer writes are read as Python writes them.
  BOOST_REQUIRE(put(raw.get(), cat({be32(5), b("hello"), be32(0), be32(300), pattern(300, 9)})));
  BOOST_TEST((c.recv_bytes() == b("hello")));
  BOOST_TEST(c.recv_bytes().empty());
  BOOST_TEST((c.recv_bytes() == pattern(300, 9)));
  BOOST_TEST(!c.poll());
}

BOOST_AUTO_TEST_CASE(the_long_header_form_is_read_even_for_a_small_payload) {
  // -1 then an 8-byte length: Python writes it only above 0x7fffffff bytes, but a reader must
  // take it for any length.
  auto [c, raw] = connection_with_raw_peer();
  const bytes long_minus_one = be32(0xffffffff);
  BOOST_REQUIRE(put(raw.get(), cat({long_minus_one, be64(5), b("hello"),  //
                                    long_minus_one, be64(0),              //
                                    long_minus_one, be64(3), b("abc"),    //
                                    long_minus_one, be64(4), b("into"),   //
                                    be32(2), b("ok")})));
  BOOST_TEST((c.recv_bytes() == b("hello")));
  BOOST_TEST(c.recv_bytes().empty());
  BOOST_TEST((c.recv_bytes(3) == b("abc")));  // maxlength compares the announced length
  bytes buf(16, std::byte{0});
  BOOST_TEST(c.recv_bytes_into(buf, 2) == 4u);
  BOOST_TEST(coproc_test::text(std::span(buf).subspan(2, 4)) == "into");
  BOOST_TEST((c.recv_bytes() == b("ok")));  // still in step
  BOOST_TEST(!c.poll());
}

BOOST_AUTO_TEST_CASE(a_frame_that_arrives_byte_by_byte) {
  // The reader wakes up for every byte: each partial header (short and long form) and partial
  // payload is resumed where it stopped.
  auto [c, raw] = connection_with_raw_peer();
  const bytes wire = cat({be32(0xffffffff), be64(3), b("abc"), be32(2), b("de"), be32(0)});
  const pid_t pid = ::getpid(), tid = this_thread_id();
  std::atomic<bool> ok{true};
  std::thread writer([&] {
    for (std::size_t i = 0; i < wire.size(); ++i) {
      (void)coproc_test::wait_until_asleep(pid, tid);
      if (!put(raw.get(), std::span(wire).subspan(i, 1))) ok = false;
    }
  });
  const bytes first = c.recv_bytes();
  const bytes second = c.recv_bytes();
  const bytes third = c.recv_bytes();
  writer.join();
  BOOST_TEST(ok.load());
  BOOST_TEST(coproc_test::text(first) == "abc");
  BOOST_TEST(coproc_test::text(second) == "de");
  BOOST_TEST(third.empty());
}

BOOST_AUTO_TEST_CASE(nothing_is_read_ahead_of_the_message_returned) {
  // The bytes after a message stay in the descriptor: whoever reads it next (another process,
  // a raw read, poll) finds the next frame whole.
  auto [a, bb] = coproc::pipe();
  a.send_bytes(b("first"));
  a.send_bytes(pattern(3000, 1));
  BOOST_TEST(coproc_test::text(bb.recv_bytes()) == "first");
  const bytes rest = take(bb.fileno(), 4 + 3000);
  BOOST_TEST((rest == cat({be32(3000), pattern(3000, 1)})));
  BOOST_TEST(!bb.poll());
}

BOOST_AUTO_TEST_CASE(a_negative_length_is_a_protocol_error_and_the_end_stops_reading) {
  // No Python sends a negative length other than -1 (Python would return an empty message
  // without reading). coproc refuses it; the stream is then out of step, so the end stops
  // reading as after a bad length: a duplex end becomes write-only, a read-only end closes.
  for (std::uint32_t header : {0x80000000u, 0x80000005u, 0xfffffffeu}) {
    BOOST_TEST_CONTEXT("header " << std::hex << header) {
      {
        auto [c, raw] = connection_with_raw_peer();
        BOOST_REQUIRE(put(raw.get(), cat({be32(header), b("garbage!"), be32(2), b("ok")})));
        const std::string got = failure_of([&] { (void)c.recv_bytes(); });
        BOOST_TEST(contains(got, "protocol_error"), got);
        BOOST_TEST(contains(got, "negative length"), got);
        BOOST_REQUIRE(!c.readable());  // (or the next receive would wait forever)
        BOOST_TEST(c.writable());
        expect_misuse([&] { (void)c.recv_bytes(); }, "connection is write-only");
        c.send_bytes(b("still writes"));
        const auto back = coproc_test::raw_recv(raw.get());
        BOOST_TEST((back && *back == b("still writes")));
      }
      {
        auto [c, raw] = connection_with_raw_peer(true, false);
        BOOST_REQUIRE(put(raw.get(), cat({be32(header), b("garbage!")})));
        bytes buf(64);
        const std::string got = failure_of([&] { (void)c.recv_bytes_into(buf); });
        BOOST_TEST(contains(got, "protocol_error"), got);
        BOOST_REQUIRE(c.closed());
        expect_misuse([&] { (void)c.recv_bytes(); }, "handle is closed");
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(a_huge_announced_length_then_the_end_allocates_only_what_came) {
  // A header announcing 2 GiB (or far more) and then 1 MiB and the end of the stream: a clear
  // error, and the payload grows with what arrives. Each case runs in a child whose address
  // space may grow by 256 MiB only, so allocating the announced length fails there.
  struct hostile {
    const char* name;
    bytes header;
    bool into;
    std::optional<std::size_t> maxlength;
    const char* expected;
  };
  const char* eof_in_message = "io_error: got end of file during message";
  const hostile cases[] = {
      {"short 0x7fffffff", be32(0x7fffffff), false, {}, eof_in_message},
      {"long 2 GiB", cat({be32(0xffffffff), be64(std::uint64_t{1} << 31)}), false, {}, eof_in_message},
      {"long 2^62", cat({be32(0xffffffff), be64(std::uint64_t{1} << 62)}), false, {}, eof_in_message},
      {"long 2 GiB into a buffer", cat({be32(0xffffffff), be64(std::uint64_t{1} << 31)}), true, {},
       eof_in_message},
      {"long 2^40 over maxlength", cat({be32(0xffffffff), be64(std::uint64_t{1} << 40)}), false,
       std::size_t{1} << 20, "message_size: bad message length"},
  };
  for (const auto& h : cases) {
    BOOST_TEST_CONTEXT(h.name) {
      auto [mine, theirs] = raw_socketpair();
      test_pipe report;
      const int mine_fd = mine.get(), theirs_fd = theirs.get();
      coproc::process p([&] {
        ::close(theirs_fd);
        report.close_read();
        // The address space now, and 256 MiB more at most.
        long vm_kib = 0;
        if (FILE* f = std::fopen("/proc/self/status", "r")) {
          char line[256];
          while (std::fgets(line, sizeof line, f))
            if (std::sscanf(line, "VmSize: %ld kB", &vm_kib) == 1) break;
          std::fclose(f);
        }
        rlimit lim{};
        ::getrlimit(RLIMIT_AS, &lim);
        const rlim_t want = (static_cast<rlim_t>(vm_kib) + (256u << 10)) * 1024;
        lim.rlim_cur = want;
        if (vm_kib <= 0 || want > lim.rlim_max || ::setrlimit(RLIMIT_AS, &lim) != 0) {
          report.write("no limit\n");
          coproc::exit(3);
        }
        coproc::connection c(mine_fd);
        bytes buf(64);
        report.write(failure_of([&] {
          if (h.into)
            (void)c.recv_bytes_into(buf);
          else
            (void)c.recv_bytes(h.maxlength);
        }));
      });
      p.start();
      mine.close();
      report.close_write();
      // The child may stop reading early (maxlength): then the rest is refused, which is fine.
      (void)put(theirs.get(), cat({h.header, pattern(1u << 20, 5)}));
      theirs.close();
      const std::string got = report.read_all();
      BOOST_TEST(join_guarded(p) == 0);
      BOOST_TEST(got == h.expected);
    }
  }
}

BOOST_AUTO_TEST_CASE(truncated_frames) {
  // The end of the stream inside a frame is Python's OSError("got end of file during
  // message"); the next receive finds the end of the stream (EOFError), as in Python.
  const bytes long_minus_one = be32(0xffffffff);
  const std::pair<const char*, bytes> cases[] = {
      {"half a header", bytes{std::byte{0}, std::byte{0}}},
      {"a header alone", be32(1)},
      {"half a payload", cat({be32(10), b("abcde")})},
      {"half a long header", cat({long_minus_one, bytes(3)})},
      {"the -1 of a long header alone", long_minus_one},
      {"a long header and half a payload", cat({long_minus_one, be64(5), b("ab")})},
  };
  for (const auto& [name, wire] : cases) {
    BOOST_TEST_CONTEXT(name) {
      for (bool into : {false, true}) {
        auto [c, raw] = connection_with_raw_peer();
        BOOST_REQUIRE(put(raw.get(), cat({be32(2), b("ok"), wire})));
        raw.close();
        BOOST_TEST((c.recv_bytes() == b("ok")));
        bytes buf(64);
        const std::string got = failure_of([&] {
          if (into)
            (void)c.recv_bytes_into(buf);
          else
            (void)c.recv_bytes();
        });
        BOOST_TEST(got == "io_error: got end of file during message");
        BOOST_TEST(c.readable());
        BOOST_TEST(failure_of([&] { (void)c.recv_bytes(); }) == "eof");
      }
    }
  }
  // The end of the stream between frames is EOFError alone.
  auto [c, raw] = connection_with_raw_peer();
  BOOST_REQUIRE(put(raw.get(), cat({be32(2), b("ok")})));
  raw.close();
  BOOST_TEST((c.recv_bytes() == b("ok")));
  BOOST_TEST(failure_of([&] { (void)c.recv_bytes(); }) == "eof");
  bytes buf(4);
  BOOST_TEST(failure_of([&] { (void)c.recv_bytes_into(buf); }) == "eof");
}

BOOST_AUTO_TEST_CASE(a_peer_that_dies_inside_a_message) {
  auto [a, child_end] = coproc::pipe();
  test_pipe ready;
  coproc::process p(
      [&ready](coproc::connection& c) {
        ready.close_read();
        // Half of a 1 MiB message, then it waits to be killed.
        const bytes half = cat({be32(1u << 20), pattern(1000)});
        if (!coproc_test::write_all(c.fileno(), half.data(), half.size())) coproc::exit(3);
        ready.write("sent\n");
        for (;;) ::pause();
      },
      std::move(child_end));
  p.start();
  ready.close_write();
  BOOST_REQUIRE(ready.read_line() == "sent");
  p.kill();
  BOOST_TEST(join_guarded(p) == -SIGKILL);
  BOOST_TEST(failure_of([&] { (void)a.recv_bytes(); }) == "io_error: got end of file during message");
  BOOST_TEST(failure_of([&] { (void)a.recv_bytes(); }) == "eof");
}

BOOST_AUTO_TEST_CASE(maxlength_exceeded_on_a_duplex_end) {
  auto [a, bb] = coproc::pipe();
  a.send_bytes(b("0123456789"));
  try {
    (void)bb.recv_bytes(5);
    BOOST_ERROR("no error for a message longer than maxlength");
  } catch (const std::system_error& e) {
    BOOST_TEST((e.code() == std::errc::message_size));
    BOOST_TEST(contains(e.what(), "bad message length"), e.what());
  }
  // Python: readable = False; the end still writes.
  BOOST_TEST(!bb.readable());
  BOOST_TEST(bb.writable());
  BOOST_TEST(!bb.closed());
  bytes buf(16);
  expect_misuse([&] { (void)bb.recv_bytes(); }, "connection is write-only");
  expect_misuse([&] { (void)bb.recv_bytes_into(buf); }, "connection is write-only");
  expect_misuse([&] { (void)bb.poll(); }, "connection is write-only");
  // The payload was not consumed: its bytes are what the descriptor holds now.
  BOOST_TEST((take(bb.fileno(), 10) == b("0123456789")));
  BOOST_TEST(!readable_now(bb.fileno()));
  bb.send_bytes(b("still writes"));
  BOOST_TEST((a.recv_bytes() == b("still writes")));
}

BOOST_AUTO_TEST_CASE(maxlength_exceeded_on_a_read_only_end_closes_it) {
  auto [r, w] = coproc::pipe(false);
  w.send_bytes(b("0123456789"));
  std::string got = failure_of([&] { (void)r.recv_bytes(3); });
  BOOST_TEST(got == "message_size: bad message length");
  BOOST_TEST(r.closed());
  expect_misuse([&] { (void)r.recv_bytes(); }, "handle is closed");
  expect_misuse([&] { (void)r.poll(); }, "handle is closed");
  r.close();  // still idempotent
}

BOOST_AUTO_TEST_CASE(maxlength_at_the_limit) {
  auto [a, bb] = coproc::pipe();
  a.send_bytes(b("12345"));
  BOOST_TEST((bb.recv_bytes(5) == b("12345")));
  a.send_bytes(bytes{});
  BOOST_TEST(bb.recv_bytes(0).empty());
  a.send_bytes(pattern(70000));
  BOOST_TEST((bb.recv_bytes(70000) == pattern(70000)));
  BOOST_TEST(bb.readable());
}

BOOST_AUTO_TEST_CASE(recv_bytes_into_offsets_and_short_buffers) {
  auto [a, bb] = coproc::pipe();
  bytes buf(8, std::byte{0xEE});
  expect_misuse([&] { (void)bb.recv_bytes_into(buf, 9); }, "offset too large");
  expect_misuse([&] { (void)bb.recv_bytes_into(buf, std::numeric_limits<std::size_t>::max()); },
                "offset too large");
  // An empty message fits at the very end.
  a.send_bytes(bytes{});
  BOOST_TEST(bb.recv_bytes_into(buf, 8) == 0u);
  // One byte does not: BufferTooShort, the buffer untouched.
  a.send_bytes(b("x"));
  try {
    (void)bb.recv_bytes_into(buf, 8);
    BOOST_ERROR("expected buffer_too_short");
  } catch (const coproc::buffer_too_short& e) {
    BOOST_TEST((e.message() == b("x")));
  }
  BOOST_TEST((buf == bytes(8, std::byte{0xEE})));
  a.send_bytes(b("abc"));
  BOOST_TEST(bb.recv_bytes_into(buf, 5) == 3u);
  BOOST_TEST((buf == cat({bytes(5, std::byte{0xEE}), b("abc")})));
  // A message longer than the payload's first allocation, into a small buffer.
  const bytes long_one = pattern((64u << 10) + 1, 4);
  a.send_bytes(long_one);
  try {
    (void)bb.recv_bytes_into(buf);
    BOOST_ERROR("expected buffer_too_short");
  } catch (const coproc::buffer_too_short& e) {
    BOOST_TEST((e.message() == long_one));
  }
  a.send_bytes(b("next"));
  BOOST_TEST((bb.recv_bytes() == b("next")));
  BOOST_TEST(!bb.poll());
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------
// Robustness.

BOOST_AUTO_TEST_SUITE(robustness)

BOOST_AUTO_TEST_CASE(sending_to_a_peer_that_has_gone_is_epipe_never_sigpipe) {
  // In a child with SIGPIPE at its default action (death) and unblocked: each case must throw
  // std::system_error(EPIPE), and the child must live to report it.
  const int failures = in_child([] {
    ::signal(SIGPIPE, SIG_DFL);
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ::pthread_sigmask(SIG_UNBLOCK, &pipe_set, nullptr);
    int bad = 0;
    auto expect_epipe = [&](int bit, auto&& send) {
      if (failure_of(send) != "broken_pipe") bad |= bit;
    };
    {  // a duplex pipe (a socket)
      auto [a, bb] = coproc::pipe();
      bb.close();
      expect_epipe(1, [&] { a.send_bytes(b("x")); });
    }
    {  // Pipe(duplex=False): the reader has gone
      auto [r, w] = coproc::pipe(false);
      r.close();
      expect_epipe(2, [&] { w.send_bytes(pattern(100000)); });
    }
    {  // an OS pipe taken over by a connection (write(2), which raises SIGPIPE)
      auto [pr, pw] = raw_os_pipe();
      coproc::connection w(pw.release(), false, true);
      pr.close();
      expect_epipe(4, [&] { w.send_bytes(b("x")); });
      expect_epipe(8, [&] { w.send_bytes(pattern(1u << 20)); });
    }
    {  // an OS pipe whose reader goes while a large message is half written
      auto [pr, pw] = raw_os_pipe();
      coproc::connection w(pw.release(), false, true);
      std::thread reader([&pr] {
        char some[10];
        (void)!::read(pr.get(), some, sizeof some);
        pr.close();
      });
      expect_epipe(16, [&] { w.send_bytes(pattern(4u << 20)); });
      reader.join();
    }
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) bad |= 32;
    coproc::exit(bad);
  });
  BOOST_TEST(failures == 0, "failed cases (bits): " << failures << (failures < 0 ? " (killed by a signal)" : ""));
}

BOOST_AUTO_TEST_CASE(a_sigpipe_already_pending_is_left_pending_and_ours_is_taken) {
  // With SIGPIPE blocked by the program, a write(2) to a gone reader leaves one pending:
  // coproc takes the one it raised, but never one that was pending before.
  coproc_test::signal_blocked_scope blocked(SIGPIPE);
  auto pipe_pending = [] {
    sigset_t pending;
    sigpending(&pending);
    return sigismember(&pending, SIGPIPE) == 1;
  };
  auto take_pending = [] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    const timespec zero{};
    while (::sigtimedwait(&set, nullptr, &zero) == SIGPIPE) {
    }
  };
  auto gone_reader = [] {
    auto [pr, pw] = raw_os_pipe();
    coproc::connection w(pw.release(), false, true);
    return w;  // pr closes here
  };
  {
    coproc::connection w = gone_reader();
    ::pthread_kill(::pthread_self(), SIGPIPE);
    BOOST_REQUIRE(pipe_pending());
    BOOST_TEST(failure_of([&] { w.send_bytes(b("x")); }) == "broken_pipe");
    BOOST_TEST(pipe_pending());  // the program's own is still there
    take_pending();
  }
  {
    coproc::connection w = gone_reader();
    BOOST_REQUIRE(!pipe_pending());
    BOOST_TEST(failure_of([&] { w.send_bytes(b("x")); }) == "broken_pipe");
    BOOST_TEST(!pipe_pending());  // the one the write raised was taken
    take_pending();               // (or the end of the scope would deliver it)
  }
}

namespace {
// What /proc/self/fd/<fd> points at ("socket:[1234]").
std::string link_of(int fd) {
  char path[64], target[256];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  const auto n = ::readlink(path, target, sizeof target - 1);
  return n > 0 ? std::string(target, static_cast<std::size_t>(n)) : std::string();
}
// Bit i set if some descriptor of this process points at links[i]. Runs in children.
int which_open(const std::vector<std::string>& links) {
  int found = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return 64;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string l = link_of(std::atoi(e->d_name));
    for (std::size_t i = 0; i < links.size(); ++i)
      if (l == links[i]) found |= 1 << i;
  }
  ::closedir(d);
  return found;
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_handed_connection_stays_open_in_its_child_and_no_other_child_inherits_one) {
  auto [a, bb] = coproc::pipe();
  auto [adopted_mine, adopted_theirs] = raw_socketpair();
  coproc::connection adopted(adopted_mine.release());  // a descriptor taken over is coproc's too
  const std::vector<std::string> links{link_of(a.fileno()), link_of(bb.fileno()),
                                       link_of(adopted.fileno())};
  BOOST_REQUIRE(links[0].rfind("socket:", 0) == 0);
  BOOST_REQUIRE(links[0] != links[1]);

  // The first child is handed bb (by reference: the parent keeps its copy meanwhile): it has
  // bb, at the same number, and neither a nor the adopted end. It stays until told to go.
  coproc::process handed(
      [&links](coproc::connection& c) {
        int code = which_open(links);
        if (link_of(c.fileno()) == links[1]) code |= 8;
        (void)c.recv_bytes();
        coproc::exit(code);
      },
      std::ref(bb));
  handed.start();
  // The second child is handed nothing, while the parent still holds all three.
  const int other = in_child([&links] { coproc::exit(which_open(links)); });
  BOOST_TEST(other == 0, "the second child has descriptors (bits) " << other);
  bb.close();
  a.send_bytes(b("go"));
  BOOST_TEST(join_guarded(handed) == (2 | 8));
  // Both copies of bb are gone now: a sees the end of the stream.
  BOOST_REQUIRE(a.poll(guard));
  BOOST_CHECK_THROW(a.recv_bytes(), coproc::eof_error);
}

BOOST_AUTO_TEST_CASE(one_sender_and_one_receiver_on_each_end_at_once) {
  // Four threads: each end sends and receives at the same time, with messages larger than the
  // socket buffer among them, so every thread blocks now and then.
  auto [a, bb] = coproc::pipe();
  constexpr int n = 120;
  auto size_of = [](int i) { return static_cast<std::size_t>((i * 7919) % 400000); };
  std::atomic<int> bad{0};
  auto sender = [&](coproc::connection& c, unsigned seed) {
    try {
      for (int i = 0; i < n; ++i) c.send_bytes(pattern(size_of(i), seed + static_cast<unsigned>(i)));
    } catch (const std::exception&) {
      bad += 1000;
    }
  };
  auto receiver = [&](coproc::connection& c, unsigned seed) {
    try {
      for (int i = 0; i < n; ++i)
        if (c.recv_bytes() != pattern(size_of(i), seed + static_cast<unsigned>(i))) ++bad;
    } catch (const std::exception&) {
      bad += 1000;
    }
  };
  std::thread t1(sender, std::ref(a), 0u), t2(receiver, std::ref(bb), 0u),
      t3(sender, std::ref(bb), 500u), t4(receiver, std::ref(a), 500u);
  t1.join();
  t2.join();
  t3.join();
  t4.join();
  BOOST_TEST(bad.load() == 0);
  BOOST_TEST(!a.poll());
  BOOST_TEST(!bb.poll());
}

BOOST_AUTO_TEST_CASE(two_blocking_senders_and_two_blocking_receivers_are_serialised) {
  // Two threads send on one end and two receive on the other: whole messages only, never
  // interleaved bytes, each delivered once. A small send buffer makes every message many
  // chunks in the kernel and keeps both senders blocking, so unserialised writes interleave.
  auto [a, bb] = coproc::pipe();
  const int small_buffer = 4096;
  BOOST_REQUIRE(::setsockopt(a.fileno(), SOL_SOCKET, SO_SNDBUF, &small_buffer, sizeof small_buffer) == 0);
  constexpr std::uint32_t per_sender = 60;
  constexpr std::size_t largest = 8 + 300000;
  auto make = [](std::uint32_t who, std::uint32_t seq) {
    const std::size_t size = 8 + (who * 131071 + seq * 65537) % 300000;
    bytes m = pattern(size, who * 1000 + seq);
    const bytes tag = cat({be32(who), be32(seq)});
    std::copy(tag.begin(), tag.end(), m.begin());
    return m;
  };
  std::atomic<int> bad{0}, senders_done{0}, receivers_done{0};
  std::mutex seen_mutex;
  std::set<std::pair<std::uint32_t, std::uint32_t>> seen;
  auto sender = [&](std::uint32_t who) {
    try {
      for (std::uint32_t s = 0; s < per_sender; ++s) a.send_bytes(make(who, s));
    } catch (const std::exception&) {
      bad += 1000;
    }
    ++senders_done;
  };
  auto receiver = [&] {
    try {
      for (;;) {
        // maxlength: a garbled header fails at once rather than waiting for its bytes.
        const bytes m = bb.recv_bytes(largest);
        if (m.empty()) break;
        if (m.size() < 8) {
          ++bad;
          continue;
        }
        auto num = [&](std::size_t at) {
          std::uint32_t v = 0;
          for (std::size_t i = at; i < at + 4; ++i) v = (v << 8) | std::to_integer<std::uint32_t>(m[i]);
          return v;
        };
        const auto who = num(0), seq = num(4);
        if (who > 1 || seq >= per_sender || m != make(who, seq)) {
          ++bad;
          continue;
        }
        std::lock_guard lock(seen_mutex);
        if (!seen.insert({who, seq}).second) ++bad;
      }
    } catch (const std::exception&) {
      bad += 1000;
    }
    ++receivers_done;
  };
  std::thread r1(receiver), r2(receiver), s1(sender, 0u), s2(sender, 1u);
  bool finished = coproc_test::wait_until([&] { return senders_done == 2; }, guard);
  if (finished) {
    a.send_bytes(bytes{});  // one end marker per receiver
    a.send_bytes(bytes{});
    finished = coproc_test::wait_until([&] { return receivers_done == 2; }, guard);
  }
  if (!finished) {
    // A hang guard: wake every thread still blocked, so the failure is reported.
    BOOST_ERROR("hang guard expired: the sockets are shut down");
    ::shutdown(a.fileno(), SHUT_RDWR);
    ::shutdown(bb.fileno(), SHUT_RDWR);
  }
  s1.join();
  s2.join();
  r1.join();
  r2.join();
  BOOST_TEST(bad.load() == 0);
  BOOST_TEST(seen.size() == 2 * per_sender);
}

BOOST_AUTO_TEST_CASE(close_is_idempotent_and_really_closes) {
  auto [a, bb] = coproc::pipe();
  const int fd = a.fileno();
  a.close();
  BOOST_TEST(a.closed());
  BOOST_TEST(!fd_open(fd));
  a.close();
  BOOST_TEST(a.closed());
  BOOST_REQUIRE(bb.poll(guard));
  BOOST_CHECK_THROW(bb.recv_bytes(), coproc::eof_error);
  bb.close();
  bb.close();
  BOOST_TEST(bb.closed());
}

BOOST_AUTO_TEST_CASE(a_moved_from_connection_is_closed_and_a_move_assignment_closes_the_old_end) {
  auto [a, bb] = coproc::pipe();
  coproc::connection moved = std::move(a);
  BOOST_TEST(a.closed());
  BOOST_TEST(!a.readable());
  BOOST_TEST(!a.writable());
  bytes buf(4);
  expect_misuse([&] { a.send_bytes(b("x")); }, "handle is closed");
  expect_misuse([&] { (void)a.recv_bytes(); }, "handle is closed");
  expect_misuse([&] { (void)a.recv_bytes_into(buf); }, "handle is closed");
  expect_misuse([&] { (void)a.poll(); }, "handle is closed");
  expect_misuse([&] { (void)a.fileno(); }, "handle is closed");
  a.close();
  // The new owner talks.
  moved.send_bytes(b("moved"));
  BOOST_TEST((bb.recv_bytes() == b("moved")));

  // Assigning over an open end closes that end: its peer sees the end of the stream.
  auto [c, d] = coproc::pipe();
  c = std::move(moved);
  BOOST_REQUIRE(d.poll(guard));
  BOOST_CHECK_THROW(d.recv_bytes(), coproc::eof_error);
  c.send_bytes(b("assigned"));
  BOOST_TEST((bb.recv_bytes() == b("assigned")));
  // Assigning an end to itself keeps it.
  auto& alias = c;
  c = std::move(alias);
  BOOST_TEST(!c.closed());
  c.send_bytes(b("self"));
  BOOST_TEST((bb.recv_bytes() == b("self")));
  // A moved-from end is open again once assigned to.
  a = std::move(c);
  a.send_bytes(b("again"));
  BOOST_TEST((bb.recv_bytes() == b("again")));
}

BOOST_AUTO_TEST_CASE(blocking_calls_on_an_os_pipe_made_non_blocking_by_an_asynchronous_one) {
  // An asynchronous operation sets O_NONBLOCK on a pipe for good; blocking calls then wait
  // for readiness instead of failing with EAGAIN.
  auto [pr, pw] = raw_os_pipe();
  coproc::connection r(pr.release(), true, false), w(pw.release(), false, true);
  asio::io_context io;
  w.send_bytes(b("one"));
  bytes got;
  r.async_recv_bytes(asio::bind_executor(io, [&](boost::system::error_code ec, bytes m) {
    BOOST_TEST(!ec);
    got = std::move(m);
  }));
  const bytes three = b("three");
  w.async_send_bytes(three, asio::bind_executor(io, [](boost::system::error_code ec, std::size_t n) {
                       BOOST_TEST(!ec);
                       BOOST_TEST(n == 5u);
                     }));
  io.run();
  BOOST_TEST(coproc_test::text(got) == "one");
  BOOST_REQUIRE(::fcntl(r.fileno(), F_GETFL) & O_NONBLOCK);
  BOOST_REQUIRE(::fcntl(w.fileno(), F_GETFL) & O_NONBLOCK);
  BOOST_TEST(coproc_test::text(r.recv_bytes()) == "three");

  // A receive with nothing there waits (a thread sends once this one sleeps).
  const pid_t pid = ::getpid(), tid = this_thread_id();
  std::thread late([&] {
    (void)coproc_test::wait_until_asleep(pid, tid);
    w.send_bytes(b("late"));
  });
  bytes late_one;
  BOOST_TEST(failure_of([&] { late_one = r.recv_bytes(); }) == "nothing");
  late.join();
  BOOST_TEST(coproc_test::text(late_one) == "late");

  // A send larger than the pipe waits for room while a thread reads.
  const bytes big = pattern(1u << 20, 8);
  bytes received;
  std::thread reader([&] { received = r.recv_bytes(); });
  BOOST_TEST(failure_of([&] { w.send_bytes(big); }) == "nothing");
  reader.join();
  BOOST_TEST((received == big));
}

BOOST_AUTO_TEST_CASE(a_blocking_call_while_an_asynchronous_one_is_in_progress_is_misuse) {
  auto [a, bb] = coproc::pipe();
  asio::io_context io;
  bytes got;
  a.async_recv_bytes(asio::bind_executor(io, [&](boost::system::error_code ec, bytes m) {
    BOOST_TEST(!ec);
    got = std::move(m);
  }));
  io.poll();
  bytes buf(4);
  expect_misuse([&] { (void)a.recv_bytes(); }, "another receive is in progress");
  expect_misuse([&] { (void)a.recv_bytes_into(buf); }, "another receive is in progress");
  bb.send_bytes(b("to async"));
  io.run();
  BOOST_TEST(coproc_test::text(got) == "to async");
  bb.send_bytes(b("to blocking"));
  BOOST_TEST(coproc_test::text(a.recv_bytes()) == "to blocking");

  // A send that cannot finish (nobody reads 8 MiB) keeps the sending side busy.
  const bytes big = pattern(8u << 20, 2);
  std::size_t sent = 0;
  io.restart();
  a.async_send_bytes(big, asio::bind_executor(io, [&](boost::system::error_code ec, std::size_t n) {
                       BOOST_TEST(!ec);
                       sent = n;
                     }));
  io.poll();
  BOOST_REQUIRE(sent == 0u);
  expect_misuse([&] { a.send_bytes(b("x")); }, "another send is in progress");
  bytes received;
  std::thread reader([&] { received = bb.recv_bytes(); });
  io.run();
  reader.join();
  BOOST_TEST(sent == big.size());
  BOOST_TEST((received == big));
  a.send_bytes(b("after"));
  BOOST_TEST(coproc_test::text(bb.recv_bytes()) == "after");
}

BOOST_AUTO_TEST_SUITE_END()
