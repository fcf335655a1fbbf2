#!/usr/bin/env bash
# Builds coproc and runs every test suite, on both sentinels (pidfd, and the pipe fallback);
# in the plain build, the process and async suites again under spawn and forkserver.
#
#   tools/test.sh                        the README's test command (build/ , -Dwerror=true)
#   tools/test.sh --sanitize=address,undefined
#   tools/test.sh --sanitize=thread      each sanitizer gets its own build folder
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=none
for arg in "$@"; do
  case "$arg" in
    --sanitize=*) sanitize="${arg#--sanitize=}" ;;
    *) echo "usage: tools/test.sh [--sanitize=address,undefined|thread]" >&2; exit 2 ;;
  esac
done

tools/setup.sh

builddir=build
[ "$sanitize" != none ] && builddir="build-${sanitize//,/-}"

opts=(-Dwerror=true -Db_sanitize="$sanitize" -Dtests=enabled)
if [ "$sanitize" != none ]; then
  # The undefined-behaviour sanitizer's vptr check is kept; the library's own descriptor
  # exhaustion tests are written to leave it a descriptor.
  opts+=(-Db_lundef=false)
fi
if [ -d "$builddir/meson-private" ]; then
  meson configure "$builddir" "${opts[@]}" >/dev/null
else
  meson setup "$builddir" "${opts[@]}" >/dev/null
fi
meson compile -C "$builddir"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:die_after_fork=0}"

echo "== tests on the pidfd sentinel ($builddir)"
meson test -C "$builddir" --print-errorlogs --num-processes 2
echo "== tests on the pipe sentinel ($builddir)"
meson test -C "$builddir" --setup=nopidfd --print-errorlogs --num-processes 2
if [ "$sanitize" = none ]; then
  # The process and async suites again with spawn and forkserver as the default start method,
  # on both sentinels (test/meson.build). The plain build only: the sanitizer passes run the
  # other methods through the tests that choose them explicitly.
  for setup in spawn forkserver spawn_nopidfd forkserver_nopidfd; do
    echo "== the process and async suites under the $setup setup ($builddir)"
    meson test -C "$builddir" --setup="$setup" --print-errorlogs --num-processes 2
  done
fi
if [ "$sanitize" = none ]; then
  echo "== a project that uses coproc as a Meson subproject gets the library only"
  test/consumer/check.sh
fi
echo "== all tests passed ($builddir)"
