// coproc against real Python: multiprocessing.connection's Listener and Client on every
// interpreter this machine has (python3, Debian's /usr/bin/python3, pyenv's 3.6..3.13), both
// ways (a Python Listener with a coproc client, a coproc listener with a Python Client), on
// Unix paths, abstract names and TCP. Messages of 0, 1, 16 KiB, 16 KiB + 1 and 16 MiB bytes
// come back intact; typed messages go to Python's json and back; wrong keys and keys on one
// side only are refused with Python's words on both ends; the handshake's form is checked
// message by message (the peers' --trace line): 3.11's unprefixed HMAC-MD5 against a 3.11
// interpreter, the {sha256} form against every 3.12+ one, and the other digests and the
// legacy challenge through modern_peer.py.
//
// The peers print a line at every step ("address", "handshake", "connected", "json", "done");
// the test waits for those lines, never for time. The log (stdout) names every interpreter
// used and every one skipped, with the reason.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <boost/test/unit_test.hpp>

#include <coproc/coproc.hpp>

#include "peer_support.hpp"

using namespace std::chrono_literals;
using coproc::bytes;
using coproc_test::auth_error_of;
using coproc_test::b;
using coproc_test::system_error_of;
using coproc_test::guard;
using coproc_test::spawned;
using coproc_test::text;

// ---------------------------------------------------------------------------------------
// Typed messages: what coproc sends Python, and what mp_peer.py --json sends first.

namespace interop {

struct reading {
  std::string sensor;
  double value = 0;
  std::optional<int> channel;
  bool operator==(const reading&) const = default;
};
BOOST_DESCRIBE_STRUCT(reading, (), (sensor, value, channel))

struct batch {
  std::string name;
  std::int64_t count = 0;
  std::uint64_t big = 0;
  std::vector<double> values;
  std::map<std::string, std::vector<int>> groups;
  std::vector<reading> readings;
  std::optional<std::string> missing;
  std::tuple<int, std::string, bool> triple;
  bool flag = false;
  bool operator==(const batch&) const = default;
};
BOOST_DESCRIBE_STRUCT(batch, (), (name, count, big, values, groups, readings, missing, triple, flag))

// mp_peer.py's DOCUMENT.
struct python_document {
  std::string name;
  std::vector<int> version;
  double ratio = 0;
  std::vector<double> values;
  std::map<std::string, std::vector<int>> groups;
  std::string text;
  std::optional<std::string> missing;
  bool flag = false;
  std::uint64_t big = 0;
  std::int64_t count = 0;
};
BOOST_DESCRIBE_STRUCT(python_document, (),
                      (name, version, ratio, values, groups, text, missing, flag, big, count))

}  // namespace interop

