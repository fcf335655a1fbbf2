// Messages between parent and child: connection throughput (small messages per second,
// bandwidth with large ones) and apply_async's round trip.
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <algorithm>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <coproc/coproc.hpp>

#include "bench.hpp"
#include "start_join.hpp"

namespace bench {
namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

// Messages per repetition: small ones are counted, large ones fill a fixed volume.
std::size_t message_count(const case_env& env) {
  const auto size = static_cast<std::size_t>(env.param);
  if (size >= 65536) return (env.opt.short_mode ? 64 : 256) * mib / size;
  return env.opt.short_mode ? 10000 : 40000;
}

// ---------------------------------------------------------------------------------------
// coproc: the same loop as the raw socketpair below, with send_bytes/recv_bytes (or their
// awaitable twins) in place of writev/read, and a child started by coproc that reads.

case_result coproc_pipe(const case_env& env, bool bandwidth, bool awaited) {
  const auto size = static_cast<std::size_t>(env.param);
  const std::size_t count = message_count(env);
  const int reps = env.warmup + env.iterations;
  auto [parent_end, child_end] = coproc::pipe();
  coproc::process reader(
      [count, reps](coproc::connection c) {
        std::vector<std::byte> buf(std::max<std::size_t>(1, 1 << 20));
        for (int r = 0; r < reps; ++r) {
          for (std::size_t i = 0; i < count; ++i) (void)c.recv_bytes_into(buf);
          c.send_bytes(coproc::as_bytes("k"));
        }
      },
      std::move(child_end));
  reader.start();
  const std::vector<std::byte> payload(size, std::byte{'x'});
  boost::asio::io_context io;
  case_result r;
  for (int rep = 0; rep < reps; ++rep) {
    const double t0 = now_us();
    if (awaited) {
      boost::asio::co_spawn(
          io,
          [&]() -> boost::asio::awaitable<void> {
            for (std::size_t i = 0; i < count; ++i)
              co_await parent_end.async_send_bytes(payload, boost::asio::use_awaitable);
          },
          boost::asio::detached);
      io.restart();
      io.run();
    } else {
      for (std::size_t i = 0; i < count; ++i) parent_end.send_bytes(payload);
    }
    (void)parent_end.recv_bytes();  // the reader's acknowledgement
    const double t1 = now_us();
    if (rep < env.warmup) continue;
    const double seconds = (t1 - t0) / 1e6;
    const double n = static_cast<double>(count);
    r.samples.push_back(bandwidth ? n * static_cast<double>(size) / (1 << 20) / seconds
                                  : n / seconds);
  }
  if (reader.join() != 0) return failed("reader child failed");
  return r;
}
case_result coproc_pipe_messages(const case_env& env) { return coproc_pipe(env, false, false); }
case_result coproc_pipe_bandwidth(const case_env& env) { return coproc_pipe(env, true, false); }
case_result coproc_awaited_messages(const case_env& env) { return coproc_pipe(env, false, true); }

int next_one(int i) { return i + 1; }

// apply_async(f, i).get() per call: a child each, its result back as JSON.
case_result coproc_apply_async(const case_env& env) {
  case_result r;
  for (int i = 0; i < env.warmup + env.iterations; ++i) {
    const double t0 = now_us();
    const int got = coproc::apply_async(next_one, i).get();
    const double t1 = now_us();
    if (got != i + 1) return failed("wrong result");
    if (i >= env.warmup) r.samples.push_back(t1 - t0);
  }
  return r;
}

// ---------------------------------------------------------------------------------------
// The raw anchor: a socketpair (what Python's Pipe() is) with Python's framing, a 4-byte
// big-endian length and the payload. One writev per message; the reader reads the header,
// then the body, as Connection._recv_bytes does.

void write_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw_errno("write");
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

bool read_exact(int fd, void* data, std::size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t k = ::read(fd, p, n);
    if (k == 0) return false;
    if (k < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}

void send_framed(int fd, const std::vector<char>& payload) {
  const auto len = static_cast<std::uint32_t>(payload.size());
  const unsigned char header[4] = {static_cast<unsigned char>(len >> 24),
                                   static_cast<unsigned char>(len >> 16),
                                   static_cast<unsigned char>(len >> 8),
                                   static_cast<unsigned char>(len)};
  iovec iov[2] = {{const_cast<unsigned char*>(header), 4},
                  {const_cast<char*>(payload.data()), payload.size()}};
  std::size_t left = 4 + payload.size();
  ssize_t k;
  while ((k = ::writev(fd, iov, 2)) != static_cast<ssize_t>(left)) {
    if (k < 0 && errno != EINTR) throw_errno("writev");
    if (k < 0) continue;
    // A partial write: finish the rest with plain writes.
    std::size_t done = static_cast<std::size_t>(k);
    if (done < 4) {
      write_all(fd, header + done, 4 - done);
      done = 4;
    }
    write_all(fd, payload.data() + (done - 4), payload.size() - (done - 4));
    return;
  }
}

[[noreturn]] void reader_child(int fd, std::size_t count, int reps) {
  std::vector<char> buf;
  for (int r = 0; r < reps; ++r) {
    for (std::size_t i = 0; i < count; ++i) {
      unsigned char h[4];
      if (!read_exact(fd, h, 4)) ::_exit(2);
      const std::size_t len = (std::size_t{h[0]} << 24) | (std::size_t{h[1]} << 16) |
                              (std::size_t{h[2]} << 8) | std::size_t{h[3]};
      if (buf.size() < len) buf.resize(len);
      if (!read_exact(fd, buf.data(), len)) ::_exit(2);
    }
    const char ack = 'k';
    write_all(fd, &ack, 1);
  }
  ::_exit(0);
}

case_result raw_socketpair(const case_env& env, bool bandwidth) {
  const auto size = static_cast<std::size_t>(env.param);
  const std::size_t count = message_count(env);
  const int reps = env.warmup + env.iterations;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) throw_errno("socketpair");
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(sv[0]);
    reader_child(sv[1], count, reps);
  }
  if (pid < 0) throw_errno("fork");
  ::close(sv[1]);
  const std::vector<char> payload(size, 'x');
  case_result r;
  for (int rep = 0; rep < reps; ++rep) {
    const double t0 = now_us();
    for (std::size_t i = 0; i < count; ++i) send_framed(sv[0], payload);
    char ack;
    if (!read_exact(sv[0], &ack, 1)) return failed("reader child went away");
    const double t1 = now_us();
    if (rep < env.warmup) continue;
    const double seconds = (t1 - t0) / 1e6;
    const double n = static_cast<double>(count);
    r.samples.push_back(bandwidth ? n * static_cast<double>(size) / (1 << 20) / seconds
                                  : n / seconds);
  }
  ::close(sv[0]);
  const int status = wait_exit(pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return failed("reader child failed");
  return r;
}

case_result raw_messages(const case_env& env) { return raw_socketpair(env, false); }
case_result raw_bandwidth(const case_env& env) { return raw_socketpair(env, true); }

case_result python_pipe(const case_env& env, const char* quantity) {
  return run_python(env, {"pipe", "--size", std::to_string(env.param), "--count",
                          std::to_string(message_count(env)), "--quantity", quantity});
}
case_result python_messages(const case_env& env) { return python_pipe(env, "messages"); }
case_result python_bandwidth(const case_env& env) { return python_pipe(env, "mib"); }
case_result python_pool_apply(const case_env& env) { return run_python(env, {"pool-apply"}); }
case_result coproc_fork_start_join(const case_env& env) {
  return coproc_start_join_loop(env, coproc::start_method::fork);
}

}  // namespace

