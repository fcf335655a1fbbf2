// Runs one benchmark case in its own child process, with a deadline, and shows progress.
#pragma once

#include <csignal>
#include <cstddef>
#include <string>

#include "bench.hpp"

namespace bench {

enum class outcome { ok, skipped, failed, killed };

struct case_record {
  int round = 0;
  case_result result;
  outcome status = outcome::ok;
  std::string message;  // why it was skipped, failed or killed
  double user_s = 0, sys_s = 0, wall_s = 0;  // of the case child and what it reaped
  std::size_t max_rss_kib = 0;
};

// The progress line on the terminal (stderr); silent when stderr is not a terminal, where a
// line per round is printed instead.
class progress {
 public:
  explicit progress(std::size_t total);
  void set_total(std::size_t total) { total_ = total; }
  void begin(std::size_t index, const std::string& label);
  void refresh();
  void clear();
  void line(const std::string& text);  // a permanent line above the progress line

 private:
  void draw();
  std::size_t total_, index_ = 0;
  std::string label_;
  double run_start_, case_start_ = 0;
  bool tty_;
};

// Set by SIGINT/SIGTERM: the running case is killed and the harness reports what it has.
extern volatile std::sig_atomic_t interrupted;
void install_interrupt_handlers();

case_record run_case(const group& g, const variant& v, const options& opt, int round,
                     int log_fd, progress& prog);

}  // namespace bench
