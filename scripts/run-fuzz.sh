#!/usr/bin/env bash
# Run one libFuzzer target for a bounded time. New inputs go to a throw-away
# directory; the committed seed corpus is only read.
set -euo pipefail
bin=$1; seconds=$2; seeds=$3
if [ ! -x "$bin" ]; then
  echo "run-fuzz: $bin is not built (make fuzz builds it with clang)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$seeds"
"$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "$work" "$seeds"
