#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/crdt_http.sh: G-Counter increments through POST /v1/crdt/bench on a real
# `edgelite serve` (closed loop, build/bench/loadgen) against Redis INCR
# (redis-benchmark), both on this machine and loopback, each measured RUNS times;
# prints the medians and their ratio as one machine line:
#   RESULT name=crdt_http_incr rps=... redis_incr_rps=... ratio=...
# (ratio = edgelite rps / redis rps). Everything it starts runs from a private temp
# dir on free ports and is killed on exit.
#
# Usage: bench/crdt_http.sh [--runs N] [--duration SEC] [--conns N] [--build DIR]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=3
DURATION=10
CONNS=64
REDIS_N=200000

while [[ $# -gt 0 ]]; do
    case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    -h | --help) sed -n '3,12p' "$0"; exit 0 ;;
    *) echo "crdt_http.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9]$ ]] || { echo "crdt_http.sh: --runs must be 1..9" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]?$ ]] || { echo "crdt_http.sh: --duration must be 1..99" >&2; exit 2; }
[[ "$BUILD" = /* ]] || BUILD=$ROOT/$BUILD

LOADGEN=$BUILD/bench/loadgen
EDGELITE=$BUILD/edgelite
for f in "$LOADGEN" "$EDGELITE"; do
    [[ -x "$f" ]] || { echo "crdt_http.sh: $f not built" >&2; exit 1; }
done
for f in redis-server redis-cli redis-benchmark; do
    command -v "$f" >/dev/null || { echo "crdt_http.sh: $f missing (scripts/bootstrap.sh installs it)" >&2; exit 1; }
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup edgelite-crdtbench

log() { printf '== %s\n' "$*" >&2; }

# ---- edgelite ----
EPORT=$(free_port)
mkdir -p "$TMP/data"
"$EDGELITE" serve --listen "127.0.0.1:$EPORT" --data "$TMP/data" --region bench >"$TMP/edgelite.log" 2>&1 &
PIDS+=($!)
ready=0
for _ in $(seq 150); do
    kill -0 "${PIDS[0]}" 2>/dev/null || break
    if grep -q 'edgelite: listening on' "$TMP/edgelite.log"; then ready=1; break; fi
    sleep 0.1
done
[[ $ready == 1 ]] || { cat "$TMP/edgelite.log" >&2; echo "crdt_http.sh: edgelite did not start" >&2; exit 1; }

BODY='{"type":"g-counter","op":"increment","amount":1}'
URL="http://127.0.0.1:$EPORT/v1/crdt/bench"
: >"$TMP/edge.rps"
for i in $(seq "$RUNS"); do
    log "edgelite run $i/$RUNS"
    "$LOADGEN" --name crdt_http_incr -c "$CONNS" -d "$DURATION" --url "$URL" -m POST --body "$BODY" \
        --fail-on '"error"' >"$TMP/edge.$i.out" 2>&1 || true
    cat "$TMP/edge.$i.out" >&2
    line=$(grep '^RESULT ' "$TMP/edge.$i.out" || true)
    [[ -n "$line" ]] || { echo "crdt_http.sh: loadgen printed no RESULT" >&2; exit 1; }
    sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line" >>"$TMP/edge.rps"
    acked=$((${acked:-0} + $(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")))
done
# Every acknowledged increment must be in the counter.
final=$(curl -s "$URL" | python3 -c 'import json, sys; print(json.load(sys.stdin)["value"])')
log "edgelite counter after the runs: $final (acknowledged in measured windows: $acked)"
[[ "$final" -ge "$acked" ]] || { echo "crdt_http.sh: acknowledged increments are missing" >&2; exit 1; }

# ---- redis ----
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
ready=0
for _ in $(seq 150); do
    kill -0 "${PIDS[1]}" 2>/dev/null || break
    if [[ "$(timeout 2 redis-cli -p "$RPORT" ping 2>/dev/null)" == PONG ]]; then ready=1; break; fi
    sleep 0.1
done
[[ $ready == 1 ]] || { cat "$TMP/redis.log" >&2; echo "crdt_http.sh: redis-server did not start" >&2; exit 1; }
: >"$TMP/redis.rps"
for i in $(seq "$RUNS"); do
    log "redis run $i/$RUNS"
    out=$(timeout 120 redis-benchmark -p "$RPORT" -t incr -c "$CONNS" -n "$REDIS_N" -q 2>&1 | tr '\r' '\n' | grep 'INCR:' | tail -n1)
    echo "$out" >&2
    rps=$(sed -n 's/.*INCR: \([0-9.]*\) requests per second.*/\1/p' <<<"$out")
    [[ -n "$rps" ]] || { echo "crdt_http.sh: no redis-benchmark figure" >&2; exit 1; }
    echo "$rps" >>"$TMP/redis.rps"
done

E=$(median <"$TMP/edge.rps")
R=$(median <"$TMP/redis.rps")
RATIO=$(python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.3f' % (a / b) if b > 0 else 'n/a')" "$E" "$R")
echo "RESULT name=crdt_http_incr rps=$E redis_incr_rps=$R ratio=$RATIO runs=$RUNS conns=$CONNS duration_s=$DURATION"
