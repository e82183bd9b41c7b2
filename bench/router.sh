#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/router.sh: the query router's figures (issue 12): point reads through `edgelite router` vs
# straight to a region, the router's added latency p50/p99, a cached vs uncached 100-row aggregate,
# and fail-over time after a region is SIGKILLed. Prints RESULT lines; never pass/fail.
# Usage: bench/router.sh [--build DIR] [--seconds S] [--conc N]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SECONDS_EACH=4
CONC=16
while [[ $# -gt 0 ]]; do
    case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --conc) CONC=$2; shift 2 ;;
    -h | --help) sed -n '3,6p' "$0"; exit 0 ;;
    *) echo "router.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ "$BUILD" = /* ]] || BUILD=$ROOT/$BUILD
[[ -x "$BUILD/edgelite" ]] || { echo "router.sh: $BUILD/edgelite not built" >&2; exit 1; }
cd "$ROOT/tests/client"
EDGE_BIN="$BUILD/edgelite" ROUTER_BENCH_SECONDS="$SECONDS_EACH" ROUTER_BENCH_CONC="$CONC" \
    exec node "$ROOT/bench/router_probe.mjs"
