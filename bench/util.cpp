// Helpers shared by the benchmark cases.
#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "bench.hpp"

extern char** environ;

namespace bench {

double now_us() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

int wait_exit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) == -1) {
    if (errno != EINTR) throw_errno("waitpid");
  }
  return status;
}

namespace {
std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// The Python script prints one item per line: "s <sample>", "m <name> <value>", "skip <why>".
void parse_line(const std::string& line, case_result& r) {
  std::istringstream in(line);
  std::string tag;
  in >> tag;
  if (tag == "s") {
    double v;
    if (in >> v) r.samples.push_back(v);
  } else if (tag == "m") {
    std::string name;
    double v;
    if (in >> name >> v) r.metrics.emplace_back(name, v);
  } else if (tag == "skip") {
    std::string rest;
    std::getline(in >> std::ws, rest);
    r.skipped = rest.empty() ? "skipped by the Python script" : rest;
  }
}
}  // namespace

captured run_capturing(std::vector<std::string> args) {
  captured c;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) == -1) {
    c.spawn_error = errno;
    return c;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  pid_t pid = 0;
  c.spawn_error = ::posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  if (c.spawn_error == 0) {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n > 0) {
        c.out.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    c.status = wait_exit(pid);
  }
  ::close(out[0]);
  return c;
}

case_result run_python(const case_env& env, const std::vector<std::string>& args) {
  if (env.opt.python.empty()) return skipped(env.opt.python_note);
  std::vector<std::string> argv{env.opt.python, env.opt.py_script};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--warmup");
  argv.push_back(std::to_string(env.warmup));
  argv.push_back("--iterations");
  argv.push_back(std::to_string(env.iterations));
  const captured c = run_capturing(argv);
  if (c.spawn_error)
    return failed("posix_spawn " + env.opt.python + ": " + std::strerror(c.spawn_error));

  case_result r;
  std::istringstream lines(c.out);
  for (std::string line; std::getline(lines, line);) parse_line(line, r);
  if (!WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0)
    r.error = "python anchors script ended with " + describe_status(c.status) + " (see cases.log)";
  return r;
}

std::size_t raise_nofile(std::size_t want) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == -1) return 0;
  if (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= want) return lim.rlim_cur;
  rlimit more = lim;
  more.rlim_cur = want;
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < want) more.rlim_max = want;
  if (::setrlimit(RLIMIT_NOFILE, &more) == 0) return want;
  // Raising the hard limit needs CAP_SYS_RESOURCE (and nr_open caps it): take what there is.
  more = lim;
  more.rlim_cur = lim.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &more) == 0) return lim.rlim_max;
  return lim.rlim_cur;
}

std::size_t heap_in_use() noexcept {
  const struct mallinfo2 mi = ::mallinfo2();
  return mi.uordblks + mi.hblkhd;  // small blocks in use + blocks malloc got by mmap
}

std::size_t resident_bytes() noexcept {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (got != 2) return 0;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

touched_region::touched_region(std::size_t bytes) : size_(bytes) {
  base_ = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    throw_errno("mmap");
  }
  ::madvise(base_, size_, MADV_NOHUGEPAGE);
  // Written, not just read: a read maps the shared zero page, which fork copies nothing for.
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  auto* p = static_cast<volatile unsigned char*>(base_);
  for (std::size_t off = 0; off < size_; off += page) p[off] = 1;
}

touched_region::~touched_region() {
  if (base_) ::munmap(base_, size_);
}

shared_stamp* map_shared_stamp() {
  void* p = ::mmap(nullptr, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)),
                   PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw_errno("mmap shared page");
  return static_cast<shared_stamp*>(p);
}

void unmap_shared_stamp(shared_stamp* s) noexcept {
  ::munmap(s, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)));
}

}  // namespace bench
