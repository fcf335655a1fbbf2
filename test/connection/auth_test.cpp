// The authentication handshake's pure parts (lib/connection/auth.hpp) and its blocking driver
// (lib/connection/handshake.hpp) against scripted peers: Python's texts, both protocol forms,
// every digest, constant lengths, the 256-byte limit, the deadline, and the CPython cases
// OtherTest.test_{deliver,answer}_challenge_auth_failure and ChallengeResponseTest.
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <string>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "connection/auth.hpp"
#include "connection/handshake.hpp"
#include "peer_support.hpp"

namespace auth = coproc::detail::auth;
using auth::handshake;
using coproc::bytes;
using coproc_test::auth_error_of;
using coproc_test::b;
using coproc_test::system_error_of;
using coproc_test::hex;
using coproc_test::text;

namespace {

bytes key20() { return bytes(20, std::byte{0x0b}); }

bytes random_of(std::size_t n, unsigned char first = 1) {
  bytes r(n);
  for (std::size_t i = 0; i < n; ++i) r[i] = static_cast<std::byte>(first + i);
  return r;
}

// Moves the messages of two handshakes between them until neither can go on.
void exchange(handshake& a, handshake& c) {
  for (int round = 0; round < 16; ++round) {
    bool moved = false;
    for (auto [from, to] : {std::pair{&a, &c}, std::pair{&c, &a}}) {
      if (from->next() == handshake::want::send && to->next() == handshake::want::receive) {
        const auto out = from->outgoing();
        const bytes m(out.begin(), out.end());
        from->sent();
        to->received(m);
        moved = true;
      }
    }
    if (!moved) return;
  }
}

struct socket_pair {
  int ours = -1, peer = -1;
  socket_pair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == -1)
      throw std::system_error(errno, std::generic_category(), "socketpair");
    ours = fds[0];
    peer = fds[1];
  }
  ~socket_pair() {
    if (ours >= 0) ::close(ours);
    if (peer >= 0) ::close(peer);
  }
};

}  // namespace

BOOST_AUTO_TEST_SUITE(pure)

BOOST_AUTO_TEST_CASE(python_repr_of_bytes) {
  BOOST_TEST(auth::python_repr(b("abc")) == "b'abc'");
  BOOST_TEST(auth::python_repr(b("")) == "b''");
  BOOST_TEST(auth::python_repr(b("a'b")) == "b\"a'b\"");
  BOOST_TEST(auth::python_repr(b("a'\"b")) == "b'a\\'\"b'");
  BOOST_TEST(auth::python_repr(b(std::string("\0\n\t\r\\\x7f\xff", 7))) ==
             "b'\\x00\\n\\t\\r\\\\\\x7f\\xff'");
}