namespace {

// ---------------------------------------------------------------------------------------
// Interpreters.

struct python {
  std::string exe;
  std::string version;  // "3.11.7"
  int minor = 0;
  int patch = 0;
  bool modern() const { return minor >= 12; }
  std::string describe() const { return version + " (" + exe + ")"; }
};

void note(const std::string& line) { std::cout << line << std::endl; }

bool operator<(const python& a, const python& b2) {
  return std::tie(a.minor, a.patch) < std::tie(b2.minor, b2.patch);
}

python make_python(const std::string& exe, const std::string& version) {
  python p{exe, version};
  int major = 0;
  std::sscanf(version.c_str(), "%d.%d.%d", &major, &p.minor, &p.patch);
  return p;
}

// True if mp_peer.py runs on `exe` (it prints its version line and exits 0).
bool runs_mp_peer(const std::string& exe) {
  try {
    spawned p(exe, {coproc_test::peer_script("mp_peer.py"), "probe"});
    const std::string l = p.line(30s);
    return p.wait(30s) == 0 && l.rfind("version ", 0) == 0;
  } catch (const std::exception&) {
    return false;
  }
}

struct census {
  std::vector<python> usable;        // one per version, oldest first
  std::vector<std::string> skipped;  // "what: why"
};

// Every Python 3.6+ that runs mp_peer.py: interpreters() (python3 first, then 3.12+), Debian's
// /usr/bin/python3, and every ~/.pyenv/versions/*/bin/python3; one per version.
const census& pythons() {
  static const census found = [] {
    census c;
    auto consider = [&](const std::string& exe, std::optional<std::string> version) {
      if (!version) version = coproc_test::python_version(exe);
      if (!version) {
        if (::access(exe.c_str(), X_OK) == 0) c.skipped.push_back(exe + ": does not run `-I -c`");
        return;
      }
      for (const auto& p : c.usable)
        if (p.version == *version) return;
      const python p = make_python(exe, *version);
      if (coproc_test::major_minor(*version).first != 3 || p.minor < 6) {
        c.skipped.push_back(p.describe() + ": older than 3.6");
        return;
      }
      if (!runs_mp_peer(exe)) {
        c.skipped.push_back(p.describe() + ": mp_peer.py cannot run there");
        return;
      }
      c.usable.push_back(p);
    };
    for (const auto& i : coproc_test::interpreters()) consider(i.path, i.version);
    consider("/usr/bin/python3", std::nullopt);
    if (const char* home = std::getenv("HOME")) {
      const std::string root = std::string(home) + "/.pyenv/versions";
      std::vector<std::string> versions;
      if (DIR* d = ::opendir(root.c_str())) {
        while (dirent* e = ::readdir(d))
          if (e->d_name[0] != '.') versions.push_back(e->d_name);
        ::closedir(d);
      }
      std::sort(versions.begin(), versions.end());
      for (const auto& v : versions) {
        const std::string exe = root + "/" + v + "/bin/python3";
        if (::access(exe.c_str(), X_OK) == 0)
          consider(exe, std::nullopt);
        else
          c.skipped.push_back(root + "/" + v + ": no bin/python3 (not a Python 3)");
      }
    }
    std::sort(c.usable.begin(), c.usable.end(),
              [](const python& a, const python& b2) { return a < b2; });
    return c;
  }();
  return found;
}

// base_python() as a `python`; the test fails (it is not skipped) without one: Debian's
// python3 is a declared dependency (tools/setup.sh).
python base() {
  const auto* i = coproc_test::base_python();
  BOOST_REQUIRE_MESSAGE(i != nullptr && i->path == "python3",
                        "python3 not found on PATH: install it (tools/setup.sh)");
  return make_python(i->path, i->version);
}

python newest() {
  BOOST_REQUIRE(!pythons().usable.empty());
  return pythons().usable.back();
}

// The base interpreter and the newest one (once if they are the same version).
std::vector<python> base_and_newest() {
  std::vector<python> out{base()};
  if (newest().version != out.front().version) out.push_back(newest());
  return out;
}

// ---------------------------------------------------------------------------------------
// Addresses.

enum class fam { path, abstract, tcp };
const fam families[] = {fam::path, fam::abstract, fam::tcp};
const char* name_of(fam f) { return f == fam::path ? "unix path" : f == fam::abstract ? "abstract" : "tcp"; }

coproc::address coproc_address(fam f, const coproc_test::temp_dir& dir) {
  switch (f) {
    case fam::path:
      return coproc::address::unix_socket(dir.file("c.sock"));
    case fam::abstract:
      return coproc::address::unix_socket(coproc_test::abstract_name());
    case fam::tcp:
      break;
  }
  return coproc::address::tcp("127.0.0.1", 0);
}

// What a Python listener is told to listen on: FAMILY and ADDRESS arguments.
std::pair<std::string, std::string> python_listen_address(fam f, const coproc_test::temp_dir& dir) {
  switch (f) {
    case fam::path:
      return {"unix", dir.file("py.sock")};
    case fam::abstract:
      return {"abstract", coproc_test::abstract_name().substr(1)};
    case fam::tcp:
      break;
  }
  return {"tcp", "127.0.0.1:0"};
}

// ---------------------------------------------------------------------------------------
// Peers.

using peer = std::unique_ptr<spawned>;

std::string key_arg(const std::optional<bytes>& key) { return coproc_test::key_argument(key); }

peer start(const std::string& exe, const char* script, const std::string& role,
           const std::string& family, const std::string& address, const std::optional<bytes>& key,
           std::vector<std::string> extra = {"--trace"}) {
  std::vector<std::string> args{coproc_test::peer_script(script), role, family, address,
                                key_arg(key)};
  args.insert(args.end(), extra.begin(), extra.end());
  auto p = std::make_unique<spawned>(exe, args);
  p->expect("version ");
  return p;
}

// A Python listener; returns it with the address it reported.
std::pair<peer, coproc::address> python_listener(const std::string& exe, const char* script, fam f,
                                                 const coproc_test::temp_dir& dir,
                                                 const std::optional<bytes>& key,
                                                 std::vector<std::string> extra = {"--trace"}) {
  const auto [family, address] = python_listen_address(f, dir);
  peer p = start(exe, script, "listen", family, address, key, std::move(extra));
  const std::string shown = p->expect("address ");
  return {std::move(p), coproc_test::parse_peer_address(family, shown)};
}

peer python_client(const std::string& exe, const char* script, const coproc::address& where,
                   const std::optional<bytes>& key, std::vector<std::string> extra = {"--trace"}) {
  const auto [family, address] = coproc_test::peer_address(where);
  return start(exe, script, "connect", family, address, key, std::move(extra));
}

// accept() once a client is there (a hang guard: a client that never comes fails the test).
coproc::connection guarded_accept(coproc::listener& l) {
  BOOST_REQUIRE_MESSAGE(coproc_test::wait_readable(l.fileno(), guard), "no client came");
  return l.accept();
}

// What is left of a peer's output, its lines joined by " | ", up to its end.
std::string rest(spawned& p) {
  std::string out;
  for (std::string l = p.line(); !l.empty(); l = p.line()) out += (out.empty() ? "" : " | ") + l;
  return out;
}

// ---------------------------------------------------------------------------------------
// The handshake as the Python peer saw it (the --trace line), message by message.

std::size_t mac_length(const std::string& digest) {
  if (digest == "md5") return 16;
  if (digest == "sha384" || digest == "sha3_384") return 48;
  return 32;  // sha256, sha3_256
}

// One challenge and its answer: "challenge:sha256:40" and "answer:sha256:32", or 3.11's
// "challenge:raw:20" and "answer:raw:16". `digest` "legacy" names the unprefixed form.
std::string challenge_of(const std::string& digest) {
  return digest == "legacy" ? "challenge:raw:20" : "challenge:" + digest + ":40";
}
std::string answer_of(const std::string& digest) {
  return digest == "legacy" || digest == "raw" ? "answer:raw:16"
                                               : "answer:" + digest + ":" + std::to_string(mac_length(digest));
}

// The Python peer's trace. It delivers a challenge of `python_challenge` (which coproc answers
// with the same digest, or raw MD5 for "legacy"), and answers coproc's {sha256} challenge with
// `python_answer` ("raw": 3.11's unprefixed HMAC-MD5). A listener delivers first.
std::string expected_trace(bool python_listens, const std::string& python_challenge,
                           const std::string& python_answer) {
  const std::string delivers = ">" + challenge_of(python_challenge) + " <" +
                               answer_of(python_challenge) + " >welcome";
  const std::string answers = "<" + challenge_of("sha256") + " >" + answer_of(python_answer) +
                              " <welcome";
  return python_listens ? delivers + " " + answers : answers + " " + delivers;
}

// A real interpreter's own handshake: 3.12+ speaks {sha256} both ways; 3.11 and older deliver
// 20 unprefixed bytes and answer coproc's {sha256} challenge with raw HMAC-MD5.
std::string expected_trace(bool python_listens, const python& p) {
  return p.modern() ? expected_trace(python_listens, "sha256", "sha256")
                    : expected_trace(python_listens, "legacy", "raw");
}

// ---------------------------------------------------------------------------------------
// The two directions with echoed messages.

const bytes the_key = b("interop \x01\x02 key");

// A Python Listener (`script` on `exe`) and a coproc client, both with the_key.
void python_listens_echo(const std::string& exe, const char* script, fam f,
                         std::initializer_list<std::size_t> sizes, const std::string& trace,
                         std::vector<std::string> extra = {"--trace"}) {
  coproc_test::temp_dir dir;
  auto [p, where] = python_listener(exe, script, f, dir, the_key, std::move(extra));
  coproc::connection c = coproc::client(where, the_key);
  BOOST_TEST(p->expect("handshake ") == trace);
  p->expect("connected");
  coproc_test::check_echo(c, sizes);
  c.close();
  p->expect("done");
  BOOST_TEST(p->wait() == 0);
}

// A coproc listener and a Python Client (`script` on `exe`), both with the_key.
void coproc_listens_echo(const std::string& exe, const char* script, fam f,
                         std::initializer_list<std::size_t> sizes, const std::string& trace,
                         std::vector<std::string> extra = {"--trace"}) {
  coproc_test::temp_dir dir;
  coproc::listener l(coproc_address(f, dir), 1, the_key);
  peer p = python_client(exe, script, l.address(), the_key, std::move(extra));
  coproc::connection c = guarded_accept(l);
  BOOST_TEST(p->expect("handshake ") == trace);
  p->expect("connected");
  coproc_test::check_echo(c, sizes, 1);
  c.close();
  p->expect("done");
  BOOST_TEST(p->wait() == 0);
}

void both_ways(const python& py, std::initializer_list<std::size_t> sizes) {
  for (fam f : families) {
    BOOST_TEST_CONTEXT("Python " << py.describe() << ", " << name_of(f)) {
      python_listens_echo(py.exe, "mp_peer.py", f, sizes, expected_trace(true, py));
      coproc_listens_echo(py.exe, "mp_peer.py", f, sizes, expected_trace(false, py));
    }
  }
}

const std::initializer_list<std::size_t> small_sizes = {0, 1, 16385};

}  // namespace

