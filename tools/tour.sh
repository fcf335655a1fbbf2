#!/usr/bin/env bash
# The tour: builds coproc, runs the examples, then a short benchmark table.
set -euo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh
if [ -d build/meson-private ]; then
  meson configure build -Dexamples=true -Dbench=true >/dev/null
else
  meson setup build -Dexamples=true -Dbench=true >/dev/null
fi
meson compile -C build >/dev/null

section() { printf '\n== %s\n' "$*"; }

section "The blocking API (examples/blocking.cpp)"
build/examples/blocking

if [ -x build/examples/async_server ]; then
  section "An async server isolating jobs in pool workers, behind deadlines (examples/async_server.cpp)"
  build/examples/async_server --demo
fi

if [ -x build/examples/pool_tour ]; then
  section "Python's Pool, and a pool that survives its workers (examples/pool_tour.cpp)"
  build/examples/pool_tour
fi

if [ -x build/examples/two_languages ]; then
  section "C++ and Python over one authenticated connection (examples/two_languages.cpp, .py)"
  build/examples/two_languages
fi

if [ -x tools/bench.sh ]; then
  section "A short benchmark, side by side with its anchors (tools/bench.sh --short)"
  tools/bench.sh --short
fi
