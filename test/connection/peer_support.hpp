// Helpers of the listener, auth and interop tests: Python peers started with posix_spawn, the
// interpreters found on this machine, raw framed sockets, temporary socket paths.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <system_error>
#include <string_view>
#include <utility>
#include <vector>

#include <coproc/coproc.hpp>

#include "helpers.hpp"

extern char** environ;

namespace coproc_test {

inline constexpr auto guard = std::chrono::seconds(60);

inline coproc::bytes pattern(std::size_t n, unsigned seed = 0) {
  coproc::bytes b(n);
  for (std::size_t i = 0; i < n; ++i)
    b[i] = static_cast<std::byte>((i * 131 + seed * 7 + (i >> 12)) & 0xff);
  return b;
}

// What an authentication_error said, or "(no authentication_error)".
template <class F>
inline std::string auth_error_of(F&& f) {
  try {
    f();
  } catch (const coproc::authentication_error& e) {
    return e.what();
  }
  return "(no authentication_error)";
}

// The code of a std::system_error, or none.
template <class F>
inline std::error_code system_error_of(F&& f) {
  try {
    f();
  } catch (const std::system_error& e) {
    return e.code();
  }
  return {};
}

inline coproc::bytes b(std::string_view s) { return coproc::as_bytes(s); }

inline std::string text(std::span<const std::byte> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size());
}

inline std::string hex(std::span<const std::byte> v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::byte c : v) {
    out += digits[std::to_integer<unsigned>(c) >> 4];
    out += digits[std::to_integer<unsigned>(c) & 0xf];
  }
  return out;
}

// A directory of its own under /tmp for socket paths, removed with what it holds.
class temp_dir {
 public:
  temp_dir() {
    char name[] = "/tmp/coproc-listener-XXXXXX";
    if (!::mkdtemp(name)) throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = name;
  }
  ~temp_dir() {
    if (DIR* d = ::opendir(path_.c_str())) {
      while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') ::unlink((path_ + "/" + e->d_name).c_str());
      ::closedir(d);
    }
    ::rmdir(path_.c_str());
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// A unique Linux abstract socket name (with its leading '\0').
inline std::string abstract_name() {
  static std::atomic<int> counter{0};
  return std::string(1, '\0') + "coproc-test-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++);
}

// ---------------------------------------------------------------------------------------
// Raw framed messages on a socket (Python's framing), for scripted peers.

inline void raw_send(int fd, std::span<const std::byte> payload) {
  const auto n = static_cast<std::uint32_t>(payload.size());
  unsigned char header[4] = {static_cast<unsigned char>(n >> 24), static_cast<unsigned char>(n >> 16),
                             static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n)};
  std::string all(reinterpret_cast<const char*>(header), 4);
  all.append(reinterpret_cast<const char*>(payload.data()), payload.size());
  if (!write_all(fd, all.data(), all.size()))
    throw std::system_error(errno, std::generic_category(), "raw_send");
}
inline void raw_send(int fd, std::string_view s) { raw_send(fd, b(s)); }

// One message, or nullopt at the end of the stream; throws when the guard expires.
inline std::optional<coproc::bytes> raw_recv(int fd, std::chrono::seconds g = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + g;
  auto read_exactly = [&](std::byte* p, std::size_t n) -> bool {
    while (n > 0) {
      if (!wait_readable(fd, deadline)) throw std::runtime_error("raw_recv: hang guard expired");
      const auto r = ::read(fd, p, n);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw std::system_error(errno, std::generic_category(), "raw_recv");
      if (r == 0) return false;
      p += r;
      n -= static_cast<std::size_t>(r);
    }
    return true;
  };
  std::byte header[4];
  if (!read_exactly(header, 4)) return std::nullopt;
  const std::uint32_t n = (std::to_integer<std::uint32_t>(header[0]) << 24) |
                          (std::to_integer<std::uint32_t>(header[1]) << 16) |
                          (std::to_integer<std::uint32_t>(header[2]) << 8) |
                          std::to_integer<std::uint32_t>(header[3]);
  coproc::bytes m(n);
  if (n && !read_exactly(m.data(), n)) throw std::runtime_error("raw_recv: end of file in a message");
  return m;
}

// A plain connected socket to `a` (no handshake), owned by the test.
class raw_client {
 public:
  explicit raw_client(const coproc::address& a) {
    sockaddr_storage s{};
    socklen_t len = 0;
    if (a.family() == coproc::address::family_type::unix_socket) {
      auto* un = reinterpret_cast<sockaddr_un*>(&s);
      un->sun_family = AF_UNIX;
      std::memcpy(un->sun_path, a.path().data(), a.path().size());
      len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + a.path().size() +
                                   (a.is_abstract() ? 0 : 1));
      fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&s);
      in->sin_family = AF_INET;
      in->sin_port = htons(a.port());
      if (::inet_pton(AF_INET, a.host().c_str(), &in->sin_addr) != 1)
        throw std::runtime_error("raw_client: IPv4 literal expected");
      len = sizeof(sockaddr_in);
      fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    }
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&s), len) == -1)
      throw std::system_error(errno, std::generic_category(), "raw_client");
  }
  ~raw_client() { close(); }
  raw_client(const raw_client&) = delete;
  raw_client& operator=(const raw_client&) = delete;
  int fd() const { return fd_; }
  void close() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

 private:
  int fd_ = -1;
};

