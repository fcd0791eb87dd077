#!/usr/bin/env bash
# Runs a libFuzzer target over its checked-in corpus for a bounded time (seconds, default 20).
# New inputs go to a scratch folder so the checked-in corpus only changes on purpose.
set -euo pipefail
bin=$(realpath -m "$1")
seconds=${2:-20}
name=$(basename "$bin")
root=$(cd "$(dirname "$0")/.." && pwd)
corpus="$root/tests/fuzz/${name#fuzz_}_corpus"
if [ ! -x "$bin" ]; then
  echo "run-fuzz: $bin is not built (run 'make fuzz')" >&2
  exit 1
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
"$bin" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 "$scratch" "$corpus"