// RFC 2202 / RFC 4231 test case 1 (key 0x0b * 20, "Hi There"), and the digests Python allows;
// expected values from Python's hmac module.
BOOST_AUTO_TEST_CASE(hmac_of_every_allowed_digest) {
  const std::array<std::pair<const char*, const char*>, 5> expected = {{
      {"md5", "5ccec34ea9656392457fa1ac27f08fbc"},
      {"sha256", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
      {"sha384", "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6"},
      {"sha3_256", "ba85192310dffa96e2a3a40e69774351140bb7185e1202cdcc917589f95e16bb"},
      {"sha3_384", "68d2dcf7fd4ddd0a2240c8a437305f61fb7334cfb5d0226e1bc27dc10a2e723a20d370b47743130e26ac7e3d532886bd"},
  }};
  for (auto [name, digest] : expected) {
    BOOST_TEST_CONTEXT(name) {
      const auto mac = auth::hmac(name, key20(), b("Hi There"));
      BOOST_REQUIRE(mac.has_value());
      BOOST_TEST(hex(*mac) == digest);
    }
  }
  BOOST_TEST(!auth::hmac("sha1", key20(), b("Hi There")).has_value());
  BOOST_TEST(!auth::hmac("", key20(), b("Hi There")).has_value());
}

BOOST_AUTO_TEST_CASE(hmac_with_an_empty_key_and_data) {
  BOOST_TEST(hex(*auth::hmac("sha256", {}, b("is-twenty-bytes-long"))) ==
             "3e8c83faaab54f3e25d0acb3a697bfaad99cbdc15d2ef7099e4b08b05424b7e6");
  BOOST_TEST(hex(*auth::hmac("md5", {}, {})) == "74e6f7298a9c2d168935f58c001bad88");
}

BOOST_AUTO_TEST_CASE(challenges) {
  const bytes r = random_of(40);
  const bytes c = auth::build_challenge(r);
  BOOST_TEST(text(std::span(c).first(19)) == "#CHALLENGE#{sha256}");
  BOOST_TEST(c.size() == 11u + 8u + 40u);
  BOOST_TEST((bytes(c.end() - 40, c.end()) == r));
  const bytes legacy = auth::build_challenge(random_of(20), "");
  BOOST_TEST(legacy.size() == 31u);
  BOOST_TEST(text(std::span(legacy).first(11)) == "#CHALLENGE#");

  const bytes m1 = auth::make_challenge(), m2 = auth::make_challenge();
  BOOST_TEST(m1.size() == 59u);
  BOOST_TEST(text(std::span(m1).first(19)) == "#CHALLENGE#{sha256}");
  BOOST_TEST((m1 != m2));
}

// CPython's ChallengeResponseTest.test_challengeresponse, and the digests it leaves out.
BOOST_AUTO_TEST_CASE(challenge_response_round_trip) {
  const bytes key = b("supadupasecretkey");
  for (std::string algo : {"", "md5", "sha256", "sha384", "sha3_256", "sha3_384"}) {
    BOOST_TEST_CONTEXT("algo='" << algo << "'") {
      const std::string prefix = algo.empty() ? "" : "{" + algo + "}";
      const bytes msg = b(prefix + "is-twenty-bytes-long");
      const bytes response = auth::create_response(key, msg);
      BOOST_TEST(text(std::span(response).first(prefix.size())) == prefix);
      BOOST_CHECK_NO_THROW(auth::verify_response(key, msg, response));
      // The MAC covers the whole message, prefix included.
      const auto mac = auth::hmac(algo.empty() ? "md5" : algo, key, msg);
      BOOST_TEST(hex(std::span(response).subspan(prefix.size())) == hex(*mac));
    }
  }
}

BOOST_AUTO_TEST_CASE(legacy_forms) {
  const bytes key = b("key");
  // A 3.11 deliverer's 20 random bytes get a raw HMAC-MD5 of 16 bytes.
  const bytes twenty = random_of(20);
  const bytes raw = auth::create_response(key, twenty);
  BOOST_TEST(raw.size() == 16u);
  BOOST_TEST(hex(raw) == hex(*auth::hmac("md5", key, twenty)));
  // A 3.11 answerer's raw HMAC-MD5 over our whole "{sha256}..." message is accepted.
  const bytes message = b("{sha256}" + std::string(40, 'x'));
  BOOST_CHECK_NO_THROW(auth::verify_response(key, message, *auth::hmac("md5", key, message)));
  // A client may answer a prefixed challenge with another allowed digest (Python's verifier
  // takes the digest from the answer): the prefix is covered by the MAC, so no downgrade.
  bytes other = b("{sha384}");
  const auto mac384 = auth::hmac("sha384", key, message);
  other.insert(other.end(), mac384->begin(), mac384->end());
  BOOST_CHECK_NO_THROW(auth::verify_response(key, message, other));
}

BOOST_AUTO_TEST_CASE(answer_errors_in_python_words) {
  const bytes key = b("abc");
  BOOST_TEST(auth_error_of([&] { auth::answer(key, b("something bogus")); }) ==
             "Protocol error, expected challenge: message=b'something bogus'");
  BOOST_TEST(auth_error_of([&] { auth::answer(key, b("#CHALLENGE#")); }) ==
             "challenge too short: 0 bytes");
  BOOST_TEST(auth_error_of([&] { auth::answer(key, b("#CHALLENGE#0123456789abcdefghi")); }) ==
             "challenge too short: 19 bytes");
  BOOST_TEST(auth_error_of([&] { auth::answer(key, b("#CHALLENGE#{sha1}0123456789abcdefghij")); }) ==
             "unsupported message length, missing digest prefix, or unsupported digest: "
             "message=b'{sha1}0123456789abcdefghij'");
  // The closing brace must come within the first ten bytes.
  BOOST_TEST(auth_error_of([&] { auth::answer(key, b("#CHALLENGE#{sha256    }0123456789abcdefghij")); })
                 .starts_with("unsupported message length"));
  BOOST_TEST(auth_error_of([&] { auth::answer(key, b("#CHALLENGE#no prefix at all, 30 bytes")); })
                 .starts_with("unsupported message length"));
  // Exactly 20 bytes: the legacy form, whatever they contain.
  BOOST_CHECK_NO_THROW(auth::answer(key, b("#CHALLENGE#{sha256}0123456789ab")));
}

BOOST_AUTO_TEST_CASE(verify_errors_in_python_words) {
  const bytes key = b("abc");
  const bytes message = b("{sha256}" + std::string(40, 'm'));
  BOOST_TEST(auth_error_of([&] { auth::verify_response(key, message, b("something bogus")); }) ==
             "unsupported message length, missing digest prefix, or unsupported digest: "
             "message=b'something bogus'");
  BOOST_TEST(auth_error_of([&] { auth::verify_response(key, message, bytes(20)); }) ==
             "expected 'md5' of length 16 got 20");
  BOOST_TEST(auth_error_of([&] { auth::verify_response(key, message, b("{sha256}" + std::string(31, 'x'))); }) ==
             "expected 'sha256' of length 32 got 31");
  BOOST_TEST(auth_error_of([&] { auth::verify_response(key, message, b("{sha256}" + std::string(32, 'x'))); }) ==
             "digest received was wrong");
  BOOST_TEST(auth_error_of([&] { auth::verify_response(key, message, bytes(16)); }) ==
             "digest received was wrong");
  // One bit off.
  bytes good = auth::create_response(key, message);
  good.back() ^= std::byte{1};
  BOOST_TEST(auth_error_of([&] { auth::verify_response(key, message, good); }) ==
             "digest received was wrong");
  BOOST_TEST(auth_error_of([&] { auth::check_welcome(b("#FAILURE#")); }) == "digest sent was rejected");
  BOOST_TEST(auth_error_of([&] { auth::check_welcome(b("#WELCOME#!")); }) == "digest sent was rejected");
  BOOST_CHECK_NO_THROW(auth::check_welcome(b("#WELCOME#")));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(state_machine)

BOOST_AUTO_TEST_CASE(listener_and_client_agree) {
  for (const bytes& key : {b("secret"), bytes()}) {
    handshake l(handshake::role::listener, key), c(handshake::role::client, key);
    BOOST_TEST((l.next() == handshake::want::send));
    BOOST_TEST((c.next() == handshake::want::receive));
    exchange(l, c);
    BOOST_TEST((l.next() == handshake::want::done));
    BOOST_TEST((c.next() == handshake::want::done));
  }
}

BOOST_AUTO_TEST_CASE(wrong_key_fails_on_both_sides) {
  handshake l(handshake::role::listener, b("one")), c(handshake::role::client, b("two"));
  exchange(l, c);
  BOOST_TEST((l.next() == handshake::want::failed));
  BOOST_TEST(l.error() == "digest received was wrong");
  BOOST_TEST((c.next() == handshake::want::failed));
  BOOST_TEST(c.error() == "digest sent was rejected");
}

BOOST_AUTO_TEST_CASE(one_way_roles_and_the_legacy_challenge) {
  handshake d(handshake::role::deliver, b("k"), auth::build_challenge(random_of(20), ""));
  handshake a(handshake::role::answer, b("k"));
  exchange(d, a);
  BOOST_TEST((d.next() == handshake::want::done));
  BOOST_TEST((a.next() == handshake::want::done));
}

BOOST_AUTO_TEST_CASE(failure_goes_out_before_the_error) {
  handshake d(handshake::role::deliver, b("k"));
  d.sent();  // the challenge
  d.received(b("something bogus"));
  BOOST_REQUIRE((d.next() == handshake::want::send));
  BOOST_TEST(text(d.outgoing()) == "#FAILURE#");
  d.sent();
  BOOST_TEST((d.next() == handshake::want::failed));
  BOOST_TEST(d.error().starts_with("unsupported message length"));
}

BOOST_AUTO_TEST_CASE(misuse_of_the_state_machine) {
  handshake d(handshake::role::deliver, b("k"));
  BOOST_CHECK_THROW(d.received(b("x")), std::logic_error);
  handshake a(handshake::role::answer, b("k"));
  BOOST_CHECK_THROW(a.sent(), std::logic_error);
}

BOOST_AUTO_TEST_SUITE_END()

// The blocking driver over a socket pair, the peer scripted (its messages written ahead).
BOOST_AUTO_TEST_SUITE(blocking_driver)

namespace {
auto deadline(std::chrono::milliseconds d = std::chrono::milliseconds(20'000)) {
  return coproc::detail::deadline_after(d);
}
}  // namespace

// OtherTest.test_deliver_challenge_auth_failure: the peer answers 'something bogus'.
BOOST_AUTO_TEST_CASE(deliver_challenge_auth_failure) {
  socket_pair s;
  coproc_test::raw_send(s.peer, "something bogus");
  handshake hs(handshake::role::deliver, b("abc"));
  BOOST_CHECK_THROW(coproc::detail::run_handshake(s.ours, hs, deadline()),
                    coproc::authentication_error);
  const auto challenge = coproc_test::raw_recv(s.peer);
  BOOST_REQUIRE(challenge.has_value());
  BOOST_TEST(text(std::span(*challenge).first(19)) == "#CHALLENGE#{sha256}");
  const auto verdict = coproc_test::raw_recv(s.peer);
  BOOST_REQUIRE(verdict.has_value());
  BOOST_TEST(text(*verdict) == "#FAILURE#");
}

// OtherTest.test_answer_challenge_auth_failure: "#CHALLENGE#" alone, then 'something bogus'.
BOOST_AUTO_TEST_CASE(answer_challenge_auth_failure) {
  socket_pair s;
  coproc_test::raw_send(s.peer, "#CHALLENGE#");
  coproc_test::raw_send(s.peer, "something bogus");
  handshake hs(handshake::role::answer, b("abc"));
  try {
    coproc::detail::run_handshake(s.ours, hs, deadline());
    BOOST_ERROR("no authentication_error");
  } catch (const coproc::authentication_error& e) {
    BOOST_TEST(std::string(e.what()) == "challenge too short: 0 bytes");
  }
}

BOOST_AUTO_TEST_CASE(answer_to_a_good_challenge_then_rejected) {
  socket_pair s;
  const bytes challenge = auth::build_challenge(random_of(40), "sha3_384");
  coproc_test::raw_send(s.peer, challenge);
  coproc_test::raw_send(s.peer, "#FAILURE#");
  handshake hs(handshake::role::answer, b("abc"));
  try {
    coproc::detail::run_handshake(s.ours, hs, deadline());
    BOOST_ERROR("no authentication_error");
  } catch (const coproc::authentication_error& e) {
    BOOST_TEST(std::string(e.what()) == "digest sent was rejected");
  }
  const auto response = coproc_test::raw_recv(s.peer);
  BOOST_REQUIRE(response.has_value());
  const auto mac = auth::hmac("sha3_384", b("abc"), std::span(challenge).subspan(11));
  BOOST_TEST(text(std::span(*response).first(10)) == "{sha3_384}");
  BOOST_TEST(hex(std::span(*response).subspan(10)) == hex(*mac));
}

BOOST_AUTO_TEST_CASE(a_message_over_256_bytes_is_a_bad_message_length) {
  {
    socket_pair s;
    coproc_test::raw_send(s.peer, bytes(257, std::byte{'x'}));
    handshake hs(handshake::role::answer, b("abc"));
    try {
      coproc::detail::run_handshake(s.ours, hs, deadline());
      BOOST_ERROR("no exception");
    } catch (const std::system_error& e) {
      BOOST_TEST((e.code() == std::errc::message_size));
      BOOST_TEST(std::string(e.what()).find("bad message length") != std::string::npos);
    }
  }
  {
    // 256 bytes are read (and are not a challenge).
    socket_pair s;
    coproc_test::raw_send(s.peer, bytes(256, std::byte{'x'}));
    handshake hs(handshake::role::answer, b("abc"));
    BOOST_CHECK_THROW(coproc::detail::run_handshake(s.ours, hs, deadline()),
                      coproc::authentication_error);
  }
}

BOOST_AUTO_TEST_CASE(a_silent_peer_times_out) {
  socket_pair s;
  handshake hs(handshake::role::answer, b("abc"));
  const auto start = std::chrono::steady_clock::now();
  try {
    coproc::detail::run_handshake(s.ours, hs, deadline(std::chrono::milliseconds(200)));
    BOOST_ERROR("no exception");
  } catch (const std::system_error& e) {
    BOOST_TEST((e.code() == std::errc::timed_out));
  }
  BOOST_TEST((std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(200)));
}

BOOST_AUTO_TEST_CASE(a_peer_that_hangs_up) {
  {
    socket_pair s;
    ::close(std::exchange(s.peer, -1));
    handshake hs(handshake::role::answer, b("abc"));
    BOOST_CHECK_THROW(coproc::detail::run_handshake(s.ours, hs, deadline()), coproc::eof_error);
  }
  {
    socket_pair s;
    const unsigned char partial[] = {0, 0, 0, 10, 'a', 'b'};
    BOOST_REQUIRE(coproc_test::write_all(s.peer, partial, sizeof partial));
    ::close(std::exchange(s.peer, -1));
    handshake hs(handshake::role::answer, b("abc"));
    try {
      coproc::detail::run_handshake(s.ours, hs, deadline());
      BOOST_ERROR("no exception");
    } catch (const std::system_error& e) {
      BOOST_TEST(std::string(e.what()).find("got end of file during message") != std::string::npos);
    }
  }
}

// Whatever the peer sends after the handshake stays in the socket for the connection.
BOOST_AUTO_TEST_CASE(nothing_is_read_past_the_handshake) {
  socket_pair s;
  std::thread peer([&] {
    handshake hs(handshake::role::listener, b("k"));
    coproc::detail::run_handshake(s.peer, hs, deadline());
    coproc_test::raw_send(s.peer, "first message");
  });
  handshake hs(handshake::role::client, b("k"));
  coproc::detail::run_handshake(s.ours, hs, deadline());
  peer.join();
  const auto next = coproc_test::raw_recv(s.ours);
  BOOST_REQUIRE(next.has_value());
  BOOST_TEST(text(*next) == "first message");
}

BOOST_AUTO_TEST_SUITE_END()
