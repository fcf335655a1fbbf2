#include "helpers.hpp"

#include <cstring>
#include <thread>

namespace coproc_test {

extern std::string self_exe;

coproc::connection dup_connection(const coproc::connection& c) {
  const int fd = ::fcntl(c.fileno(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "dup");
  return coproc::connection(fd, c.readable(), c.writable());
}

void warm_up_start_method() {
  coproc::process p(targets::nothing);
  p.start();
  if (p.join() != 0) throw std::runtime_error("warm_up_start_method: the child did not exit 0");
}

conn_pipe::conn_pipe() {
  auto [r, w] = coproc::pipe(false);
  r_ = std::move(r);
  w_ = std::move(w);
}

void conn_pipe::write(const std::string& s) const {
  if (!write_all(w_.fileno(), s.data(), s.size()))
    throw std::system_error(errno, std::generic_category(), "write");
}

std::string conn_pipe::read_all(std::chrono::seconds guard) {
  close_write();
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + guard;
  char buf[4096];
  for (;;) {
    if (!wait_readable(r_.fileno(), deadline)) throw std::runtime_error("read_all: hang guard expired");
    auto n = ::read(r_.fileno(), buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) throw std::system_error(errno, std::generic_category(), "read");
    if (n == 0) return out;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

std::string conn_pipe::read_line(std::chrono::seconds guard) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + guard;
  for (;;) {
    if (!wait_readable(r_.fileno(), deadline)) throw std::runtime_error("read_line: hang guard expired");
    char c;
    auto n = ::read(r_.fileno(), &c, 1);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) throw std::system_error(errno, std::generic_category(), "read");
    if (n == 0 || c == '\n') return out;
    out.push_back(c);
  }
}

void send_text(coproc::connection& c, std::string_view s) {
  if (!write_all(c.fileno(), s.data(), s.size()))
    throw std::system_error(errno, std::generic_category(), "write");
}

void wait_for_release(coproc::connection& release) {
  wait_readable(release.fileno(), std::chrono::seconds(30));
}

namespace targets {
void nothing() {}
COPROC_TARGET(nothing);
void exit_with(int code) { coproc::exit(code); }
COPROC_TARGET(exit_with);
void pause_forever() {
  for (;;) ::pause();
}
COPROC_TARGET(pause_forever);
void raise_signal(int sig) {
  ::raise(sig);
  for (;;) ::pause();
}
COPROC_TARGET(raise_signal);
void released(coproc::connection release) { wait_for_release(release); }
COPROC_TARGET(released);
void released_exit(coproc::connection release, int code) {
  wait_for_release(release);
  coproc::exit(code);
}
COPROC_TARGET(released_exit);
}  // namespace targets

run_result run_scenario(const std::string& name, std::vector<std::string> args, std::string input,
                        std::chrono::seconds guard) {
  // Plain posix_spawn, not coproc: the scenario's own exit behaviour is what is observed.
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC))
    throw std::system_error(errno, std::generic_category(), "pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<std::string> argv_s{self_exe, "--scenario", name};
  for (auto& a : args) argv_s.push_back(a);
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto start = std::chrono::steady_clock::now();
  pid_t pid;
  const int rc = ::posix_spawn(&pid, self_exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) throw std::system_error(rc, std::generic_category(), "posix_spawn");
  std::thread writer([fd = in[1], input = std::move(input)] {
    write_all(fd, input.data(), input.size());  // a scenario that stops reading ends it early
    ::close(fd);
  });
  run_result res{};
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_count = 2;
  const auto deadline = start + guard;
  bool killed = false;
  while (open_count > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      ::kill(pid, SIGKILL);
      killed = true;
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      char buf[4096];
      auto n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        (i == 0 ? res.out : res.err).append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  while (::waitpid(pid, &status, 0) == -1 && errno == EINTR) {
  }
  writer.join();
  res.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  res.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  if (killed) throw std::runtime_error("scenario " + name + ": hang guard expired\n" + res.err);
  return res;
}

}  // namespace coproc_test
