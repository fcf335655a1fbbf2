// Each case runs in a child started by coproc::process (the harness dogfoods the library):
// the child sends its results through a plain pipe, the parent waits on the pipe and on the
// process's sentinel with the case's deadline, kills the case's whole process group when the
// deadline passes, and reads CPU time and peak RSS from process::status().
#include "runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>
#include <sstream>
#include <string>

#include <coproc/coproc.hpp>

namespace bench {

volatile std::sig_atomic_t interrupted = 0;

namespace {

extern "C" void on_interrupt(int) { interrupted = 1; }

void write_all(int fd, const std::string& text) {
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

std::string one_line(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

// The wire format between a case child and the harness: one item per line, "end" last, so a
// child that died half-way is told apart from one that had nothing to say.
std::string serialize(const case_result& r) {
  std::string out;
  char buf[64];
  for (double s : r.samples) {
    std::snprintf(buf, sizeof buf, "s %.17g\n", s);
    out += buf;
  }
  for (const auto& [name, value] : r.metrics) {
    std::snprintf(buf, sizeof buf, " %.17g\n", value);
    out += "m " + name + buf;
  }
  if (!r.skipped.empty()) out += "skip " + one_line(r.skipped) + "\n";
  if (!r.error.empty()) out += "err " + one_line(r.error) + "\n";
  out += "end\n";
  return out;
}

bool parse(const std::string& text, case_result& r) {
  std::istringstream in(text);
  bool complete = false;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::string tag;
    ls >> tag;
    if (tag == "s") {
      double v;
      if (ls >> v) r.samples.push_back(v);
    } else if (tag == "m") {
      std::string name;
      double v;
      if (ls >> name >> v) r.metrics.emplace_back(name, v);
    } else if (tag == "skip" || tag == "err") {
      std::string rest;
      std::getline(ls >> std::ws, rest);
      (tag == "skip" ? r.skipped : r.error) = rest;
    } else if (tag == "end") {
      complete = true;
    }
  }
  return complete;
}

// Runs in the case child.
void case_main(const case_env& env, const variant& v, int result_fd, int log_fd) {
  // The case and everything it starts form one process group, which the harness kills as a
  // whole at the deadline: grandchildren (Python's workers, a fan-out's thousands) included.
  ::setpgid(0, 0);
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
  // Out of a background process group the terminal is not ours to write to; the log is.
  ::dup2(log_fd, STDOUT_FILENO);
  ::dup2(log_fd, STDERR_FILENO);
  case_result r;
  try {
    r = v.fn(env);
  } catch (const std::exception& e) {
    r = failed(e.what());
  }
  write_all(result_fd, serialize(r));
}

void drain(int fd, std::string& into) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      into.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return;  // end of file, or nothing more for now (the descriptor is non-blocking)
  }
}

std::string describe_exit(int code) {
  if (code < 0) return "the case child died of signal " + std::to_string(-code);
  return "the case child ended with exit code " + std::to_string(code);
}

double seconds_of(std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1e6; }

}  // namespace

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: the wait below must wake up
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