// ---------------------------------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(interop)

// Names every interpreter found, used and skipped (the log of a run says what it covered).
BOOST_AUTO_TEST_CASE(interpreters_found) {
  const python b0 = base();
  note("base python (python3): " + b0.describe());
  for (const auto& p : pythons().usable)
    note("usable: " + p.describe() + (p.modern() ? "  [3.12+ handshake]" : "  [3.11 handshake]"));
  for (const auto& s : pythons().skipped) note("skipped: " + s);
  std::string modern;
  for (const auto& i : coproc_test::interpreters())
    if (i.modern) modern += " " + i.version + " (" + i.path + ")";
  note("real 3.12+ interpreters (interpreters()):" + (modern.empty() ? std::string(" none: modern_peer.py stands in") : modern));
  note("newest: " + newest().describe());
  BOOST_TEST(!pythons().usable.empty());
}

// A Python Listener(authkey=...) and coproc::client, every family, every size (16 MiB too),
// on python3 and on the newest interpreter.
BOOST_AUTO_TEST_CASE(python_listener_coproc_client) {
  for (const auto& py : base_and_newest()) {
    note("python_listener_coproc_client: " + py.describe());
    for (fam f : families)
      BOOST_TEST_CONTEXT("Python " << py.describe() << ", " << name_of(f)) {
        python_listens_echo(py.exe, "mp_peer.py", f, coproc_test::all_sizes, expected_trace(true, py));
      }
  }
}