// ---------------------------------------------------------------------------------------
// Python peers.

#ifndef COPROC_TEST_PEERS
#error "COPROC_TEST_PEERS: the folder of the Python peer scripts"
#endif
inline std::string peer_script(const char* name) { return std::string(COPROC_TEST_PEERS) + "/" + name; }

// A child process (posix_spawn) whose stdout the test reads line by line; killed and reaped
// however the test ends.
class spawned {
 public:
  spawned(const std::string& exe, const std::vector<std::string>& args) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == -1) throw std::system_error(errno, std::generic_category(), "pipe");
    out_ = p[0];
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, p[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    std::vector<std::string> all{exe};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int e = ::posix_spawnp(&pid_, exe.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(p[1]);
    if (e != 0) {
      ::close(out_);
      throw std::system_error(e, std::generic_category(), "posix_spawnp " + exe);
    }
  }
  ~spawned() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st;
      ::waitpid(pid_, &st, 0);
    }
    if (out_ >= 0) ::close(out_);
  }
  spawned(const spawned&) = delete;
  spawned& operator=(const spawned&) = delete;

  // The next line of its output (without '\n'); "" at the end of it. Throws after the guard.
  std::string line(std::chrono::seconds g = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + g;
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string l = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return l;
      }
      if (eof_) return std::exchange(buffer_, std::string());
      if (!wait_readable(out_, deadline)) throw std::runtime_error("peer: hang guard expired waiting for output");
      char tmp[4096];
      const auto n = ::read(out_, tmp, sizeof tmp);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::system_error(errno, std::generic_category(), "read");
      if (n == 0) eof_ = true;
      buffer_.append(tmp, static_cast<std::size_t>(n > 0 ? n : 0));
    }
  }
  // The next line, which must start with `prefix`; returns the rest.
  std::string expect(const std::string& prefix) {
    const std::string l = line();
    if (l.compare(0, prefix.size(), prefix) != 0)
      throw std::runtime_error("peer said '" + l + "', expected '" + prefix + "...'");
    return l.substr(prefix.size());
  }
  // Its exit status (the exit code, or -signal); kills it after the guard.
  int wait(std::chrono::seconds g = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + g;
    while (!eof_) {
      if (!wait_readable(out_, deadline)) break;
      char tmp[4096];
      const auto n = ::read(out_, tmp, sizeof tmp);
      if (n == 0) eof_ = true;
      if (n > 0) buffer_.append(tmp, static_cast<std::size_t>(n));
    }
    if (!eof_) ::kill(pid_, SIGKILL);
    int st = 0;
    while (::waitpid(pid_, &st, 0) == -1 && errno == EINTR) {
    }
    pid_ = -1;
    if (!eof_) throw std::runtime_error("peer: hang guard expired waiting for its exit");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

struct interpreter {
  std::string path;
  std::string version;  // "3.13.0"
  bool modern;          // 3.12 or later: the {digest} handshake
  bool empty_key_authenticates;  // 3.13+: Listener(authkey=b'') runs the handshake
};

// "X.Y.Z" of `exe`, or nullopt if it does not run (a pyenv shim for a version not selected).
inline std::optional<std::string> python_version(const std::string& exe) {
  try {
    spawned p(exe, {"-I", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"});
    std::string v = p.line(std::chrono::seconds(30));
    if (p.wait(std::chrono::seconds(30)) != 0 || v.empty()) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

inline std::pair<int, int> major_minor(const std::string& v) {
  int a = 0, b2 = 0;
  std::sscanf(v.c_str(), "%d.%d", &a, &b2);
  return {a, b2};
}

// python3 (Debian's, or whatever PATH has), then every Python 3.12+ found: python3.1N on PATH
// and under ~/.pyenv/versions/*/bin, one per version.
inline const std::vector<interpreter>& interpreters() {
  static const std::vector<interpreter> found = [] {
    std::vector<interpreter> out;
    auto add = [&](const std::string& exe) {
      const auto v = python_version(exe);
      if (!v) return;
      for (auto& i : out)
        if (i.version == *v) return;
      const auto [major, minor] = major_minor(*v);
      if (major != 3) return;
      out.push_back({exe, *v, minor >= 12, minor >= 13});
    };
    add("python3");
    std::vector<std::string> candidates;
    for (int minor = 12; minor <= 20; ++minor) candidates.push_back("python3." + std::to_string(minor));
    if (const char* home = std::getenv("HOME")) {
      const std::string root = std::string(home) + "/.pyenv/versions";
      if (DIR* d = ::opendir(root.c_str())) {
        std::vector<std::string> versions;
        while (dirent* e = ::readdir(d))
          if (e->d_name[0] != '.') versions.push_back(e->d_name);
        ::closedir(d);
        std::sort(versions.begin(), versions.end());
        for (auto& v : versions)
          for (int minor = 12; minor <= 20; ++minor) {
            const std::string exe = root + "/" + v + "/bin/python3." + std::to_string(minor);
            if (::access(exe.c_str(), X_OK) == 0) candidates.push_back(exe);
          }
      }
    }
    for (auto& c : candidates) {
      const auto v = python_version(c);
      if (v && major_minor(*v).second >= 12) add(c);
    }
    return out;
  }();
  return found;
}

// The first interpreter found (python3), or nullptr when there is none.
inline const interpreter* base_python() {
  return interpreters().empty() ? nullptr : &interpreters().front();
}

// What a Python peer's address argument looks like for `a`.
inline std::pair<std::string, std::string> peer_address(const coproc::address& a) {
  if (a.family() == coproc::address::family_type::tcp)
    return {"tcp", a.host() + ":" + std::to_string(a.port())};
  if (a.is_abstract()) return {"abstract", a.path().substr(1)};
  return {"unix", a.path()};
}

// A peer's "address ..." line as a coproc::address of `family`.
inline coproc::address parse_peer_address(const std::string& family, const std::string& shown) {
  if (family == "tcp") {
    const auto colon = shown.rfind(':');
    return coproc::address::tcp(shown.substr(0, colon),
                                static_cast<std::uint16_t>(std::stoi(shown.substr(colon + 1))));
  }
  if (family == "abstract") return coproc::address::unix_socket(std::string(1, '\0') + shown.substr(1));
  return coproc::address::unix_socket(shown);
}

inline std::string key_argument(const std::optional<coproc::bytes>& key) {
  if (!key) return "-";
  if (key->empty()) return "empty";
  return hex(*key);
}

// Sends messages of `sizes` bytes and checks that each comes back (the peer echoes).
inline void check_echo(coproc::connection& c, std::initializer_list<std::size_t> sizes,
                       unsigned seed = 0) {
  for (std::size_t n : sizes) {
    BOOST_TEST_CONTEXT("message of " << n << " bytes") {
      const coproc::bytes m = pattern(n, seed);
      c.send_bytes(m);
      BOOST_REQUIRE(c.poll(guard));
      const coproc::bytes back = c.recv_bytes();
      BOOST_TEST(back.size() == m.size());
      BOOST_TEST((back == m));
    }
  }
}

inline const std::initializer_list<std::size_t> all_sizes = {0, 1, 16384, 16385, 16u << 20};

}  // namespace coproc_test
