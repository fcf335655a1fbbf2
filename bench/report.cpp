#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <stdexcept>

namespace bench {

namespace {

// Linear interpolation between order statistics (R's type 7, numpy's default), so the
// figures can be checked with any statistics package from samples.csv.
double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.size() == 1) return sorted.front();
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return quantile(v, 0.5);
}

std::string fmt(double v) {
  char buf[64];
  const double a = std::fabs(v);
  if (a >= 1000)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (a >= 100)
    std::snprintf(buf, sizeof buf, "%.1f", v);
  else if (a >= 1)
    std::snprintf(buf, sizeof buf, "%.2f", v);
  else
    std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

std::string fmt_ratio(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, r >= 100 ? "%.0fx" : (r >= 10 ? "%.1fx" : "%.2fx"), r);
  return buf;
}

std::string pad(std::string s, std::size_t width, bool right = false) {
  if (s.size() >= width) return s;
  return right ? std::string(width - s.size(), ' ') + s : s + std::string(width - s.size(), ' ');
}

// Notes are sentences; the table stays readable in a 120-column terminal.
std::string wrap(const std::string& text, const std::string& indent, std::size_t width = 100) {
  std::istringstream words(text);
  std::string out, line;
  for (std::string w; words >> w;) {
    if (!line.empty() && line.size() + 1 + w.size() > width) {
      out += indent + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + w;
  }
  if (!line.empty()) out += indent + line + "\n";
  return out;
}

const char* role_name(role r) {
  switch (r) {
    case role::subject:
      return "coproc";
    case role::anchor:
      return "anchor";
    case role::info:
      return "info";
  }
  return "";
}

std::string metric_label(const std::string& name) {
  static const std::map<std::string, std::string> labels = {
      {"start_us_per_child", "start us/child"},
      {"drain_us_per_child", "drain us/child"},
      {"handlers_per_exit", "handlers/exit"},
      {"epoll_waits_per_exit", "epoll_waits/exit"},
      {"wakeups_per_exit", "wakeups/exit"},
      {"parent_faults_per_child", "parent page faults/child"},
      {"heap_bytes_per_child", "heap B/child"},
      {"heap_bytes_per_child_incl_coroutine", "heap B/child (with coroutine frame)"},
      {"cpu_us_per_call", "CPU us/call (caller+worker)"},
      {"caller_cpu_us_per_call", "caller"},
      {"worker_cpu_us_per_call", "worker"},
      {"idle_cpu_us_in_200ms", "CPU us in 200 ms idle"},
      {"crash_to_exception_us", "crash until exception us"},
      {"next_apply_us", "next apply us"},
  };
  auto it = labels.find(name);
  return it == labels.end() ? name : it->second;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string csv_num(std::optional<double> v) {
  if (!v) return "";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", *v);
  return buf;
}

}  // namespace

std::optional<stats> summarize(std::vector<double> values) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  stats s;
  s.n = values.size();
  s.min = values.front();
  s.max = values.back();
  s.median = quantile(values, 0.5);
  s.p25 = quantile(values, 0.25);
  s.p75 = quantile(values, 0.75);
  return s;
}

double metric_median(const variant_summary& v, const std::string& name) {
  auto it = v.metrics.find(name);
  if (it == v.metrics.end() || it->second.empty()) return std::nan("");
  return median_of(it->second);
}

const variant_summary* group_summary::find(const std::string& name) const {
  for (const auto& v : variants)
    if (v.v->name == name) return &v;
  return nullptr;
}

