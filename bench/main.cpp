// coproc-bench: every benchmark of the project, side by side with its anchors, in one run.
//
//   coproc-bench [--short] [--rounds N] [--only ID[,ID...]] [--results DIR] [--python PATH]
//                [--no-plot] [--selftest] [--list]
//
// Rounds alternate the variants of each group (A, B, C, then B, C, A, ...), and all groups
// take their turn within a round, so a slow spell of the machine lands on every variant
// alike. tools/bench.sh builds the harness and runs it; docs/performance.md explains the
// figures.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <coproc/coproc.hpp>

#include <boost/version.hpp>

#include "bench.hpp"
#include "report.hpp"
#include "runner.hpp"

extern char** environ;

namespace bench {
namespace {

// ---------------------------------------------------------------------------------------
// Cases that must fail, to show that the harness survives them (--selftest).

case_result hang_forever(const case_env&) {
  for (;;) ::pause();
}

case_result crash(const case_env&) {
  ::raise(SIGSEGV);
  return {};
}

void add_selftest_group(std::vector<group>& out) {
  group g;
  g.id = "selftest";
  g.title = "harness self-test: the first case must be killed, the second reported as crashed";
  g.unit = "us";
  g.rounds = 1;
  g.variants = {
      {"hangs (deadline 2 s)", role::info, hang_forever, 0, 1, std::chrono::seconds(2)},
      {"dies of SIGSEGV", role::info, crash, 0, 1, std::chrono::seconds(10)},
  };
  out.push_back(std::move(g));
}

// ---------------------------------------------------------------------------------------

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

std::string find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return {};
  std::istringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && executable(dir + "/" + name)) return dir + "/" + name;
  return {};
}

// Runs a program and returns its stdout (empty if it could not run or failed).
std::string capture(const std::vector<std::string>& args) {
  captured c = run_capturing(args);
  if (c.spawn_error || !WIFEXITED(c.status) || WEXITSTATUS(c.status) != 0) return {};
  while (!c.out.empty() && (c.out.back() == '\n' || c.out.back() == '\r')) c.out.pop_back();
  return c.out;
}

std::string read_first(const std::string& file, const std::string& key) {
  std::ifstream f(file);
  for (std::string line; std::getline(f, line);) {
    if (line.rfind(key, 0) == 0) {
      auto pos = line.find(':');
      if (pos == std::string::npos) return line;
      auto v = line.substr(pos + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return {};
}

std::string read_all(const std::string& file) {
  std::ifstream f(file);
  std::string s;
  std::getline(f, s);
  return s;
}

// The machine's CPU time so far, from the first line of /proc/stat, in seconds.
struct cpu_times {
  double busy = 0, total = 0, steal = 0;
};

cpu_times machine_cpu() {
  std::istringstream in(read_all("/proc/stat"));
  std::string tag;
  unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0,
                     steal = 0;
  in >> tag >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  const auto hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  cpu_times t;
  t.busy = static_cast<double>(user + nice + system + irq + softirq) / hz;
  t.steal = static_cast<double>(steal) / hz;
  t.total = static_cast<double>(user + nice + system + idle + iowait + irq + softirq + steal) / hz;
  return t;
}

// CPU time of the harness and of everything it reaped (every case child, which reaped its own).
double own_cpu() {
  double s = 0;
  for (int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage u{};
    ::getrusage(who, &u);
    s += static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }
  return s;
}

// What other work took from the machine while the harness ran: the figures' spread comes
// from there. The load average would not say it: the fan-outs make 10,000 processes
// runnable at once and inflate it themselves.
std::string other_work(const cpu_times& before, double own_before) {
  const cpu_times after = machine_cpu();
  const double total = after.total - before.total;
  if (total <= 0) return "unknown";
  const double others = std::max(0.0, (after.busy - before.busy) - (own_cpu() - own_before));
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "other processes used %.0f%% of the machine's CPU time during the run; "
                "hypervisor steal %.1f%%",
                100 * others / total, 100 * (after.steal - before.steal) / total);
  return buf;
}

std::string machine_description(const options& opt, const std::string& python_version) {
  utsname u{};
  ::uname(&u);
  std::ostringstream m;
  char when[64];
  const std::time_t t = std::time(nullptr);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&t));
  m << "coproc " << COPROC_VERSION_STRING << " benchmark, " << when
    << (opt.short_mode ? " (short mode)" : " (default mode)") << "\n";
  m << "machine: " << ::sysconf(_SC_NPROCESSORS_ONLN) << " CPUs online ("
    << read_first("/proc/cpuinfo", "model name") << "), "
    << read_first("/proc/meminfo", "MemTotal") << " RAM, Linux " << u.release << " " << u.machine
    << ", THP " << read_all("/sys/kernel/mm/transparent_hugepage/enabled") << "\n";
  m << "toolchain: g++ " << __VERSION__ << ", Boost " << BOOST_VERSION / 100000 << "."
    << BOOST_VERSION / 100 % 1000 << "." << BOOST_VERSION % 100 << ", Python "
    << (python_version.empty() ? "(none)" : python_version) << " (" << opt.python << ")";
  return m.str();
}

