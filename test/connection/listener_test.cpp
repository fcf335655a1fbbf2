// coproc::address, listener, client, async_accept and async_client between coproc ends:
// every family (Unix path, abstract, TCP), with and without an authkey, the CPython cases of
// _TestListener and _TestListenerClient (test_multiple_bind, test_context, test_empty_authkey,
// test_abstract_socket, test_listener_client, test_issue14725, test_issue16955) and
// TestIgnoreEINTR.test_ignore_listener, the handshake's failures and its deadline, close(),
// the socket path's unlinking, listeners handed to children, and the asynchronous forms.
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "peer_support.hpp"

using namespace std::chrono_literals;
using coproc::bytes;
using coproc_test::auth_error_of;
using coproc_test::b;
using coproc_test::system_error_of;
using coproc_test::guard;
using coproc_test::text;
namespace asio = boost::asio;
using error_code = boost::system::error_code;

namespace {

enum class fam { path, abstract, tcp };
const fam families[] = {fam::path, fam::abstract, fam::tcp};
const char* name_of(fam f) { return f == fam::path ? "unix path" : f == fam::abstract ? "abstract" : "tcp"; }

coproc::address make_address(fam f, const coproc_test::temp_dir& dir, const std::string& name = "s") {
  switch (f) {
    case fam::path:
      return coproc::address::unix_socket(dir.file(name));
    case fam::abstract:
      return coproc::address::unix_socket(coproc_test::abstract_name());
    case fam::tcp:
      break;
  }
  return coproc::address::tcp("127.0.0.1", 0);
}

// accept() once a client is there (a hang guard: a client that never comes fails the test).
// Runs on server threads: Boost.Test's assertions are not thread-safe (TSan), so a failure
// throws, and the future hands it to the test's thread.
coproc::connection guarded_accept(coproc::listener& l) {
  if (!coproc_test::wait_readable(l.fileno(), guard)) throw std::runtime_error("no client came");
  return l.accept();
}

template <class T>
T get(std::future<T>& f) {
  BOOST_REQUIRE_MESSAGE(f.wait_for(guard) == std::future_status::ready, "hang guard expired");
  return f.get();
}

// Echoes every message until the end of the stream.
void echo(coproc::connection c) {
  try {
    for (;;) c.send_bytes(c.recv_bytes());
  } catch (const coproc::eof_error&) {
  }
}

pid_t this_thread_id() { return static_cast<pid_t>(::syscall(SYS_gettid)); }

}  // namespace

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(address)

BOOST_AUTO_TEST_CASE(forms_and_to_string) {
  const auto p = coproc::address::unix_socket("/tmp/x.sock");
  BOOST_TEST(p.to_string() == "/tmp/x.sock");
  BOOST_TEST(p.port() == 0);
  BOOST_TEST(!p.is_abstract());
  BOOST_TEST((p.family() == coproc::address::family_type::unix_socket));
  BOOST_TEST(p.path() == "/tmp/x.sock");

  const auto a = coproc::address::unix_socket(std::string("\0name", 5));
  BOOST_TEST(a.to_string() == "@name");
  BOOST_TEST(a.is_abstract());

  const auto t = coproc::address::tcp("localhost", 6000);
  BOOST_TEST(t.to_string() == "localhost:6000");
  BOOST_TEST(t.port() == 6000);
  BOOST_TEST(t.host() == "localhost");
  BOOST_TEST((t.family() == coproc::address::family_type::tcp));
  BOOST_TEST(coproc::address::tcp("::1", 80).to_string() == "[::1]:80");
  BOOST_TEST((t == coproc::address::tcp("localhost", 6000)));
  BOOST_TEST(!(t == coproc::address::tcp("localhost", 6001)));
}