case_record run_case(const group& g, const variant& v, const options& opt, int round,
                     int log_fd, progress& prog) {
  using namespace std::chrono;
  case_record rec;
  rec.round = round;
  const case_env env{opt, g.param, v.warmup, v.iterations};

  write_all(log_fd, "== " + g.id + (g.param_label.empty() ? "" : " " + g.param_label) + " | " +
                        v.name + " | round " + std::to_string(round) + "\n");

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) == -1) throw_errno("pipe2");
  const int rd = fds[0], wr = fds[1];
  const auto t0 = steady_clock::now();
  coproc::process p(coproc::process_options{.name = "bench-case"},
                    [&env, &v, wr, log_fd] { case_main(env, v, wr, log_fd); });
  try {
    p.start();
  } catch (...) {
    ::close(rd);
    ::close(wr);
    throw;
  }
  ::close(wr);
  const pid_t pgid = *p.pid();

  std::string text;
  bool pipe_open = true;
  bool killed = false;
  const auto deadline = t0 + v.deadline;
  for (;;) {
    if (interrupted || steady_clock::now() >= deadline) {
      // The case child is not reaped yet, so its pid (the group id) cannot have been reused.
      ::killpg(pgid, SIGKILL);
      p.kill();
      killed = true;
      break;
    }
    pollfd w[2] = {{p.sentinel(), POLLIN, 0}, {rd, POLLIN, 0}};
    const auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    const int timeout_ms = static_cast<int>(std::clamp<long long>(left, 0, 250));
    const int n = ::poll(w, pipe_open ? 2 : 1, timeout_ms);
    prog.refresh();
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("poll");
    }
    if (pipe_open && (w[1].revents & (POLLIN | POLLHUP))) {
      char buf[65536];
      const ssize_t k = ::read(rd, buf, sizeof buf);
      if (k > 0) text.append(buf, static_cast<std::size_t>(k));
      if (k == 0) pipe_open = false;
    }
    if (w[0].revents & POLLIN) break;
  }
  // What the child wrote before it ended is in the pipe; grandchildren may still hold the
  // write end open, so read what is there without waiting for end-of-file.
  ::fcntl(rd, F_SETFL, ::fcntl(rd, F_GETFL) | O_NONBLOCK);
  drain(rd, text);
  ::close(rd);
  // Stray grandchildren of a finished case would disturb the next one.
  if (!killed) ::killpg(pgid, SIGKILL);
  const int code = p.join();
  rec.wall_s = duration<double>(steady_clock::now() - t0).count();
  if (auto st = p.status()) {
    rec.user_s = seconds_of(st->user_time);
    rec.sys_s = seconds_of(st->system_time);
    rec.max_rss_kib = st->max_rss_kib;
  }

  const bool complete = parse(text, rec.result);
  if (killed) {
    rec.status = outcome::killed;
    rec.message = interrupted ? "interrupted"
                              : "killed at its deadline of " +
                                    std::to_string(v.deadline.count()) + " s";
  } else if (code != 0 || !complete) {
    rec.status = outcome::failed;
    rec.message = describe_exit(code) + (complete ? "" : " before reporting");
    if (!rec.result.error.empty()) rec.message += ": " + rec.result.error;
  } else if (!rec.result.error.empty()) {
    rec.status = outcome::failed;
    rec.message = rec.result.error;
  } else if (!rec.result.skipped.empty()) {
    rec.status = outcome::skipped;
    rec.message = rec.result.skipped;
  } else if (rec.result.samples.empty()) {
    rec.status = outcome::failed;
    rec.message = "no samples";
  }
  return rec;
}

// ---------------------------------------------------------------------------------------

progress::progress(std::size_t total)
    : total_(total), run_start_(now_us()), tty_(::isatty(STDERR_FILENO) == 1) {}

void progress::begin(std::size_t index, const std::string& label) {
  index_ = index;
  label_ = label;
  case_start_ = now_us();
  draw();
}

void progress::refresh() {
  if (tty_) draw();
}

void progress::draw() {
  if (!tty_) return;
  const auto total_s = static_cast<long>((now_us() - run_start_) / 1e6);
  const auto case_s = (now_us() - case_start_) / 1e6;
  std::string label = label_;
  if (label.size() > 80) label = label.substr(0, 77) + "...";
  std::fprintf(stderr, "\r\033[K[%3zu/%zu %ld:%02ld] %s (%.0f s)", index_, total_, total_s / 60,
               total_s % 60, label.c_str(), case_s);
  std::fflush(stderr);
}

void progress::clear() {
  if (!tty_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

void progress::line(const std::string& text) {
  clear();
  std::fprintf(stderr, "%s\n", text.c_str());
  draw();
}

}  // namespace bench
