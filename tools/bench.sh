#!/usr/bin/env bash
# Builds coproc's benchmark harness if needed and runs every benchmark side by side with its
# anchors (docs/performance.md explains the figures).
#
#   tools/bench.sh            the default run (about 5 minutes on 2 vCPUs; under 10)
#   tools/bench.sh --short    the tour's quick run (under a minute once built)
#   tools/bench.sh --only start_join,wakeup --rounds 3    any coproc-bench option passes through
#
# The table goes to the terminal; the CSV files, the table and the plot go to
# build/bench-results/ (set COPROC_BENCH_RESULTS to put them elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh

builddir=${COPROC_BENCH_BUILDDIR:-build}
results=${COPROC_BENCH_RESULTS:-$builddir/bench-results}

if [ ! -d "$builddir/meson-private" ]; then
  meson setup "$builddir" >/dev/null
fi

# An existing build folder may have the harness switched off, or sanitizers on (which would
# measure the sanitizers): say so rather than publish such figures silently.
option() {
  meson introspect --buildoptions "$builddir" |
    python3 -c 'import json,sys; print(next((str(o["value"]) for o in json.load(sys.stdin) if o["name"] == sys.argv[1]), ""))' "$1"
}
if [ "$(option bench)" != "True" ]; then
  meson configure "$builddir" -Dbench=true >/dev/null
fi
sanitize=$(option b_sanitize)
if [ -n "$sanitize" ] && [ "$sanitize" != none ]; then
  echo "coproc bench: warning: $builddir is built with -Db_sanitize=$sanitize; the figures measure the sanitizer too" >&2
fi
buildtype=$(option buildtype)
case "$buildtype" in
  release | debugoptimized | plain) ;;
  *) echo "coproc bench: warning: $builddir is a '$buildtype' build; the figures are unoptimised" >&2 ;;
esac

if ! log=$(meson compile -C "$builddir" coproc-bench bench-noop coproc-probe 2>&1); then
  echo "$log" >&2
  exit 1
fi
exec "$builddir/bench/coproc-bench" --results "$results" "$@"