BOOST_AUTO_TEST_CASE(misuse) {
  BOOST_CHECK_THROW(coproc::address::unix_socket(""), std::invalid_argument);
  BOOST_CHECK_THROW(coproc::address::unix_socket(std::string(109, 'x')), std::invalid_argument);
  BOOST_CHECK_NO_THROW(coproc::address::unix_socket(std::string(108, 'x')));
  coproc_test::expect_misuse([] { coproc::address::unix_socket(std::string("a\0b", 3)); },
                             "embedded null byte");
  BOOST_CHECK_NO_THROW(coproc::address::unix_socket(std::string("\0a\0b", 4)));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(blocking)

BOOST_AUTO_TEST_CASE(every_family_with_and_without_a_key) {
  for (fam f : families)
    for (const std::optional<bytes>& key : {std::optional<bytes>(), std::optional(b("secret")),
                                            std::optional(bytes())}) {
      BOOST_TEST_CONTEXT(name_of(f) << (key ? key->empty() ? ", empty key" : ", key" : ", no key")) {
        coproc_test::temp_dir dir;
        coproc::listener l(make_address(f, dir), 1, key);
        auto server = std::async(std::launch::async, [&] { echo(guarded_accept(l)); });
        coproc::connection c = coproc::client(l.address(), key);
        coproc_test::check_echo(c, {0, 1, 16384, 16385, 1u << 20});
        c.close();
        get(server);
      }
    }
}

BOOST_AUTO_TEST_CASE(tcp_port_zero_reports_the_real_port) {
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0));
  BOOST_TEST(l.address().port() != 0);
  BOOST_TEST(l.address().host() == "127.0.0.1");
  sockaddr_in in{};
  socklen_t len = sizeof in;
  BOOST_REQUIRE(::getsockname(l.fileno(), reinterpret_cast<sockaddr*>(&in), &len) == 0);
  BOOST_TEST(ntohs(in.sin_port) == l.address().port());
  // "localhost" resolves (IPv4 first, as Python's AF_INET).
  auto server = std::async(std::launch::async, [&] { echo(guarded_accept(l)); });
  coproc::connection c = coproc::client(coproc::address::tcp("localhost", l.address().port()));
  coproc_test::check_echo(c, {5});
  c.close();
  get(server);
}

BOOST_AUTO_TEST_CASE(socket_options) {
  coproc_test::temp_dir dir;
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0), 7);
  int v = 0;
  socklen_t len = sizeof v;
  BOOST_REQUIRE(::getsockopt(l.fileno(), SOL_SOCKET, SO_REUSEADDR, &v, &len) == 0);
  BOOST_TEST(v == 1);
  BOOST_TEST((::fcntl(l.fileno(), F_GETFD) & FD_CLOEXEC) != 0);
  coproc::listener u(coproc::address::unix_socket(dir.file("u")));
  BOOST_REQUIRE(::getsockopt(u.fileno(), SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0);
  BOOST_TEST(v == 1);
  BOOST_TEST(l.handshake_timeout() == std::chrono::nanoseconds(coproc::default_handshake_timeout));
}

// _TestListener.test_multiple_bind: a second listener on an address in use fails, and the
// first one goes on working.
BOOST_AUTO_TEST_CASE(multiple_bind) {
  for (fam f : families) {
    BOOST_TEST_CONTEXT(name_of(f)) {
      coproc_test::temp_dir dir;
      coproc::listener first(make_address(f, dir));
      BOOST_TEST((system_error_of([&] { coproc::listener second(first.address()); }) ==
                  std::errc::address_in_use));
      if (f == fam::path) BOOST_TEST(coproc_test::exists(first.address().path()));
      auto server = std::async(std::launch::async, [&] { echo(guarded_accept(first)); });
      coproc::connection c = coproc::client(first.address());
      coproc_test::check_echo(c, {3});
      c.close();
      get(server);
    }
  }
}

// _TestListener.test_context, test_abstract_socket and test_empty_authkey: after close(),
// accept() is misuse ("listener is closed").
BOOST_AUTO_TEST_CASE(context_abstract_and_empty_authkey) {
  for (fam f : families)
    for (const std::optional<bytes>& key : {std::optional<bytes>(), std::optional(bytes())}) {
      BOOST_TEST_CONTEXT(name_of(f) << (key ? ", b''" : ", no key")) {
        coproc_test::temp_dir dir;
        coproc::listener l(make_address(f, dir), 1, key);
        {
          auto client = std::async(std::launch::async, [&] {
            coproc::connection c = coproc::client(l.address(), key);
            c.send_bytes(b("1729"));
          });
          coproc::connection d = guarded_accept(l);
          BOOST_REQUIRE(d.poll(guard));
          BOOST_TEST(text(d.recv_bytes()) == "1729");
          get(client);
        }
        l.close();
        l.close();  // idempotent
        BOOST_TEST(l.closed());
        coproc_test::expect_misuse([&] { l.accept(); }, "listener is closed");
        coproc_test::expect_misuse([&] { l.fileno(); }, "listener is closed");
        BOOST_TEST(l.address().to_string() != "");  // the address stays readable
      }
    }
}

