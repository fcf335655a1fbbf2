#!/usr/bin/env bash
# Builds test/consumer as a project of its own with coproc as its subproject, and checks that
# coproc contributes exactly its library to the build (its tests, examples and benchmarks are
# built only when coproc is the main project), then runs the consumer.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cp "$repo/test/consumer/meson.build" "$repo/test/consumer/main.cpp" "$work/"
# The working tree's tracked files, as a user's subprojects/coproc would hold them.
mkdir -p "$work/subprojects/coproc"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
  xargs -0 cp --parents -t "$work/subprojects/coproc/")

meson setup "$work/build" "$work" >/dev/null
targets=$(meson introspect --targets "$work/build" |
  python3 -c 'import json,sys; print("\n".join(sorted(t["name"] + ":" + t["type"] for t in json.load(sys.stdin) if t.get("subproject") == "coproc")))')
echo "coproc's targets in the consumer's build:"
echo "$targets" | sed 's/^/  /'
expected="coproc:shared library"
if [ "$(echo "$targets" | grep -v ':custom$')" != "$expected" ]; then
  echo "consumer check: coproc built more than its library as a subproject" >&2
  exit 1
fi
meson compile -C "$work/build" >/dev/null
"$work/build/consumer"
echo "consumer check: built and ran a project that uses coproc as a subproject"