// coproc::listener with an authkey and a Python Client(authkey=...), the same matrix.
BOOST_AUTO_TEST_CASE(coproc_listener_python_client) {
  for (const auto& py : base_and_newest()) {
    note("coproc_listener_python_client: " + py.describe());
    for (fam f : families)
      BOOST_TEST_CONTEXT("Python " << py.describe() << ", " << name_of(f)) {
        coproc_listens_echo(py.exe, "mp_peer.py", f, coproc_test::all_sizes, expected_trace(false, py));
      }
  }
}

// Every other interpreter found (3.6 .. 3.13 where present), both ways, every family, a
// smaller set of sizes (the frame boundary included).
BOOST_AUTO_TEST_CASE(every_interpreter_both_ways) {
  const auto full = base_and_newest();
  for (const auto& py : pythons().usable) {
    if (std::any_of(full.begin(), full.end(), [&](const python& f) { return f.version == py.version; })) {
      note("every_interpreter_both_ways: " + py.describe() + " has the full matrix (above)");
      continue;
    }
    note("every_interpreter_both_ways: " + py.describe());
    both_ways(py, small_sizes);
  }
}

// The 3.11 handshake against Debian's python3 (3.11): it delivers 20 unprefixed random bytes,
// coproc answers with raw HMAC-MD5; it answers coproc's {sha256} challenge with raw HMAC-MD5,
// which coproc's verifier accepts. Checked message by message on both sides.
BOOST_AUTO_TEST_CASE(handshake_3_11_against_python3) {
  std::vector<python> legacy;
  if (!base().modern()) legacy.push_back(base());
  for (const auto& p : pythons().usable)
    if (p.exe == "/usr/bin/python3" && !p.modern() && p.version != base().version)
      legacy.push_back(p);
  if (legacy.empty()) {
    // Not this machine's case (python3 is 3.11 on Debian bookworm); still test the form.
    note("handshake_3_11: no 3.11-or-older python3; modern_peer.py --digest legacy stands in");
    for (fam f : families)
      BOOST_TEST_CONTEXT(name_of(f)) {
        python_listens_echo(base().exe, "modern_peer.py", f, {1}, expected_trace(true, "legacy", "sha256"),
                            {"--trace", "--digest", "legacy"});
        coproc_listens_echo(base().exe, "modern_peer.py", f, {1}, expected_trace(false, "legacy", "sha256"),
                            {"--trace", "--digest", "legacy"});
      }
    return;
  }
  for (const auto& py : legacy) {
    note("handshake_3_11: " + py.describe());
    for (fam f : families)
      BOOST_TEST_CONTEXT("Python " << py.describe() << ", " << name_of(f)) {
        python_listens_echo(py.exe, "mp_peer.py", f, {16384}, expected_trace(true, "legacy", "raw"));
        coproc_listens_echo(py.exe, "mp_peer.py", f, {16384}, expected_trace(false, "legacy", "raw"));
      }
  }
}