// _TestListenerClient.test_issue14725: the client connects, sends and closes before accept().
BOOST_AUTO_TEST_CASE(client_gone_before_accept) {
  coproc_test::temp_dir dir;
  coproc::listener l(coproc::address::unix_socket(dir.file("s")));
  coproc::process p(
      [](coproc::address where) {
        coproc::connection c = coproc::client(where);
        c.send_bytes(coproc::as_bytes("hello"));
        c.close();
      },
      l.address());
  p.start();
  BOOST_TEST(p.join() == 0);
  coproc::connection c = l.accept();
  BOOST_TEST(text(c.recv_bytes()) == "hello");
  BOOST_CHECK_THROW(c.recv_bytes(), coproc::eof_error);
}

// _TestListenerClient.test_issue16955: poll(1 s) is true once the other end has sent.
BOOST_AUTO_TEST_CASE(poll_after_send) {
  for (fam f : families) {
    BOOST_TEST_CONTEXT(name_of(f)) {
      coproc_test::temp_dir dir;
      coproc::listener l(make_address(f, dir));
      coproc::connection c = coproc::client(l.address());
      coproc::connection a = l.accept();
      a.send_bytes(b("hello"));
      BOOST_TEST(c.poll(1s));
    }
  }
}

// _TestListenerClient.test_listener_client: a child process connects and sends.
BOOST_AUTO_TEST_CASE(child_process_as_client) {
  for (fam f : families) {
    BOOST_TEST_CONTEXT(name_of(f)) {
      coproc_test::temp_dir dir;
      coproc::listener l(make_address(f, dir), 1, b("k"));
      coproc::process p(
          [](coproc::address where) {
            coproc::connection c = coproc::client(where, coproc::as_bytes("k"));
            c.send_bytes(coproc::as_bytes("hello"));
          },
          l.address());
      p.daemon(true);
      p.start();
      coproc::connection c = guarded_accept(l);
      BOOST_REQUIRE(c.poll(guard));
      BOOST_TEST(text(c.recv_bytes()) == "hello");
      BOOST_TEST(p.join() == 0);
    }
  }
}

BOOST_AUTO_TEST_CASE(unix_path_unlinked_on_close_only_if_still_ours) {
  coproc_test::temp_dir dir;
  const std::string path = dir.file("s");
  {
    coproc::listener l(coproc::address::unix_socket(path));
    BOOST_TEST(coproc_test::exists(path));
    l.close();
    BOOST_TEST(!coproc_test::exists(path));
  }
  {
    coproc::listener l(coproc::address::unix_socket(path));
  }  // the destructor closes
  BOOST_TEST(!coproc_test::exists(path));
  // Somebody removed our file and bound the path again: close() leaves theirs alone.
  coproc::listener a(coproc::address::unix_socket(path));
  BOOST_REQUIRE(::unlink(path.c_str()) == 0);
  coproc::listener c(coproc::address::unix_socket(path));
  a.close();
  BOOST_TEST(coproc_test::exists(path));
  auto server = std::async(std::launch::async, [&] { echo(guarded_accept(c)); });
  coproc::connection conn = coproc::client(c.address());
  coproc_test::check_echo(conn, {1});
  conn.close();
  get(server);
}

// A listener handed to a child (std::ref) accepts there; the child's end does not unlink the
// parent's path, and the parent's listener goes on.
BOOST_AUTO_TEST_CASE(listener_handed_to_a_child) {
  coproc_test::temp_dir dir;
  coproc::listener l(coproc::address::unix_socket(dir.file("s")), 1, b("k"));
  coproc::process p(
      [](coproc::listener& shared) {
        coproc::connection c = shared.accept();
        c.send_bytes(c.recv_bytes());
        shared.close();  // the child's copy: the path stays
      },
      std::ref(l));
  p.start();
  {
    coproc::connection c = coproc::client(l.address(), b("k"));
    coproc_test::check_echo(c, {10});
  }
  BOOST_TEST(p.join() == 0);
  BOOST_TEST(coproc_test::exists(l.address().path()));
  BOOST_TEST(!l.closed());
  auto server = std::async(std::launch::async, [&] { echo(guarded_accept(l)); });
  coproc::connection c = coproc::client(l.address(), b("k"));
  coproc_test::check_echo(c, {10});
  c.close();
  get(server);
}