void summarize_all(std::vector<group_summary>& groups) {
  for (auto& gs : groups) {
    for (auto& vs : gs.variants) {
      std::vector<double> pooled, cpu;
      std::map<std::string, int> problems;  // message -> rounds
      int skipped = 0;
      for (const auto& rec : vs.records) {
        vs.peak_rss_kib = std::max(vs.peak_rss_kib, rec.max_rss_kib);
        if (rec.status == outcome::ok) {
          pooled.insert(pooled.end(), rec.result.samples.begin(), rec.result.samples.end());
          vs.round_median[rec.round] = median_of(rec.result.samples);
          for (const auto& [name, value] : rec.result.metrics) vs.metrics[name].push_back(value);
          cpu.push_back(rec.user_s + rec.sys_s);
        } else if (rec.status == outcome::skipped) {
          ++skipped;
          problems["skipped: " + rec.message]++;
        } else {
          problems[(rec.status == outcome::killed ? "killed: " : "failed: ") + rec.message]++;
        }
      }
      vs.s = summarize(pooled);
      if (!cpu.empty()) vs.cpu_per_case_s = median_of(cpu);
      vs.skipped_only = !vs.records.empty() && skipped == static_cast<int>(vs.records.size());
      for (const auto& [msg, rounds] : problems) {
        if (!vs.note.empty()) vs.note += "; ";
        vs.note += msg;
        if (!vs.skipped_only)
          vs.note += " (" + std::to_string(rounds) + " of " + std::to_string(vs.records.size()) +
                     " rounds)";
      }
    }
    const variant_summary* anchor = gs.find(gs.g->anchor);
    if (!anchor || !anchor->s) continue;
    for (auto& vs : gs.variants) {
      if (!vs.s) continue;
      vs.ratio = vs.s->median / anchor->s->median;
      // Paired per round: A and B of the same round ran next to each other.
      std::vector<double> per_round;
      for (const auto& [round, med] : vs.round_median) {
        auto it = anchor->round_median.find(round);
        if (it != anchor->round_median.end()) per_round.push_back(med / it->second);
      }
      vs.paired = summarize(per_round);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Targets: the ratios the issues set, evaluated on this run's figures.

namespace {

struct verdict {
  std::string state;  // "met", "MISSED", "n/a"
  std::string text;
  std::string figure;
};

const group_summary* find_group(const std::vector<group_summary>& gs, const std::string& id,
                                long param) {
  for (const auto& g : gs)
    if (g.g->id == id && (param < 0 || g.g->param == param)) return &g;
  return nullptr;
}

std::optional<double> median_of_variant(const group_summary* g, const std::string& name) {
  if (!g) return std::nullopt;
  const auto* v = g->find(name);
  if (!v || !v->s) return std::nullopt;
  return v->s->median;
}

verdict ratio_target(const std::vector<group_summary>& gs, const std::string& text,
                     const std::string& id, long param, const std::string& subject,
                     const std::string& reference, double limit, bool speedup) {
  const auto* g = find_group(gs, id, param);
  if (g && !g->g->skip.empty()) return {"n/a", text, "skipped: " + g->g->skip};
  const auto a = median_of_variant(g, subject), b = median_of_variant(g, reference);
  if (!a || !b) return {"n/a", text, "not measured in this run"};
  const double r = speedup ? *b / *a : *a / *b;
  const bool ok = speedup ? r >= limit : r <= limit;
  return {ok ? "met" : "MISSED", text,
          fmt_ratio(r) + (speedup ? " faster (" : " (") + fmt(*a) + " vs " + fmt(*b) + " " +
              g->g->unit + ")"};
}

std::vector<verdict> evaluate_targets(const std::vector<group_summary>& gs) {
  std::vector<verdict> out;
  out.push_back(ratio_target(gs, "coproc fork start+join within 1.15x of raw fork+waitpid",
                             "start_join", -1, "coproc fork", "raw fork+_exit+waitpid", 1.15,
                             false));
  {
    auto v = ratio_target(gs, "coproc fork start+join >= 10x faster than Python's fork",
                          "start_join", -1, "coproc fork", "Python multiprocessing fork", 10, true);
    // How far any fork-based implementation could go on this machine.
    const auto* g = find_group(gs, "start_join", -1);
    const auto raw = median_of_variant(g, "raw fork+_exit+waitpid");
    const auto py = median_of_variant(g, "Python multiprocessing fork");
    if (v.state != "n/a" && raw && py)
      v.figure += "; raw fork itself is " + fmt_ratio(*py / *raw) + " faster";
    out.push_back(v);
  }
  std::vector<std::pair<long, double>> handlers;  // N -> coproc handlers per exit
  for (const auto& g : gs) {
    if (g.g->id != "fanout") continue;
    out.push_back(ratio_target(gs,
                               "per-child cost within 1.2x of raw pidfd+epoll, " +
                                   g.g->param_label,
                               "fanout", g.g->param, "coproc start + co_await async_join",
                               "raw fork+pidfd_open+epoll loop", 1.2, false));
    if (const auto* v = g.find("coproc start + co_await async_join"); v && v->s)
      handlers.emplace_back(g.g->param, metric_median(*v, "handlers_per_exit"));
  }
  {
    // O(1) wake-ups: the work per exit must not grow with N. N=1 is left out: its fixed
    // costs (the first registration with the reactor) are not per-exit work.
    verdict v{"n/a", "wake-ups stay O(1) per exit (handlers/exit does not grow with N)",
              "not measured in this run"};
    std::vector<std::pair<long, double>> big;
    for (const auto& h : handlers)
      if (h.first >= 100 && !std::isnan(h.second)) big.push_back(h);
    if (big.size() >= 2) {
      std::sort(big.begin(), big.end());
      std::string fig;
      for (const auto& [n, h] : big) fig += (fig.empty() ? "" : ", ") + ("N=" + std::to_string(n)) + ": " + fmt(h);
      const double growth = big.back().second / big.front().second;
      v.state = growth <= 1.5 ? "met" : "MISSED";
      v.figure = fig + " (x" + fmt(growth) + " from N=" + std::to_string(big.front().first) +
                 " to N=" + std::to_string(big.back().first) + ")";
    }
    out.push_back(v);
  }
  out.push_back(ratio_target(gs, "wake-up median within 1.2x of raw poll on a pidfd", "wakeup",
                             -1, "coproc co_await async_join", "raw poll() on a pidfd", 1.2,
                             false));
  {
    verdict v{"n/a", "parent memory <= 2 KiB per awaited child (RSS and heap)",
              "not measured in this run"};
    if (const auto* g = find_group(gs, "memory", -1)) {
      const auto* c = g->find("coproc async_join, callback handler");
      if (c && c->s) {
        const double rss = c->s->median;
        const double heap = metric_median(*c, "heap_bytes_per_child");
        v.state = (rss <= 2048 && heap <= 2048) ? "met" : "MISSED";
        v.figure = "RSS " + fmt(rss) + " B/child, heap " + fmt(heap) + " B/child at " +
                   g->g->param_label + (g->g->note.empty() ? "" : " (see the group's note)");
      }
    }
    out.push_back(v);
  }
  // The worker pool (issue 10).
  out.push_back(ratio_target(gs, "pool apply, spin 0, within 1.3x of a raw blocking round trip",
                             "pool_apply", -1, "coproc pool(1).apply, spin 0",
                             "raw blocking round trip (socketpair, 16 B)", 1.3, false));
  out.push_back(ratio_target(gs, "pool apply, default spin, >= 4x faster than Python's Pool(1)",
                             "pool_apply", -1, "coproc pool(1).apply, default spin",
                             "Python Pool(1).apply_async().get()", 4, true));
  {
    // Throughput: higher is better, so the ratio is coproc over Python.
    auto v = ratio_target(gs, "pool map >= 3x Python's Pool(cpu_count()).map throughput",
                          "pool_map", -1, "Python Pool(cpu_count()).map, default chunks",
                          "coproc pool.map, default chunks", 3, true);
    if (v.state != "n/a") {
      const auto* g = find_group(gs, "pool_map", -1);
      const double r = *median_of_variant(g, "coproc pool.map, default chunks") /
                       *median_of_variant(g, "Python Pool(cpu_count()).map, default chunks");
      v.figure = fmt_ratio(r) + " Python's throughput";
    }
    out.push_back(v);
  }
  for (const auto& [param, label] : {std::pair{0L, "fork"}, std::pair{1L, "spawn"}})
    out.push_back(ratio_target(gs,
                               std::string("pool worker replaced within 1.5x of a start+join, ") +
                                   label,
                               "pool_replace", param, "coproc pool(1): apply(crash) + apply(id)",
                               std::string("coproc ") + label + " start+join (no-op)", 1.5, false));
  return out;
}

}  // namespace

std::string render_table(const std::vector<group_summary>& groups, const std::string& machine) {
  std::ostringstream out;
  out << machine << "\n";
  out << "Medians over all samples of all rounds; IQR = p25..p75. Ratio = median / the anchor's\n"
         "median, then the paired per-round ratios (each round runs A and B back to back):\n"
         "their median [p25..p75]. CPU/case = user+system time of a case child and what it\n"
         "reaped; peak RSS = the largest of those processes.\n";
  const std::size_t wv = 44;
  for (const auto& gs : groups) {
    const auto& g = *gs.g;
    out << "\n" << g.title;
    if (!g.param_label.empty()) out << ", " << g.param_label;
    out << "  [" << g.unit << ", " << (g.higher_is_better ? "higher" : "lower")
        << " is better; " << g.rounds << " round" << (g.rounds == 1 ? "" : "s") << "]\n";
    if (!g.note.empty()) out << wrap(g.note, "  | ");
    out << "  " << pad("variant", wv) << pad("median", 10, true) << pad("p25..p75", 22, true)
        << "  " << pad("ratio  paired [IQR]", 30) << pad("n", 6, true) << pad("CPU/case", 10, true)
        << pad("peak RSS", 11, true) << "\n";
    for (const auto& vs : gs.variants) {
      std::string name = vs.v->name;
      if (name == g.anchor) name += " [anchor]";
      out << "  " << pad(name, wv);
      if (!vs.s) {
        out << (vs.note.empty() ? "not run" : vs.note) << "\n";
        continue;
      }
      std::string ratio;
      if (vs.ratio) {
        ratio = fmt_ratio(*vs.ratio);
        if (vs.paired && name.find("[anchor]") == std::string::npos)
          ratio += "  " + fmt(vs.paired->median) + " [" + fmt(vs.paired->p25) + ".." +
                   fmt(vs.paired->p75) + "]";
      }
      char rss[32];
      std::snprintf(rss, sizeof rss, "%.1f MiB", static_cast<double>(vs.peak_rss_kib) / 1024);
      char cpu[32];
      std::snprintf(cpu, sizeof cpu, "%.2f s", vs.cpu_per_case_s);
      out << pad(fmt(vs.s->median), 10, true)
          << pad(fmt(vs.s->p25) + ".." + fmt(vs.s->p75), 22, true) << "  " << pad(ratio, 30)
          << pad(std::to_string(vs.s->n), 6, true) << pad(cpu, 10, true) << pad(rss, 11, true)
          << "\n";
      if (!vs.metrics.empty()) {
        std::string line;
        for (const auto& [name2, values] : vs.metrics)
          line += (line.empty() ? "" : " | ") + metric_label(name2) + " " +
                  fmt(metric_median(vs, name2));
        out << "      " << line << "\n";
      }
      if (!vs.note.empty()) out << wrap("note: " + vs.note, "      ");
    }
  }
  out << "\nTargets\n";
  for (const auto& v : evaluate_targets(groups))
    out << "  " << pad("[" + v.state + "]", 9) << pad(v.text, 68) << v.figure << "\n";
  return out.str();
}

void write_csv(const std::string& path, const std::vector<group_summary>& groups) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path);
  f << "group,param,title,variant,role,figure,unit,median,p25,p75,min,max,n,rounds_ok,"
       "ratio_to_anchor,paired_ratio_median,paired_ratio_p25,paired_ratio_p75,"
       "paired_ratio_min,paired_ratio_max,anchor,status,cpu_per_case_s,"
       "peak_rss_kib\n";
  for (const auto& gs : groups) {
    const auto& g = *gs.g;
    for (const auto& vs : gs.variants) {
      const std::string head = csv_field(g.id) + "," + csv_field(g.param_label) + "," +
                               csv_field(g.title) + "," + csv_field(vs.v->name) + "," +
                               role_name(vs.v->kind) + ",";
      const std::string status = vs.s ? (vs.note.empty() ? "ok" : vs.note) : vs.note;
      f << head << "primary," << csv_field(g.unit) << ","
        << csv_num(vs.s ? std::optional(vs.s->median) : std::nullopt) << ","
        << csv_num(vs.s ? std::optional(vs.s->p25) : std::nullopt) << ","
        << csv_num(vs.s ? std::optional(vs.s->p75) : std::nullopt) << ","
        << csv_num(vs.s ? std::optional(vs.s->min) : std::nullopt) << ","
        << csv_num(vs.s ? std::optional(vs.s->max) : std::nullopt) << ","
        << (vs.s ? std::to_string(vs.s->n) : "") << "," << vs.round_median.size() << ","
        << csv_num(vs.ratio) << ","
        << csv_num(vs.paired ? std::optional(vs.paired->median) : std::nullopt) << ","
        << csv_num(vs.paired ? std::optional(vs.paired->p25) : std::nullopt) << ","
        << csv_num(vs.paired ? std::optional(vs.paired->p75) : std::nullopt) << ","
        << csv_num(vs.paired ? std::optional(vs.paired->min) : std::nullopt) << ","
        << csv_num(vs.paired ? std::optional(vs.paired->max) : std::nullopt) << ","
        << csv_field(g.anchor) << "," << csv_field(status.empty() ? "not run" : status) << ","
        << csv_num(vs.cpu_per_case_s) << "," << vs.peak_rss_kib << "\n";
      for (const auto& [name, values] : vs.metrics) {
        const auto s = summarize(values);
        f << head << csv_field(name) << ",," << csv_num(s->median) << "," << csv_num(s->p25)
          << "," << csv_num(s->p75) << "," << csv_num(s->min) << "," << csv_num(s->max) << ","
          << s->n << "," << vs.round_median.size() << ",,,,,,," << csv_field(g.anchor)
          << ",ok,,\n";
      }
    }
  }
}

void write_samples_csv(const std::string& path, const std::vector<group_summary>& groups) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path);
  f << "group,param,variant,round,unit,sample\n";
  char buf[64];
  for (const auto& gs : groups)
    for (const auto& vs : gs.variants)
      for (const auto& rec : vs.records) {
        if (rec.status != outcome::ok) continue;
        for (double s : rec.result.samples) {
          std::snprintf(buf, sizeof buf, "%.6g", s);
          f << csv_field(gs.g->id) << "," << csv_field(gs.g->param_label) << ","
            << csv_field(vs.v->name) << "," << rec.round << "," << csv_field(gs.g->unit) << ","
            << buf << "\n";
        }
      }
}