// The 3.12+ handshake ({sha256} challenges, {sha256} answers, both ways) against every real
// interpreter >= 3.12 that interpreters() finds; modern_peer.py on python3 when there is none.
BOOST_AUTO_TEST_CASE(handshake_3_12_against_every_modern_interpreter) {
  std::vector<python> modern;
  for (const auto& i : coproc_test::interpreters())
    if (i.modern) modern.push_back(make_python(i.path, i.version));
  const std::string both = expected_trace(true, "sha256", "sha256");
  const std::string both_client = expected_trace(false, "sha256", "sha256");
  if (modern.empty()) {
    note("handshake_3_12: no real 3.12+ interpreter here; modern_peer.py on " + base().describe());
    for (fam f : families)
      BOOST_TEST_CONTEXT(name_of(f)) {
        python_listens_echo(base().exe, "modern_peer.py", f, {16385}, both);
        coproc_listens_echo(base().exe, "modern_peer.py", f, {16385}, both_client);
      }
    return;
  }
  for (const auto& py : modern) {
    note("handshake_3_12: " + py.describe());
    for (fam f : families)
      BOOST_TEST_CONTEXT("Python " << py.describe() << ", " << name_of(f)) {
        python_listens_echo(py.exe, "mp_peer.py", f, {16385}, both);
        coproc_listens_echo(py.exe, "mp_peer.py", f, {16385}, both_client);
      }
  }
}

// ---------------------------------------------------------------------------------------
// Typed messages.

namespace {

interop::batch sample_batch() {
  interop::batch v;
  v.name = "h\u00e9llo \u2603 \U0001F600 \"q\" \\ \n\t";
  v.count = std::numeric_limits<std::int64_t>::min();
  v.big = std::numeric_limits<std::uint64_t>::max();
  v.values = {0.1, -0.0, 1e300, 5e-324, 1.0 / 3, 2.0};
  v.groups = {{"a", {1, 2}}, {"b", {}}};
  v.readings = {{"t1", 21.5, 3}, {"t2", -1e-10, std::nullopt}};
  v.triple = {7, "seven", false};
  v.flag = true;
  return v;
}

// What Python's json.dumps(json.loads(<the batch>), sort_keys=True) prints.
const std::string batch_in_python =
    R"({"big": 18446744073709551615, "count": -9223372036854775808, "flag": true, )"
    R"("groups": {"a": [1, 2], "b": []}, "missing": null, )"
    R"("name": "h\u00e9llo \u2603 \ud83d\ude00 \"q\" \\ \n\t", )"
    R"("readings": [{"channel": 3, "sensor": "t1", "value": 21.5}, )"
    R"({"channel": null, "sensor": "t2", "value": -1e-10}], )"
    R"("triple": [7, "seven", false], )"
    R"("values": [0.1, -0.0, 1e+300, 5e-324, 0.3333333333333333, 2.0]})";

