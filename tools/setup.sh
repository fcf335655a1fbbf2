#!/usr/bin/env bash
# Installs what coproc needs from Debian bookworm's packages, when it is missing.
# Safe to run again: it installs nothing that is already there.
#
#   tools/setup.sh          what building, testing and the tour need
#   tools/setup.sh --fuzz   also clang and its sanitizer runtimes (tools/fuzz.sh)
set -euo pipefail

packages=(
  g++ pkg-config meson ninja-build python3
  libboost1.81-dev libboost-test1.81-dev   # Asio, Process v2, Test
  libboost-json1.81-dev                    # typed messages (JSON)
  libssl-dev                               # the authentication handshake (HMAC, RAND_bytes)
  gnuplot-nox                              # the benchmark plot
)
if [ "${1:-}" = "--fuzz" ]; then
  packages+=(clang-14 libclang-rt-14-dev)  # libFuzzer, ASan, UBSan for clang
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "coproc setup: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
