# The harness's plot, drawn by gnuplot from the data files coproc-bench writes:
#   gnuplot -e "datadir='build/bench-results'" bench/plot.gp
# The harness also passes have_<name>=0 for a data file without figures (a group left out by
# --only, say): that panel then says so instead of stopping gnuplot. Prints the image's path.

if (!exists("datadir")) datadir = "."
if (!exists("have_latency")) have_latency = 1
if (!exists("have_fanout")) have_fanout = 1
if (!exists("have_fork_memory")) have_fork_memory = 1
if (!exists("have_wakeup")) have_wakeup = 1

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
  set terminal pngcairo size 1600,1100 font "sans,10" noenhanced
  outfile = datadir."/bench.png"
} else {
  set terminal svg size 1600,1100 font "sans,10" noenhanced
  outfile = datadir."/bench.svg"
}
set output outfile
set datafile missing "NaN"
set multiplot layout 2,2 title "coproc benchmarks (medians; boxes or points with whiskers p25..p75)"

# Draws an empty panel with a note: call with the panel's title.
empty_panel(t) = sprintf("set title \"%s\"; unset xlabel; unset ylabel; unset logscale; unset key; unset tics; unset grid; set label 99 \"not measured in this run\" at graph 0.5,0.5 center; plot [0:1][0:1] NaN notitle; unset label 99; set tics; set border", t)

reset_panel = "unset logscale; unset xlabel; unset ylabel; set autoscale; set offsets 0, 0, 0, 0; set xtics norotate; set grid ytics mytics xtics; set key top left"

# Latency per method: the figures span three decades, hence the log scale.
eval reset_panel
t = "start+join of a no-op child, one at a time"
if (have_latency) {
  set title t
  set ylabel "microseconds (log scale)"
  set logscale y
  set style fill solid 0.6 border -1
  set boxwidth 0.6
  set xtics rotate by 30 right
  set offsets 0.6, 0.6, 0, 0
  unset key
  plot datadir."/latency.dat" using 1:3:4:5:(0.3):xtic(2) with boxerrorbars lc rgb "#4878a8" notitle
} else { eval empty_panel(t) }

eval reset_panel
t = "N children awaited at once on one thread: cost per child"
if (have_fanout) {
  set title t
  set xlabel "N (children alive at once, log scale)"
  set ylabel "microseconds per child"
  set logscale x
  set offsets graph 0.05, graph 0.05, 0, 0
  set yrange [0:*]
  plot datadir."/fanout.dat" using 1:2:3:4 with yerrorlines lw 2 title "coproc start + co_await async_join", \
       ""                   using 1:5:6:7 with yerrorlines lw 2 title "raw fork+pidfd_open+epoll"
} else { eval empty_panel(t) }

eval reset_panel
t = "start+join while the parent holds touched memory"
if (have_fork_memory) {
  set title t
  set xlabel "MiB of touched memory in the parent (log scale)"
  set ylabel "microseconds"
  set logscale x 2
  set offsets graph 0.05, graph 0.05, 0, 0
  set yrange [0:*]
  plot datadir."/fork_memory.dat" using 1:2:3:4 with yerrorlines lw 2 title "coproc fork", \
       ""                         using 1:5:6:7 with yerrorlines lw 2 title "raw fork+_exit+waitpid", \
       ""                         using 1:8:9:10 with yerrorlines lw 2 title "raw posix_spawn+waitpid"
} else { eval empty_panel(t) }

eval reset_panel
t = "wake-up: child's last instruction -> waiter resumes"
if (have_wakeup) {
  set title t
  set ylabel "microseconds"
  set yrange [0:*]
  set style fill solid 0.6 border -1
  set boxwidth 0.6
  set xtics rotate by 30 right
  set offsets 0.6, 0.6, 0, 0
  unset key
  plot datadir."/wakeup.dat" using 1:3:4:5:(0.3):xtic(2) with boxerrorbars lc rgb "#6a9a58" notitle
} else { eval empty_panel(t) }

unset multiplot
set print "-"
print outfile