// A --json peer on `c`: its DOCUMENT first (read with recv<T>), then each value coproc sends
// is printed by Python (json.loads, then sorted json.dumps) and sent back in Python's text.
void exchange_typed(coproc::connection& c, spawned& p, const std::string& version) {
  BOOST_REQUIRE(c.poll(guard));
  const auto doc = c.recv<interop::python_document>();
  BOOST_TEST(doc.name == "python");
  int major = 0, minor = 0, patch = 0;
  std::sscanf(version.c_str(), "%d.%d.%d", &major, &minor, &patch);
  BOOST_TEST((doc.version == std::vector<int>{major, minor, patch}));
  BOOST_TEST(doc.ratio == 0.1);
  BOOST_TEST((doc.values == std::vector<double>{1.5, -2.0, 1e300, 5e-324, 1.0 / 3}));
  BOOST_TEST((doc.groups == std::map<std::string, std::vector<int>>{{"a", {1, 2}}, {"b", {}}}));
  BOOST_TEST(doc.text == "h\u00e9llo \u2603 \U0001F600 \"q\" \\ \n");
  BOOST_TEST(!doc.missing.has_value());
  BOOST_TEST(doc.flag);
  BOOST_TEST(doc.big == std::numeric_limits<std::uint64_t>::max());
  BOOST_TEST(doc.count == std::numeric_limits<std::int64_t>::min());

  const interop::batch v = sample_batch();
  c.send(v);
  BOOST_TEST(p.expect("json ") == batch_in_python);
  BOOST_REQUIRE(c.poll(guard));
  BOOST_TEST((c.recv<interop::batch>() == v));  // Python's own text, every double exact

  const std::map<std::string, double> constants{{"pi", 3.141592653589793}, {"e", 2.718281828459045}};
  c.send(constants);
  BOOST_TEST(p.expect("json ") == R"({"e": 2.718281828459045, "pi": 3.141592653589793})");
  BOOST_REQUIRE(c.poll(guard));
  BOOST_TEST((c.recv<std::map<std::string, double>>() == constants));

  const std::vector<std::optional<std::string>> maybe{"x", std::nullopt, ""};
  c.send(maybe);
  BOOST_TEST(p.expect("json ") == R"(["x", null, ""])");
  BOOST_REQUIRE(c.poll(guard));
  BOOST_TEST((c.recv<std::vector<std::optional<std::string>>>() == maybe));
}

}  // namespace