void add_ipc_groups(std::vector<group>& out, const options& opt) {
  const bool s = opt.short_mode;
  const std::chrono::seconds dl(120);
  {
    group g;
    g.id = "conn_messages";
    g.title = "connection: small messages, parent to child";
    g.param = 64;
    g.param_label = "64 B";
    g.unit = "msgs/s";
    g.higher_is_better = true;
    g.anchor = "raw socketpair (writev + 2 reads)";
    g.rounds = s ? 2 : 5;
    const int reps = s ? 3 : 5;
    g.variants = {
        {"coproc pipe() send_bytes/recv_bytes", role::subject, coproc_pipe_messages, 1, reps,
         dl},
        {"coproc co_await async_send_bytes", role::info, coproc_awaited_messages, 1, reps, dl},
        {"raw socketpair (writev + 2 reads)", role::anchor, raw_messages, 1, reps, dl},
        {"Python multiprocessing Pipe()", role::anchor, python_messages, 1, reps, dl},
    };
    out.push_back(std::move(g));
  }
  {
    group g;
    g.id = "conn_bandwidth";
    g.title = "connection: bandwidth with 1 MiB messages, parent to child";
    g.param = static_cast<long>(mib);
    g.param_label = "1 MiB";
    g.unit = "MiB/s";
    g.higher_is_better = true;
    g.anchor = "raw socketpair (writev + 2 reads)";
    g.rounds = s ? 2 : 5;
    const int reps = s ? 2 : 4;
    g.variants = {
        {"coproc pipe() send_bytes/recv_bytes", role::subject, coproc_pipe_bandwidth, 1, reps,
         dl},
        {"raw socketpair (writev + 2 reads)", role::anchor, raw_bandwidth, 1, reps, dl},
        {"Python multiprocessing Pipe()", role::anchor, python_bandwidth, 1, reps, dl},
    };
    out.push_back(std::move(g));
  }
  {
    group g;
    g.id = "apply_async";
    g.title = "apply_async round trip (coproc: a child per call; Python: a warm Pool(1))";
    g.unit = "us";
    g.anchor = "Python Pool(1).apply_async().get()";
    g.rounds = s ? 2 : 5;
    g.variants = {
        {"coproc apply_async().get()", role::subject, coproc_apply_async, 10, s ? 50 : 200, dl},
        // The target: apply_async within 1.3x of coproc's own start+join.
        {"coproc fork start+join (no result)", role::info, coproc_fork_start_join, 10,
         s ? 50 : 200, dl},
        {"Python Pool(1).apply_async().get()", role::anchor, python_pool_apply, 20,
         s ? 200 : 500, dl},
    };
    out.push_back(std::move(g));
  }
}

}  // namespace bench