// Other children do not inherit the listening socket (it is coproc's own).
BOOST_AUTO_TEST_CASE(not_inherited_by_other_children) {
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0));
  struct stat st {};
  BOOST_REQUIRE(::fstat(l.fileno(), &st) == 0);
  coproc::process p(
      [](int fd, ino_t ino) {
        struct stat mine {};
        if (::fstat(fd, &mine) == 0 && mine.st_ino == ino) coproc::exit(1);
      },
      l.fileno(), st.st_ino);
  p.start();
  BOOST_TEST(p.join() == 0);
}

BOOST_AUTO_TEST_CASE(close_wakes_a_blocked_accept) {
  coproc_test::temp_dir dir;
  coproc::listener l(coproc::address::unix_socket(dir.file("s")));
  std::promise<pid_t> tid;
  auto waiter = std::async(std::launch::async, [&]() -> std::string {
    tid.set_value(this_thread_id());
    try {
      l.accept();
    } catch (const std::logic_error& e) {
      return e.what();
    }
    return "accepted";
  });
  auto tid_future = tid.get_future();
  const pid_t t = get(tid_future);
  BOOST_REQUIRE(coproc_test::wait_until_asleep(::getpid(), t));
  l.close();
  BOOST_TEST(get(waiter) == "listener is closed");
}

// TestIgnoreEINTR.test_ignore_listener: a signal handled while accept() waits does not end it.
BOOST_AUTO_TEST_CASE(accept_survives_signals) {
  coproc_test::signal_action_scope handler(SIGUSR1, [](int) {});
  coproc_test::temp_dir dir;
  coproc::listener l(coproc::address::unix_socket(dir.file("s")));
  std::promise<std::pair<pid_t, pthread_t>> who;
  auto server = std::async(std::launch::async, [&] {
    who.set_value({this_thread_id(), ::pthread_self()});
    coproc::connection a = l.accept();
    a.send_bytes(coproc::as_bytes("welcome"));
  });
  auto who_future = who.get_future();
  const auto [tid, thread] = get(who_future);
  BOOST_REQUIRE(coproc_test::wait_until_asleep(::getpid(), tid));
  BOOST_REQUIRE(::pthread_kill(thread, SIGUSR1) == 0);
  BOOST_REQUIRE(coproc_test::wait_until([&] { return !coproc_test::signal_pending(::getpid(), tid, SIGUSR1); }));
  coproc::connection c = coproc::client(l.address());
  BOOST_REQUIRE(c.poll(guard));
  BOOST_TEST(text(c.recv_bytes()) == "welcome");
  get(server);
}

BOOST_AUTO_TEST_CASE(wrong_key_fails_on_both_sides_and_the_listener_goes_on) {
  for (fam f : families) {
    BOOST_TEST_CONTEXT(name_of(f)) {
      coproc_test::temp_dir dir;
      coproc::listener l(make_address(f, dir), 1, b("one"));
      auto client = std::async(std::launch::async, [&] {
        return auth_error_of([&] { coproc::client(l.address(), b("two")); });
      });
      BOOST_TEST(auth_error_of([&] { guarded_accept(l); }) == "digest received was wrong");
      BOOST_TEST(get(client) == "digest sent was rejected");
      auto server = std::async(std::launch::async, [&] { echo(guarded_accept(l)); });
      coproc::connection c = coproc::client(l.address(), b("one"));
      coproc_test::check_echo(c, {2});
      c.close();
      get(server);
    }
  }
}

