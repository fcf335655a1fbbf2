#!/usr/bin/env bash
# Builds coproc's libFuzzer targets with clang (Debian's clang-14, AddressSanitizer and
# UndefinedBehaviorSanitizer on) and runs each for a bounded time on its corpus in
# test/fuzz/corpus/. New inputs that reach new code are added to a scratch corpus, not to the
# repository's (copy them over by hand when they are worth keeping).
#
#   tools/fuzz.sh                 30 s per target (CI's run)
#   tools/fuzz.sh --seconds 600   longer
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=30
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    *) echo "usage: tools/fuzz.sh [--seconds N]" >&2; exit 2 ;;
  esac
done

tools/setup.sh --fuzz

cxx=clang++-14
out=build-fuzz
mkdir -p "$out"
flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -DCOPROC_BUILDING -D_GNU_SOURCE -Ilib -Iinclude)

build() {  # name, sources...
  local name=$1; shift
  "$cxx" "${flags[@]}" "$@" -lcrypto -o "$out/$name"
}
build frame_reader_fuzz test/fuzz/frame_reader_fuzz.cpp lib/connection/framing.cpp
build handshake_fuzz test/fuzz/handshake_fuzz.cpp lib/connection/auth.cpp

run() {  # name, corpus
  local scratch="$out/corpus-$1"
  mkdir -p "$scratch"
  echo "== fuzzing $1 for ${seconds}s (corpus test/fuzz/corpus/$2)"
  # -malloc_limit_mb: an allocation of an announced length that the input cannot back fails
  # the run; -rss_limit_mb likewise for the whole process.
  "$out/$1" -max_total_time="$seconds" -malloc_limit_mb=64 -rss_limit_mb=512 -timeout=10 \
    -print_final_stats=1 "$scratch" "test/fuzz/corpus/$2" 2>&1 | tail -n 12
}
run frame_reader_fuzz frames
run handshake_fuzz handshake
echo "== fuzzing found nothing"
