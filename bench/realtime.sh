#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/realtime.sh: the real-time feed (issue 10) on a real 2-region cluster, loopback
# (bench/realtime_probe.mjs does the work):
#  1. change events delivered per second by one node to --subs subscribers of one table (default 1,000);
#  2. write-to-event latency p50/p99, a write in the subscriber's region and in the other one
#     (--wan deployment/regions.json: the other region behind its emulated one-way delay);
#  3. memory per idle subscriber with --idle connections (default 10,000; needs ulimit -n above it).
# Prints RESULT lines, never pass/fail:
#   RESULT name=realtime_fanout subscribers=... deliveries_per_s=... client_counted=... expected=...
#   RESULT name=realtime_latency writer=local|remote p50_ms=... p99_ms=...
#   RESULT name=realtime_idle connections=... bytes_per_subscriber=...
# --trace FILE: the nodes record each change's hops there and TRACE lines give each hop's p50/p99
# (local: req commit feed loop written arrived; remote adds peer_queued peer_sent rx apply applied).
#
# Usage: bench/realtime.sh [--subs N] [--duration SEC] [--idle N] [--wan FILE] [--build DIR] [--trace FILE]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
SUBS=1000
DURATION=10
IDLE=10000
WAN=
TRACE=
while [[ $# -gt 0 ]]; do
    case "$1" in
    --subs) SUBS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --idle) IDLE=$2; shift 2 ;;
    --wan) WAN=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --trace) TRACE=$2; shift 2 ;;
    -h | --help) sed -n '3,18p' "$0"; exit 0 ;;
    *) echo "realtime.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ "$SUBS" =~ ^[1-9][0-9]{0,4}$ ]] || { echo "realtime.sh: --subs must be 1..99999" >&2; exit 2; }
[[ "$IDLE" =~ ^[0-9]{1,5}$ ]] || { echo "realtime.sh: --idle must be 0..99999" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]?$ ]] || { echo "realtime.sh: --duration must be 1..99" >&2; exit 2; }
[[ "$BUILD" = /* ]] || BUILD=$ROOT/$BUILD
[[ -x "$BUILD/edgelite" ]] || { echo "realtime.sh: $BUILD/edgelite not built" >&2; exit 1; }
command -v node >/dev/null || { echo "realtime.sh: node (18+) is required" >&2; exit 1; }
# Both the node and the load generator hold one descriptor per connection.
need=$((IDLE + SUBS + 256))
if (( $(ulimit -n) < need )); then
    ulimit -n "$need" 2>/dev/null || { echo "realtime.sh: ulimit -n is $(ulimit -n), need $need (lower --idle)" >&2; exit 1; }
fi
[[ -z "$WAN" || "$WAN" = /* ]] || WAN=$ROOT/$WAN
[[ -z "$TRACE" || "$TRACE" = /* ]] || TRACE=$PWD/$TRACE
cd "$ROOT/tests/client"
EDGE_BIN=$BUILD/edgelite exec node "$ROOT/bench/realtime_probe.mjs" --subs="$SUBS" --duration="$DURATION" \
    --idle="$IDLE" ${WAN:+--wan="$WAN"} ${TRACE:+--trace="$TRACE"}