// gh-123736: a client with a key and a listener without one (or the reverse) would wait for
// each other forever; the deadline ends it.
BOOST_AUTO_TEST_CASE(a_key_on_one_side_only_times_out) {
  coproc_test::temp_dir dir;
  {
    coproc::listener l(coproc::address::unix_socket(dir.file("a")));
    auto client = std::async(std::launch::async, [&] {
      return system_error_of([&] { coproc::client(l.address(), b("k"), 200ms); });
    });
    coproc::connection c = guarded_accept(l);  // no key: at once
    BOOST_TEST((get(client) == std::errc::timed_out));
    BOOST_TEST(c.poll(guard));
    BOOST_CHECK_THROW(c.recv_bytes(), coproc::eof_error);  // the client gave up
  }
  {
    coproc::listener l(coproc::address::unix_socket(dir.file("b")), 1, b("k"));
    l.handshake_timeout(200ms);
    BOOST_TEST(l.handshake_timeout() == 200ms);
    auto client = std::async(std::launch::async, [&] { return coproc::client(l.address()); });
    BOOST_TEST((system_error_of([&] { guarded_accept(l); }) == std::errc::timed_out));
    coproc::connection c = get(client);
    BOOST_REQUIRE(c.poll(guard));
    BOOST_TEST(text(c.recv_bytes()).starts_with("#CHALLENGE#{sha256}"));
  }
}

BOOST_AUTO_TEST_CASE(a_silent_client_does_not_hold_the_listener) {
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0), 1, b("k"));
  l.handshake_timeout(200ms);
  coproc_test::raw_client silent(l.address());
  const auto start = std::chrono::steady_clock::now();
  BOOST_TEST((system_error_of([&] { l.accept(); }) == std::errc::timed_out));
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 200ms));
  l.handshake_timeout(std::chrono::seconds(20));
  auto server = std::async(std::launch::async, [&] { echo(guarded_accept(l)); });
  coproc::connection c = coproc::client(l.address(), b("k"));
  coproc_test::check_echo(c, {4});
  c.close();
  get(server);
}

BOOST_AUTO_TEST_CASE(handshake_protocol_errors) {
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0), 1, b("k"));
  {
    // An answer over 256 bytes.
    coproc_test::raw_client peer(l.address());
    coproc_test::raw_send(peer.fd(), bytes(300, std::byte{'x'}));
    try {
      l.accept();
      BOOST_ERROR("no exception");
    } catch (const std::system_error& e) {
      BOOST_TEST((e.code() == std::errc::message_size));
      BOOST_TEST(std::string(e.what()).find("bad message length") != std::string::npos);
    }
  }
  {
    // Gone before answering.
    coproc_test::raw_client peer(l.address());
    peer.close();
    BOOST_CHECK_THROW(l.accept(), coproc::eof_error);
  }
  {
    // A client that is not a coproc or Python one: the listener's challenge, then nonsense.
    coproc_test::raw_client peer(l.address());
    coproc_test::raw_send(peer.fd(), "something bogus");
    BOOST_TEST(auth_error_of([&] { l.accept(); }).starts_with("unsupported message length"));
    const auto challenge = coproc_test::raw_recv(peer.fd());
    BOOST_REQUIRE(challenge.has_value());
    const auto verdict = coproc_test::raw_recv(peer.fd());
    BOOST_REQUIRE(verdict.has_value());
    BOOST_TEST(text(*verdict) == "#FAILURE#");
  }
}

BOOST_AUTO_TEST_CASE(misuse) {
  BOOST_CHECK_THROW(coproc::listener(coproc::address::tcp("127.0.0.1", 0), -1), std::invalid_argument);
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0));
  BOOST_CHECK_THROW(l.handshake_timeout(0s), std::invalid_argument);
  BOOST_CHECK_THROW(l.handshake_timeout(-1s), std::invalid_argument);
  BOOST_CHECK_THROW(coproc::client(l.address(), {}, 0ns), std::invalid_argument);
  coproc::listener moved(std::move(l));
  BOOST_TEST(l.closed());  // NOLINT(bugprone-use-after-move): a moved-from listener is closed
  coproc_test::expect_misuse([&] { l.accept(); }, "listener is closed");
  BOOST_TEST(!moved.closed());
  l = std::move(moved);
  BOOST_TEST(!l.closed());
}