std::map<std::string, bool> write_plot_data(const std::string& dir,
                                            const std::vector<group_summary>& groups) {
  std::map<std::string, bool> have;
  const auto q = [](std::string s) {
    std::replace(s.begin(), s.end(), '"', '\'');
    return "\"" + s + "\"";
  };
  const auto triple = [](const variant_summary* v) {
    if (!v || !v->s) return std::string("NaN NaN NaN");
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.6g %.6g %.6g", v->s->median, v->s->p25, v->s->p75);
    return std::string(buf);
  };
  // Bars: one row per variant that has figures.
  const auto bars = [&](const std::string& name, const std::string& id) {
    std::ofstream f(dir + "/" + name + ".dat");
    f << "# index label median p25 p75\n";
    int i = 0;
    for (const auto& gs : groups) {
      if (gs.g->id != id) continue;
      for (const auto& vs : gs.variants)
        if (vs.s) f << i++ << " " << q(vs.v->name) << " " << triple(&vs) << "\n";
    }
    have[name] = i > 0;
  };
  bars("latency", "start_join");
  bars("wakeup", "wakeup");
  // Lines: one row per parameter value, the variants side by side.
  const auto lines = [&](const std::string& name, const std::string& id,
                         const std::vector<std::string>& names) {
    std::ofstream f(dir + "/" + name + ".dat");
    f << "# param";
    for (const auto& n : names) f << " | " << n << " (median p25 p75)";
    f << "\n";
    bool any = false;
    for (const auto& gs : groups) {
      if (gs.g->id != id) continue;
      f << gs.g->param;
      for (const auto& n : names) {
        const auto* v = gs.find(n);
        any = any || (v && v->s);
        f << " " << triple(v);
      }
      f << "\n";
    }
    have[name] = any;
  };
  lines("fanout", "fanout",
        {"coproc start + co_await async_join", "raw fork+pidfd_open+epoll loop"});
  lines("fork_memory", "fork_memory",
        {"coproc fork", "raw fork+_exit+waitpid", "raw posix_spawn(bench-noop)+waitpid"});
  return have;
}

}  // namespace bench
