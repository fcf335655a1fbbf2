// two_languages: a C++ coroutine and a Python worker talking over Python's own
// multiprocessing.connection protocol, authenticated with a shared key.
//
//   two_languages [PYTHON]        PYTHON: the interpreter (default: python3 on PATH)
//
// The C++ side listens on an abstract Unix socket with an authkey, starts
// examples/two_languages.py with Boost.Process v2 (the key in its environment, never on the
// command line), accepts it with `co_await listener.async_accept(...)`: the handshake is
// Python's HMAC challenge in both directions, driven without blocking the io_context. Then it
// sends typed messages (a described struct becomes a JSON object that Python reads with
// json.loads) and awaits the answers as another struct. Last, a second Python worker comes
// with a wrong key: both sides refuse it, each with its own language's AuthenticationError.
//
// docs/connections.md, "Two languages", walks through it.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <boost/process/v2.hpp>  // first: its headers are not self-contained in Boost 1.81
#include <stdlib.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <coproc/coproc.hpp>

namespace asio = boost::asio;
namespace bp2 = boost::process::v2;
using asio::use_awaitable;

struct job {
  int id;
  std::string text;
};
BOOST_DESCRIBE_STRUCT(job, (), (id, text))

struct reply {
  int id;
  int words;
  std::optional<std::string> longest;  // Python's None for an empty text
  std::string python;                  // the worker's version
};
BOOST_DESCRIBE_STRUCT(reply, (), (id, words, longest, python))

namespace {

std::string find_on_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (std::size_t at = 0; at <= dirs.size();) {
    const std::size_t end = std::min(dirs.find(':', at), dirs.size());
    const std::string candidate = dirs.substr(at, end - at) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    at = end + 1;
  }
  throw std::runtime_error(name + " not found on PATH");
}

std::string hex(std::span<const std::byte> key) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (std::byte b : key) {
    out += digits[std::to_integer<int>(b) >> 4];
    out += digits[std::to_integer<int>(b) & 15];
  }
  return out;
}

// Starts the Python worker with its key in its environment. (Boost 1.81's
// bp2::process_environment needs Boost.Process's compiled part, which Debian does not ship:
// the worker inherits ours, with the key set just for the launch.)
bp2::process start_worker(asio::io_context& io, const std::string& python,
                          const coproc::address& where, std::span<const std::byte> key) {
  ::setenv("COPROC_EXAMPLE_KEY", hex(key).c_str(), 1);
  const std::string script = COPROC_EXAMPLES_DIR "/two_languages.py";
  const std::string shown = where.to_string();  // "@name" for an abstract socket
  bp2::process worker(io.get_executor(), python, {script, shown});
  ::unsetenv("COPROC_EXAMPLE_KEY");
  return worker;
}

asio::awaitable<int> serve(asio::io_context& io, const std::string& python) {
  // A fresh random key, as Python gives every process (current_process().authkey).
  const coproc::bytes key(coproc::current_process().authkey().begin(),
                          coproc::current_process().authkey().end());
  coproc::listener jobs(
      coproc::address::unix_socket(std::string(1, '\0') + "coproc-two-languages-" +
                                   std::to_string(::getpid())),
      1, key);
  std::cout << "c++: listening on " << jobs.address().to_string() << " with a "
            << key.size() << "-byte key\n";

  bp2::process worker = start_worker(io, python, jobs.address(), key);
  coproc::connection conn = co_await jobs.async_accept(use_awaitable);
  std::cout << "c++: the worker answered the challenge and checked ours\n";

  const std::vector<std::string> texts = {"the quick brown fox", "", "multiprocessing speaks JSON now"};
  for (int id = 0; id < static_cast<int>(texts.size()); ++id) {
    // A named local, not a temporary in the co_await expression: GCC 12 destroys such a
    // temporary twice (double free; docs/connections.md, "GCC 12").
    const job next{id, texts[static_cast<std::size_t>(id)]};
    co_await conn.async_send(next, use_awaitable);
    const reply r = co_await conn.async_recv<reply>(use_awaitable);
    std::cout << "c++: job " << r.id << ": " << r.words << " words, longest "
              << (r.longest ? "'" + *r.longest + "'" : "none") << " (Python " << r.python
              << ")\n";
  }
  conn.close();  // the worker sees end of stream and ends
  const int code = co_await worker.async_wait(use_awaitable);
  std::cout << "c++: the worker exited with " << code << "\n";

  // A worker with the wrong key: the handshake fails on both sides.
  coproc::bytes wrong = key;
  wrong[0] ^= std::byte{1};
  bp2::process intruder = start_worker(io, python, jobs.address(), wrong);
  try {
    co_await jobs.async_accept(use_awaitable);
    std::cout << "c++: accepted a wrong key?!\n";
    co_return 1;
  } catch (const boost::system::system_error& e) {
    std::cout << "c++: refused a worker: " << e.code().message() << "\n";
  }
  const int refused = co_await intruder.async_wait(use_awaitable);
  std::cout << "c++: that worker exited with " << refused << "\n";
  co_return code == 0 && refused == 3 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string python = find_on_path(argc > 1 ? argv[1] : "python3");
  asio::io_context io;
  int result = 1;
  asio::co_spawn(io, serve(io, python), [&](std::exception_ptr e, int r) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        std::cerr << "two_languages: " << x.what() << "\n";
      }
      return;
    }
    result = r;
  });
  io.run();
  return result;
}