BOOST_AUTO_TEST_CASE(connect_errors) {
  coproc_test::temp_dir dir;
  BOOST_TEST((system_error_of([&] { coproc::client(coproc::address::unix_socket(dir.file("none"))); }) ==
              std::errc::no_such_file_or_directory));
  std::uint16_t port;
  {
    coproc::listener l(coproc::address::tcp("127.0.0.1", 0));
    port = l.address().port();
  }
  BOOST_TEST((system_error_of([&] { coproc::client(coproc::address::tcp("127.0.0.1", port)); }) ==
              std::errc::connection_refused));
  BOOST_TEST(static_cast<bool>(
      system_error_of([&] { coproc::client(coproc::address::tcp("no-such-host.invalid", port)); })));
  BOOST_TEST(static_cast<bool>(
      system_error_of([&] { coproc::listener(coproc::address::tcp("no-such-host.invalid", 0)); })));
  // A path in a directory that does not exist.
  BOOST_TEST((system_error_of([&] { coproc::listener(coproc::address::unix_socket(dir.file("no/such"))); }) ==
              std::errc::no_such_file_or_directory));
}

BOOST_AUTO_TEST_SUITE_END()

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(asynchronous)

BOOST_AUTO_TEST_CASE(accept_and_client_on_an_io_context) {
  for (fam f : families)
    for (const std::optional<bytes>& key : {std::optional<bytes>(), std::optional(b("k"))}) {
      BOOST_TEST_CONTEXT(name_of(f) << (key ? ", key" : ", no key")) {
        coproc_test::temp_dir dir;
        coproc::listener l(make_address(f, dir), 1, key);
        asio::io_context io;
        error_code accept_ec = asio::error::would_block, client_ec = asio::error::would_block;
        coproc::connection accepted, connected;
        l.async_accept(asio::bind_executor(io, [&](error_code ec, coproc::connection c) {
          accept_ec = ec;
          accepted = std::move(c);
        }));
        coproc::async_client(io.get_executor(), l.address(), key,
                             [&](error_code ec, coproc::connection c) {
                               client_ec = ec;
                               connected = std::move(c);
                             });
        io.run();
        BOOST_TEST(!client_ec);
        BOOST_TEST(!accept_ec);
        connected.send_bytes(b("ping"));
        BOOST_TEST(text(accepted.recv_bytes()) == "ping");
        accepted.send_bytes(b("pong"));
        BOOST_TEST(text(connected.recv_bytes()) == "pong");
      }
    }
}

BOOST_AUTO_TEST_CASE(wrong_key_completes_with_authentication_failed) {
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0), 1, b("one"));
  asio::io_context io;
  error_code accept_ec, client_ec;
  l.async_accept(asio::bind_executor(io, [&](error_code ec, coproc::connection c) {
    accept_ec = ec;
    BOOST_TEST(c.closed());
  }));
  coproc::async_client(io, l.address(), b("two"), [&](error_code ec, coproc::connection c) {
    client_ec = ec;
    BOOST_TEST(c.closed());
  });
  io.run();
  BOOST_TEST((accept_ec == coproc::errc::authentication_failed));
  BOOST_TEST((client_ec == coproc::errc::authentication_failed));
  BOOST_TEST(std::string(accept_ec.category().name()) == "coproc");
  BOOST_TEST(accept_ec.message() == "authentication failed");
}

BOOST_AUTO_TEST_CASE(deadlines) {
  asio::io_context io;
  {
    coproc::listener l(coproc::address::tcp("127.0.0.1", 0), 1, b("k"));
    l.handshake_timeout(200ms);
    coproc_test::raw_client silent(l.address());
    error_code ec;
    l.async_accept(asio::bind_executor(io, [&](error_code e, coproc::connection) { ec = e; }));
    io.run();
    BOOST_TEST((ec == asio::error::timed_out));
  }
  io.restart();
  {
    coproc::listener l(coproc::address::tcp("127.0.0.1", 0));
    error_code ec;
    coproc::async_client(io, l.address(), b("k"), 200ms,
                         [&](error_code e, coproc::connection) { ec = e; });
    io.run();
    BOOST_TEST((ec == asio::error::timed_out));
  }
}

