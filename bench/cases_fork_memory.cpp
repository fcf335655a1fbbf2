// start+join when the parent holds a lot of touched memory: fork copies the page tables of
// every private mapping (and the child's exit tears them down), exec-based starts do not.
#include <cstddef>
#include <string>

#include <coproc/coproc.hpp>

#include "bench.hpp"
#include "start_join.hpp"

namespace bench {
namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

template <case_result (*Loop)(const case_env&)>
case_result with_memory(const case_env& env) {
  touched_region held(static_cast<std::size_t>(env.param) * mib);
  return Loop(env);
}

case_result coproc_fork_loop(const case_env& env) {
  return coproc_start_join_loop(env, coproc::start_method::fork);
}
case_result coproc_spawn_loop(const case_env& env) {
  return coproc_start_join_loop(env, coproc::start_method::spawn);
}
case_result coproc_forkserver_loop(const case_env& env) {
  return coproc_start_join_loop(env, coproc::start_method::forkserver);
}

}  // namespace

void add_fork_memory_groups(std::vector<group>& out, const options& opt) {
  const bool s = opt.short_mode;
  struct size {
    long mib;
    int iterations;
  };
  // Fewer iterations where each start costs more; the short mode leaves out 1 GiB, whose
  // set-up alone (touching 262,144 pages per case) would take a good part of its minute.
  const std::vector<size> sizes = {{64, s ? 20 : 40}, {256, s ? 10 : 20}, {1024, 10}};
  for (const auto& sz : sizes) {
    group g;
    g.id = "fork_memory";
    g.title = "start+join while the parent holds touched memory";
    g.param = sz.mib;
    g.param_label = std::to_string(sz.mib) + " MiB";
    g.unit = "us";
    g.anchor = "raw fork+_exit+waitpid";
    g.rounds = s ? 2 : 5;
    if (s && sz.mib > 256) g.skip = "short mode; the default run measures it";
    const std::chrono::seconds dl(180);
    g.variants = {
        {"coproc fork", role::subject, with_memory<coproc_fork_loop>, 3, sz.iterations, dl},
        {"coproc spawn", role::subject, with_memory<coproc_spawn_loop>, 3, sz.iterations, dl},
        {"coproc forkserver", role::subject, with_memory<coproc_forkserver_loop>, 3,
         sz.iterations, dl},
        {"raw fork+_exit+waitpid", role::anchor, with_memory<raw_fork_loop>, 3, sz.iterations,
         dl},
        {"raw posix_spawn(bench-noop)+waitpid", role::anchor, with_memory<posix_spawn_loop>, 3,
         sz.iterations, dl},
    };
    out.push_back(std::move(g));
  }
}

}  // namespace bench