// coproc's send<T> (a described struct, std containers) read by Python's json.loads, and
// Python's json.dumps read by coproc's recv<T>, with a Python Listener and with a Python Client.
BOOST_AUTO_TEST_CASE(typed_messages_both_ways) {
  for (const auto& py : base_and_newest()) {
    note("typed_messages_both_ways: " + py.describe());
    BOOST_TEST_CONTEXT("Python " << py.describe() << ", Python listens") {
      coproc_test::temp_dir dir;
      auto [p, where] = python_listener(py.exe, "mp_peer.py", fam::tcp, dir, the_key, {"--json"});
      coproc::connection c = coproc::client(where, the_key);
      p->expect("connected");
      exchange_typed(c, *p, py.version);
      c.close();
      p->expect("done");
      BOOST_TEST(p->wait() == 0);
    }
    BOOST_TEST_CONTEXT("Python " << py.describe() << ", coproc listens") {
      coproc_test::temp_dir dir;
      coproc::listener l(coproc_address(fam::path, dir), 1, the_key);
      peer p = python_client(py.exe, "mp_peer.py", l.address(), the_key, {"--json"});
      coproc::connection c = guarded_accept(l);
      p->expect("connected");
      exchange_typed(c, *p, py.version);
      c.close();
      p->expect("done");
      BOOST_TEST(p->wait() == 0);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Keys that do not match.

namespace {

const bytes other_key = b("not the interop key");

}  // namespace

// A wrong key is refused on both sides, each with Python's words: the deliverer "digest
// received was wrong", the answerer "digest sent was rejected"; a Python end prints
// AuthenticationError and exits with 3. A coproc listener stays usable after a refused client.
BOOST_AUTO_TEST_CASE(wrong_key_rejected_on_both_sides) {
  for (const auto& py : base_and_newest()) {
    note("wrong_key_rejected_on_both_sides: " + py.describe());
    for (fam f : {fam::path, fam::tcp}) {
      BOOST_TEST_CONTEXT("Python " << py.describe() << ", " << name_of(f) << ", Python listens") {
        coproc_test::temp_dir dir;
        auto [p, where] = python_listener(py.exe, "mp_peer.py", f, dir, the_key);
        BOOST_TEST(auth_error_of([&] { coproc::client(where, other_key); }) ==
                   "digest sent was rejected");
        p->expect("handshake ");
        BOOST_TEST(p->expect("AuthenticationError ") == "digest received was wrong");
        BOOST_TEST(p->wait() == 3);
      }
      BOOST_TEST_CONTEXT("Python " << py.describe() << ", " << name_of(f) << ", coproc listens") {
        coproc_test::temp_dir dir;
        coproc::listener l(coproc_address(f, dir), 1, the_key);
        peer p = python_client(py.exe, "mp_peer.py", l.address(), other_key);
        BOOST_TEST(auth_error_of([&] { guarded_accept(l); }) == "digest received was wrong");
        p->expect("handshake ");
        BOOST_TEST(p->expect("AuthenticationError ") == "digest sent was rejected");
        BOOST_TEST(p->wait() == 3);
        // The listener takes the next client.
        peer good = python_client(py.exe, "mp_peer.py", l.address(), the_key);
        coproc::connection c = guarded_accept(l);
        good->expect("handshake ");
        good->expect("connected");
        coproc_test::check_echo(c, {5});
        c.close();
        good->expect("done");
        BOOST_TEST(good->wait() == 0);
      }
    }
  }
}

// A key on one side only.
// - A coproc listener with a key, a Python Client without: Python takes the challenge for a
//   message and echoes it; coproc refuses that as an answer, in Python's words.
// - A Python Listener with a key, a coproc client without: coproc reads the challenge as its
//   first message; its next message is no answer, and Python refuses it (exit 3, #FAILURE#).
// - A coproc client with a key, a Python Listener without: nobody challenges; coproc's
//   handshake deadline ends it (std::errc::timed_out; Python itself would hang, gh-123736).
// - A coproc listener without a key, a Python Client with one: coproc's first message is no
//   challenge; 3.12+ refuses it ("Protocol error, expected challenge"), 3.11 fails its assert.
BOOST_AUTO_TEST_CASE(key_on_one_side_only) {
  for (const auto& py : base_and_newest()) {
    note("key_on_one_side_only: " + py.describe());
    BOOST_TEST_CONTEXT("Python " << py.describe() << ", coproc listener with the key") {
      coproc_test::temp_dir dir;
      coproc::listener l(coproc_address(fam::path, dir), 1, the_key);
      peer p = python_client(py.exe, "mp_peer.py", l.address(), std::nullopt);
      // Python's repr of the echoed challenge: b'...', or b"..." when the random bytes hold a '.
      const std::string e = auth_error_of([&] { guarded_accept(l); });
      const std::string words =
          "unsupported message length, missing digest prefix, or unsupported digest: message=b";
      BOOST_TEST(e.rfind(words, 0) == 0, e);
      BOOST_TEST((e.compare(words.size() + 1, 19, "#CHALLENGE#{sha256}") == 0 &&
                  (e[words.size()] == '\'' || e[words.size()] == '"')),
                 e);
      BOOST_TEST(p->expect("handshake ") == "(none)");
      p->expect("connected");
      note("  the keyless Python client then: " + rest(*p) + ", exit status " + std::to_string(p->wait()));
    }
    BOOST_TEST_CONTEXT("Python " << py.describe() << ", Python listener with the key") {
      coproc_test::temp_dir dir;
      auto [p, where] = python_listener(py.exe, "mp_peer.py", fam::tcp, dir, the_key);
      coproc::connection c = coproc::client(where);
      BOOST_REQUIRE(c.poll(guard));
      const bytes challenge = c.recv_bytes();
      BOOST_TEST(text(challenge).rfind(py.modern() ? "#CHALLENGE#{sha256}" : "#CHALLENGE#", 0) == 0);
      BOOST_TEST(challenge.size() == (py.modern() ? 11u + 8 + 40 : 11u + 20));
      c.send_bytes(b("hello"));
      BOOST_REQUIRE(c.poll(guard));
      BOOST_TEST(text(c.recv_bytes()) == "#FAILURE#");
      p->expect("handshake ");
      BOOST_TEST(p->expect("AuthenticationError ") ==
                 (py.modern() ? "unsupported message length, missing digest prefix, or "
                                "unsupported digest: message=b'hello'"
                              : "digest received was wrong"));
      BOOST_TEST(p->wait() == 3);
    }
    BOOST_TEST_CONTEXT("Python " << py.describe() << ", coproc client with the key") {
      coproc_test::temp_dir dir;
      auto [p, where] = python_listener(py.exe, "mp_peer.py", fam::path, dir, std::nullopt);
      BOOST_TEST((system_error_of([&] { coproc::client(where, the_key, std::chrono::nanoseconds(1s)); }) ==
                  std::errc::timed_out));
      BOOST_TEST(p->expect("handshake ") == "(none)");
      p->expect("connected");
      p->expect("done");  // coproc closed the socket
      BOOST_TEST(p->wait() == 0);
    }
    BOOST_TEST_CONTEXT("Python " << py.describe() << ", Python client with the key") {
      coproc_test::temp_dir dir;
      coproc::listener l(coproc_address(fam::abstract, dir));
      peer p = python_client(py.exe, "mp_peer.py", l.address(), the_key);
      coproc::connection c = guarded_accept(l);
      c.send_bytes(b("hello"));
      if (py.modern()) {
        p->expect("handshake ");
        BOOST_TEST(p->expect("AuthenticationError ") ==
                   "Protocol error, expected challenge: message=b'hello'");
        BOOST_TEST(p->wait() == 3);
      } else {
        BOOST_TEST(rest(*p) == "");  // an AssertionError, on stderr
        BOOST_TEST(p->wait() == 1);
      }
      BOOST_CHECK_THROW(c.recv_bytes(), coproc::eof_error);  // Python answers nothing
    }
  }
}

// ---------------------------------------------------------------------------------------
// modern_peer.py: the digests a real Python does not send by default, and the legacy form.

// A challenge with md5, sha384, sha3_256 or sha3_384 (coproc answers in that digest), and an
// answer in that digest to coproc's {sha256} challenge (coproc's verifier takes the digest from
// the answer, as Python's does), both directions; 3.11's 20-byte challenge, answered with raw
// HMAC-MD5; and a wrong key with each, refused in Python's words.
BOOST_AUTO_TEST_CASE(other_digests_and_legacy_both_directions) {
  const python py = base();
  note("other_digests_and_legacy_both_directions: modern_peer.py on " + py.describe());
  for (const std::string digest : {"md5", "sha384", "sha3_256", "sha3_384", "legacy"}) {
    // The legacy form is a challenge; the answer to coproc's challenge stays {sha256}.
    const std::string answer = digest == "legacy" ? "sha256" : digest;
    std::vector<std::string> extra{"--trace", "--digest", digest};
    if (digest != "legacy") extra.insert(extra.end(), {"--answer-digest", digest});
    for (fam f : {fam::path, fam::tcp}) {
      BOOST_TEST_CONTEXT(digest << ", " << name_of(f)) {
        python_listens_echo(py.exe, "modern_peer.py", f, {0, 16385},
                            expected_trace(true, digest, answer), extra);
        coproc_listens_echo(py.exe, "modern_peer.py", f, {0, 16385},
                            expected_trace(false, digest, answer), extra);
      }
    }
    BOOST_TEST_CONTEXT(digest << ", a wrong key") {
      coproc_test::temp_dir dir;
      {
        auto [p, where] = python_listener(py.exe, "modern_peer.py", fam::abstract, dir, the_key, extra);
        BOOST_TEST(auth_error_of([&] { coproc::client(where, other_key); }) ==
                   "digest sent was rejected");
        BOOST_TEST(p->expect("handshake ") ==
                   ">" + challenge_of(digest) + " <" + answer_of(digest) + " >failure");
        BOOST_TEST(p->expect("AuthenticationError ") == "digest received was wrong");
        BOOST_TEST(p->wait() == 3);
      }
      {
        coproc::listener l(coproc_address(fam::abstract, dir), 1, the_key);
        peer p = python_client(py.exe, "modern_peer.py", l.address(), other_key, extra);
        BOOST_TEST(auth_error_of([&] { guarded_accept(l); }) == "digest received was wrong");
        BOOST_TEST(p->expect("handshake ") ==
                   "<" + challenge_of("sha256") + " >" + answer_of(answer) + " <failure");
        BOOST_TEST(p->expect("AuthenticationError ") == "digest sent was rejected");
        BOOST_TEST(p->wait() == 3);
      }
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