// The handshake waits on the reactor: a silent client leaves the executor's only thread free.
BOOST_AUTO_TEST_CASE(the_handshake_never_blocks_the_executor) {
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0), 1, b("k"));
  asio::io_context io;
  auto silent = std::make_unique<coproc_test::raw_client>(l.address());
  error_code ec;
  bool other_work_ran = false;
  const auto start = std::chrono::steady_clock::now();
  l.async_accept(asio::bind_executor(io, [&](error_code e, coproc::connection) { ec = e; }));
  asio::post(io, [&] {
    other_work_ran = true;
    // Read the challenge, then hang up: the accept ends with EOF, not at its 20 s deadline.
    BOOST_TEST(coproc_test::raw_recv(silent->fd()).has_value());
    silent.reset();
  });
  io.run();
  BOOST_TEST(other_work_ran);
  BOOST_TEST((ec == asio::error::eof));
  BOOST_TEST((std::chrono::steady_clock::now() - start < 10s));
}

BOOST_AUTO_TEST_CASE(cancellation_and_close) {
  asio::io_context io;
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0), 1, b("k"));
  {
    // Waiting for a client: every type of cancellation.
    asio::cancellation_signal signal;
    error_code ec;
    l.async_accept(asio::bind_cancellation_slot(
        signal.slot(), asio::bind_executor(io, [&](error_code e, coproc::connection) { ec = e; })));
    asio::post(io, [&] { signal.emit(asio::cancellation_type::total); });
    io.run();
    BOOST_TEST((ec == asio::error::operation_aborted));
  }
  io.restart();
  {
    // In the handshake: total cancellation is refused (dropping the client is a side effect),
    // partial is honoured.
    coproc_test::raw_client silent(l.address());
    asio::cancellation_signal signal;
    error_code ec = asio::error::would_block;
    l.async_accept(asio::bind_cancellation_slot(
        signal.slot(), asio::bind_executor(io, [&](error_code e, coproc::connection) { ec = e; })));
    asio::post(io, [&] {
      BOOST_TEST(coproc_test::raw_recv(silent.fd()).has_value());  // accepted: the challenge came
      signal.emit(asio::cancellation_type::total);
      asio::post(io, [&] {
        BOOST_TEST((ec == asio::error::would_block));
        signal.emit(asio::cancellation_type::partial);
      });
    });
    io.run();
    BOOST_TEST((ec == asio::error::operation_aborted));
  }
  io.restart();
  {
    // close(): pending accepts complete with operation_aborted, waiting or in the handshake.
    coproc_test::raw_client silent(l.address());
    error_code in_handshake, waiting;
    l.async_accept(asio::bind_executor(io, [&](error_code e, coproc::connection) { in_handshake = e; }));
    asio::post(io, [&] {
      BOOST_TEST(coproc_test::raw_recv(silent.fd()).has_value());
      l.async_accept(asio::bind_executor(io, [&](error_code e, coproc::connection) { waiting = e; }));
      l.close();
    });
    io.run();
    BOOST_TEST((in_handshake == asio::error::operation_aborted));
    BOOST_TEST((waiting == asio::error::operation_aborted));
    coproc_test::expect_misuse([&] { l.async_accept([](error_code, coproc::connection) {}); },
                               "listener is closed");
  }
}

BOOST_AUTO_TEST_CASE(destroying_the_listener_aborts_pending_accepts) {
  asio::io_context io;
  error_code ec;
  {
    coproc::listener l(coproc::address::tcp("127.0.0.1", 0));
    l.async_accept(asio::bind_executor(io, [&](error_code e, coproc::connection) { ec = e; }));
  }
  io.run();
  BOOST_TEST((ec == asio::error::operation_aborted));
}

// A client already waiting: the completion is still not invoked inside the initiating call.
BOOST_AUTO_TEST_CASE(never_completes_inside_the_initiating_call) {
  coproc_test::temp_dir dir;
  coproc::listener l(coproc::address::unix_socket(dir.file("s")));
  coproc::connection c = coproc::client(l.address());
  asio::io_context io;
  bool accepted = false, connected = false;
  l.async_accept(asio::bind_executor(io, [&](error_code ec, coproc::connection) { accepted = !ec; }));
  BOOST_TEST(!accepted);
  coproc::async_client(io, l.address(), {}, [&](error_code ec, coproc::connection) { connected = !ec; });
  BOOST_TEST(!connected);
  io.run();
  BOOST_TEST(accepted);
  BOOST_TEST(connected);
}