std::string exe_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<std::size_t>(n));
  return p.substr(0, p.rfind('/'));
}

void mkdirs(const std::string& path) {
  std::string cur;
  std::istringstream parts(path);
  if (!path.empty() && path[0] == '/') cur = "/";
  for (std::string part; std::getline(parts, part, '/');) {
    if (part.empty()) continue;
    cur += part + "/";
    if (::mkdir(cur.c_str(), 0755) == -1 && errno != EEXIST) throw_errno(("mkdir " + cur).c_str());
  }
}

// A group with fewer rounds than the run takes its turns spread over the run (first round,
// last round and evenly between), so that each group samples the whole run's conditions.
// Returns the group's own round number for this run-wide round, or 0 when it sits this out.
int local_round(int round, int max_rounds, int rounds) {
  if (rounds >= max_rounds) return round <= rounds ? round : 0;
  if (rounds == 1) return round == 1 ? 1 : 0;
  for (int k = 1; k <= rounds; ++k)
    if (1 + (k - 1) * (max_rounds - 1) / (rounds - 1) == round) return k;
  return 0;
}

[[noreturn]] void usage(int code) {
  std::fprintf(code ? stderr : stdout,
               "usage: coproc-bench [--short] [--rounds N] [--only ID[,ID...]] [--results DIR]\n"
               "                    [--python PATH] [--no-plot] [--selftest] [--list]\n"
               "  --short      the tour's quick run (fewer rounds and iterations, N <= 1000)\n"
               "  --rounds N   override every group's number of rounds\n"
               "  --only IDs   run only these groups (see --list)\n"
               "  --results D  where the CSV files and the plot go (default: ./bench-results)\n"
               "  --python P   the Python 3 interpreter for the Python anchors\n"
               "  --selftest   add cases that hang and crash, to show how they are reported\n");
  std::exit(code);
}

}  // namespace
}  // namespace bench

