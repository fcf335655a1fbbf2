// Turns the case records into the terminal table, the CSV files and the plot's data.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench.hpp"
#include "runner.hpp"

namespace bench {

struct stats {
  double median = 0, p25 = 0, p75 = 0, min = 0, max = 0;
  std::size_t n = 0;
};
std::optional<stats> summarize(std::vector<double> values);

struct variant_summary {
  const variant* v = nullptr;
  std::vector<case_record> records;  // one per round that ran

  // Filled by summarize_all:
  std::optional<stats> s;                             // over every sample of every round
  std::map<int, double> round_median;                 // round -> median of that round
  std::map<std::string, std::vector<double>> metrics;  // every value reported, per name
  std::string note;                                   // skipped/failed/killed, if any
  bool skipped_only = false;
  double cpu_per_case_s = 0;  // median over rounds of user + system time
  std::size_t peak_rss_kib = 0;
  std::optional<double> ratio;   // median / the anchor's median
  std::optional<stats> paired;   // the per-round ratios (medians of the same round)
};

struct group_summary {
  const group* g = nullptr;
  std::vector<variant_summary> variants;
  const variant_summary* find(const std::string& name) const;
};

void summarize_all(std::vector<group_summary>& groups);

// The table (with the targets under it), as printed and as saved in table.txt.
std::string render_table(const std::vector<group_summary>& groups, const std::string& machine);

// results.csv (one row per figure), samples.csv (every sample) and the gnuplot data files.
void write_csv(const std::string& path, const std::vector<group_summary>& groups);
void write_samples_csv(const std::string& path, const std::vector<group_summary>& groups);
// Returns, per data file ("latency", "fanout", ...), whether it holds any figure.
std::map<std::string, bool> write_plot_data(const std::string& dir,
                                            const std::vector<group_summary>& groups);

double metric_median(const variant_summary& v, const std::string& name);

}  // namespace bench