BOOST_AUTO_TEST_CASE(use_future_and_thread_pool) {
  for (fam f : families) {
    BOOST_TEST_CONTEXT(name_of(f)) {
      coproc_test::temp_dir dir;
      coproc::listener l(make_address(f, dir), 1, b("k"));
      asio::thread_pool pool(1);
      auto accepted = l.async_accept(asio::use_future);
      auto connected = coproc::async_client(pool.get_executor(), l.address(), b("k"), asio::use_future);
      coproc::connection a = get(accepted);
      coproc::connection c = get(connected);
      c.send_bytes(b("x"));
      BOOST_TEST(text(a.recv_bytes()) == "x");
      auto via_io_thread = coproc::async_client(asio::system_executor(), l.address(), b("k"), asio::use_future);
      coproc::connection a2 = guarded_accept(l);
      coproc::connection c2 = get(via_io_thread);
      a2.send_bytes(b("y"));
      BOOST_TEST(text(c2.recv_bytes()) == "y");
    }
  }
}

BOOST_AUTO_TEST_CASE(coroutines) {
  coproc_test::temp_dir dir;
  coproc::listener l(coproc::address::unix_socket(dir.file("s")), 1, b("k"));
  asio::io_context io;
  std::string got;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        coproc::connection a = co_await l.async_accept(asio::use_awaitable);
        got = text(co_await a.async_recv_bytes(asio::use_awaitable));
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto ex = co_await asio::this_coro::executor;
        coproc::connection c = co_await coproc::async_client(ex, l.address(), b("k"), asio::use_awaitable);
        co_await c.async_send_bytes(b("from a coroutine"), asio::use_awaitable);
      },
      asio::detached);
  io.run();
  BOOST_TEST(got == "from a coroutine");
}

BOOST_AUTO_TEST_CASE(names_resolve_without_blocking_the_executor) {
  coproc::listener l(coproc::address::tcp("127.0.0.1", 0));
  asio::io_context io;
  error_code ec = asio::error::would_block;
  coproc::connection c;
  coproc::async_client(io, coproc::address::tcp("localhost", l.address().port()), {},
                       [&](error_code e, coproc::connection conn) {
                         ec = e;
                         c = std::move(conn);
                       });
  io.run();
  BOOST_TEST(!ec);
  coproc::connection a = guarded_accept(l);
  a.send_bytes(b("resolved"));
  BOOST_TEST(text(c.recv_bytes()) == "resolved");
}

BOOST_AUTO_TEST_CASE(connect_errors) {
  coproc_test::temp_dir dir;
  asio::io_context io;
  std::uint16_t port;
  {
    coproc::listener l(coproc::address::tcp("127.0.0.1", 0));
    port = l.address().port();
  }
  error_code missing, refused, unknown;
  coproc::async_client(io, coproc::address::unix_socket(dir.file("none")), {},
                       [&](error_code e, coproc::connection) { missing = e; });
  coproc::async_client(io, coproc::address::tcp("127.0.0.1", port), {},
                       [&](error_code e, coproc::connection) { refused = e; });
  coproc::async_client(io, coproc::address::tcp("no-such-host.invalid", port), {},
                       [&](error_code e, coproc::connection) { unknown = e; });
  io.run();
  BOOST_TEST((missing == boost::system::errc::no_such_file_or_directory));
  BOOST_TEST((refused == boost::system::errc::connection_refused));
  BOOST_TEST(static_cast<bool>(unknown));
}

// A Unix listener whose backlog is full makes a non-blocking connect fail with EAGAIN:
// async_client tries again until the listener accepts.
BOOST_AUTO_TEST_CASE(full_backlog) {
  coproc_test::temp_dir dir;
  coproc::listener l(coproc::address::unix_socket(dir.file("s")), 0);
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  std::vector<std::future<coproc::connection>> clients;
  for (int i = 0; i < 4; ++i)
    clients.push_back(coproc::async_client(io, l.address(), {}, asio::use_future));
  std::vector<coproc::connection> accepted;
  for (int i = 0; i < 4; ++i) accepted.push_back(guarded_accept(l));
  for (auto& f : clients) {
    coproc::connection c = get(f);
    BOOST_TEST(!c.closed());
  }
  work.reset();
  runner.join();
}

BOOST_AUTO_TEST_SUITE_END()