int main(int argc, char** argv) {
  coproc::init(argc, argv);  // a spawned child of a spawn start method runs its target here
  // The spawn anchor: this program started again, ending where a spawned child's target begins
  // (after the loader, the static initialisers and init()).
  if (argc == 2 && std::string_view(argv[1]) == "--exit-at-once") return 0;
  using namespace bench;

  options opt;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(2);
      return argv[++i];
    };
    if (a == "--short") {
      opt.short_mode = true;
    } else if (a == "--rounds") {
      opt.rounds = std::atoi(value().c_str());
      if (opt.rounds < 1) usage(2);
    } else if (a == "--only") {
      std::istringstream ids(value());
      for (std::string id; std::getline(ids, id, ',');) opt.only.push_back(id);
    } else if (a == "--results") {
      opt.results_dir = value();
    } else if (a == "--python") {
      opt.python = value();
    } else if (a == "--no-plot") {
      opt.plot = false;
    } else if (a == "--selftest") {
      opt.selftest = true;
    } else if (a == "--list") {
      list = true;
    } else if (a == "--help" || a == "-h") {
      usage(0);
    } else {
      usage(2);
    }
  }

  // The no-op program is built next to the harness; the scripts stay in the source folder,
  // whose path meson compiled in.
  const std::string here = exe_dir();
  opt.noop_path = here + "/bench-noop";
  opt.py_script = std::string(BENCH_SOURCE_DIR) + "/py_anchors.py";
  opt.gnuplot_script = std::string(BENCH_SOURCE_DIR) + "/plot.gp";
  if (opt.results_dir.empty()) opt.results_dir = "bench-results";

  // Room for 10,000 awaited children where this process may raise its hard limit; the cases
  // inherit it (and raise their soft limit to it).
  (void)raise_nofile(2 * 10000 + 64);

  std::vector<group> groups;
  add_start_join_groups(groups, opt);
  add_async_groups(groups, opt);
  add_fork_memory_groups(groups, opt);
  add_ipc_groups(groups, opt);
  add_handshake_groups(groups, opt);
  add_pool_groups(groups, opt);
  if (opt.selftest) add_selftest_group(groups);
  if (list) {
    std::set<std::string> seen;
    for (const auto& g : groups)
      if (seen.insert(g.id).second) std::printf("%-16s %s\n", g.id.c_str(), g.title.c_str());
    return 0;
  }
  if (!opt.only.empty()) {
    std::erase_if(groups, [&](const group& g) {
      return std::find(opt.only.begin(), opt.only.end(), g.id) == opt.only.end();
    });
    if (groups.empty()) {
      std::fprintf(stderr, "coproc-bench: no group matches --only (see --list)\n");
      return 2;
    }
  }
  if (opt.rounds > 0)
    for (auto& g : groups) g.rounds = opt.rounds;

  if (!executable(opt.noop_path)) {
    std::fprintf(stderr, "coproc-bench: %s is missing (build the bench-noop target)\n",
                 opt.noop_path.c_str());
    return 1;
  }
  // Debian's own interpreter first: a version manager's shim would add a shell to each run.
  std::string python_version;
  if (opt.python.empty()) opt.python = executable("/usr/bin/python3") ? "/usr/bin/python3"
                                                                       : find_in_path("python3");
  if (opt.python.empty()) {
    opt.python_note = "python3 not found";
  } else {
    python_version = capture({opt.python, opt.py_script, "version"});
    if (python_version.empty()) {
      opt.python_note = opt.python + " cannot run " + opt.py_script;
      opt.python.clear();
    }
  }

  mkdirs(opt.results_dir);
  const std::string log_path = opt.results_dir + "/cases.log";
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
                            0644);
  if (log_fd < 0) throw_errno(("open " + log_path).c_str());

  const cpu_times cpu_before = machine_cpu();
  const double own_before = own_cpu();
  const std::string machine = machine_description(opt, python_version);
  std::fprintf(stderr, "%s\n", machine.c_str());
  install_interrupt_handlers();

  // The plan: round by round, every group, its variants rotated by the round number.
  std::vector<group_summary> results(groups.size());
  int max_rounds = 0;
  std::size_t planned = 0;
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    results[gi].g = &groups[gi];
    for (const auto& v : groups[gi].variants) {
      variant_summary vs;
      vs.v = &v;
      results[gi].variants.push_back(std::move(vs));
    }
    max_rounds = std::max(max_rounds, groups[gi].rounds);
    planned += groups[gi].variants.size() * static_cast<std::size_t>(groups[gi].rounds);
  }
  // Groups that do not run in this mode get their rows (and the reason) without a case.
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    if (groups[gi].skip.empty()) continue;
    for (auto& vs : results[gi].variants) {
      case_record rec;
      rec.round = 1;
      rec.status = outcome::skipped;
      rec.message = groups[gi].skip;
      vs.records.push_back(std::move(rec));
    }
    planned -= groups[gi].variants.size() * static_cast<std::size_t>(groups[gi].rounds);
  }
  progress prog(planned);
  std::size_t done = 0;
  const double t_start = now_us();
  for (int round = 1; round <= max_rounds && !interrupted; ++round) {
    if (!::isatty(STDERR_FILENO)) std::fprintf(stderr, "round %d of %d\n", round, max_rounds);
    for (std::size_t gi = 0; gi < groups.size() && !interrupted; ++gi) {
      const auto& g = groups[gi];
      const int local = local_round(round, max_rounds, g.rounds);
      if (local == 0 || !g.skip.empty()) continue;
      const std::size_t nv = g.variants.size();
      for (std::size_t k = 0; k < nv && !interrupted; ++k) {
        const std::size_t vi = (k + static_cast<std::size_t>(local - 1)) % nv;
        auto& vs = results[gi].variants[vi];
        // A variant that reported "skipped" (not built yet, no Python) is not asked again.
        if (!vs.records.empty() && vs.records.back().status == outcome::skipped) {
          prog.set_total(--planned);
          continue;
        }
        const std::string label = "round " + std::to_string(local) + "/" +
                                  std::to_string(g.rounds) + "  " + g.id +
                                  (g.param_label.empty() ? "" : " " + g.param_label) + ": " +
                                  g.variants[vi].name;
        prog.begin(++done, label);
        case_record rec = run_case(g, g.variants[vi], opt, local, log_fd, prog);
        if (rec.status == outcome::killed || rec.status == outcome::failed)
          prog.line("  " + g.id + " " + g.param_label + " / " + g.variants[vi].name + ": " +
                    rec.message);
        vs.records.push_back(std::move(rec));
      }
    }
  }
  prog.clear();
  const double elapsed_s = (now_us() - t_start) / 1e6;

  summarize_all(results);
  const std::string machine_and_load = machine + "\n" + other_work(cpu_before, own_before);
  std::string table = render_table(results, machine_and_load);
  char tail[160];
  std::snprintf(tail, sizeof tail, "\n%s after %.0f s (%zu cases).\n",
                interrupted ? "Interrupted" : "Finished", elapsed_s, done);
  table += tail;
  std::fputs(table.c_str(), stdout);

  const std::string dir = opt.results_dir;
  std::ofstream(dir + "/table.txt") << table;
  write_csv(dir + "/results.csv", results);
  write_samples_csv(dir + "/samples.csv", results);
  const auto have = write_plot_data(dir, results);
  std::string plot_note;
  if (opt.plot) {
    const std::string gnuplot = find_in_path("gnuplot");
    if (gnuplot.empty()) {
      plot_note = "plot skipped: gnuplot not found (tools/setup.sh installs gnuplot-nox)";
    } else {
      std::string vars = "datadir='" + dir + "'";
      for (const auto& [name, any] : have) vars += "; have_" + name + "=" + (any ? "1" : "0");
      const std::string out = capture({gnuplot, "-e", vars, opt.gnuplot_script});
      plot_note = out.empty() ? "plot failed: gnuplot " + opt.gnuplot_script + " (see above)"
                              : "plot:     " + out;
    }
  }
  std::printf("\nresults:  %s/results.csv (figures), %s/samples.csv (every sample)\n",
              dir.c_str(), dir.c_str());
  std::printf("table:    %s/table.txt\nlog:      %s\n", dir.c_str(), log_path.c_str());
  if (!plot_note.empty()) std::printf("%s\n", plot_note.c_str());
  ::close(log_fd);
  return interrupted ? 130 : 0;
}
