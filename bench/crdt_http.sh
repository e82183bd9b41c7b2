#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/crdt_http.sh: G-Counter increments through POST /v1/crdt/bench on a real
# `edgelite serve` (closed loop, build/bench/loadgen) against Redis INCR
# (redis-benchmark) with comparable durability (appendonly yes, appendfsync everysec;
# edgelite commits in WAL mode with synchronous=normal), both on this machine and
# loopback, each measured RUNS times; prints the medians and their ratio:
#   RESULT name=crdt_http_incr rps=... redis_incr_rps=... ratio=... redis=aof-everysec
# Then a three-region cluster (replicated CRDTs and CRDT columns, docs/crdt.md):
#   RESULT name=crdt_repl_incr rps=... converge_ms=...   increments sent to all three
#     regions at once (CONNS/3 connections each), and the time from the end of the load
#     until the three regions answer the same value
#   RESULT name=crdt_column_update counter_rps=... plain_rps=... ratio=...
#     `UPDATE page_stats SET views = views + 1` on a pn-counter column against the same
#     statement on a plain INTEGER column (one region, CONNS connections)
# Everything it starts runs from a private temp dir on free ports and is killed on exit.
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
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec --daemonize no \
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
echo "RESULT name=crdt_http_incr rps=$E redis_incr_rps=$R ratio=$RATIO runs=$RUNS conns=$CONNS duration_s=$DURATION redis=aof-everysec"

# ---- three regions: replicated increments, CRDT columns ----
IDS=(a b c)
CPORTS=()
for i in 0 1 2; do CPORTS+=("$(free_port)"); done
{
    echo 'cluster: { name: crdtbench, secret: "crdt-bench-secret" }'
    echo 'regions:'
    for i in 0 1 2; do
        mkdir -p "$TMP/c${IDS[$i]}"
        echo "  - { id: ${IDS[$i]}, listen: \"127.0.0.1:${CPORTS[$i]}\", url: \"http://127.0.0.1:${CPORTS[$i]}\", data_dir: \"$TMP/c${IDS[$i]}\", priority: $((i + 1)) }"
    done
    echo 'replication: { consistency_level: eventual, sync_interval_ms: 200, crdt_columns: { page_stats.views: pn-counter } }'
} >"$TMP/cluster.yaml"
for i in 0 1 2; do
    "$EDGELITE" serve --config "$TMP/cluster.yaml" --region "${IDS[$i]}" --log-level warn >"$TMP/c${IDS[$i]}.log" 2>&1 &
    PIDS+=($!)
done
for i in 0 1 2; do
    for _ in $(seq 150); do grep -q 'edgelite: listening on' "$TMP/c${IDS[$i]}.log" && break; sleep 0.1; done
    grep -q 'edgelite: listening on' "$TMP/c${IDS[$i]}.log" || { cat "$TMP/c${IDS[$i]}.log" >&2; echo "crdt_http.sh: region ${IDS[$i]} did not start" >&2; exit 1; }
done
value_at() { curl -s "http://127.0.0.1:${CPORTS[$1]}/v1/crdt/rbench" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("value", -1))'; }
PER=$(( (CONNS + 2) / 3 ))
: >"$TMP/repl.rps"; : >"$TMP/repl.ms"
for r in $(seq "$RUNS"); do
    log "three regions, increments everywhere: run $r/$RUNS"
    for i in 0 1 2; do
        "$LOADGEN" --name crdt_repl_incr -q -c "$PER" -d "$DURATION" --url "http://127.0.0.1:${CPORTS[$i]}/v1/crdt/rbench" \
            -m POST --body "$BODY" --fail-on '"error"' >"$TMP/repl.$r.$i" 2>&1 &
        LG[$i]=$!
    done
    for i in 0 1 2; do wait "${LG[$i]}" || true; done
    t0=$(date +%s%N)
    sum=0
    for i in 0 1 2; do
        x=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' "$TMP/repl.$r.$i")
        [[ -n "$x" ]] || { cat "$TMP/repl.$r.$i" >&2; echo "crdt_http.sh: no result from region ${IDS[$i]}" >&2; exit 1; }
        sum=$(python3 -c "print(float('$sum') + float('$x'))")
    done
    echo "$sum" >>"$TMP/repl.rps"
    ms=timeout
    for _ in $(seq 3000); do
        va=$(value_at 0); vb=$(value_at 1); vc=$(value_at 2)
        if [[ "$va" == "$vb" && "$vb" == "$vc" && "$va" != -1 ]]; then ms=$(( ($(date +%s%N) - t0) / 1000000 )); break; fi
        sleep 0.01
    done
    log "increments/s over three regions: $sum; converged after ${ms} ms at $va"
    echo "$ms" >>"$TMP/repl.ms"
done
RR=$(median <"$TMP/repl.rps")
RM=$(median <"$TMP/repl.ms" 2>/dev/null || echo timeout)
echo "RESULT name=crdt_repl_incr rps=$RR converge_ms=$RM regions=3 conns=$((PER * 3)) runs=$RUNS duration_s=$DURATION"

A="http://127.0.0.1:${CPORTS[0]}/v2/pipeline"
pipe() { printf '{"requests":[{"type":"execute","stmt":{"sql":"%s"}},{"type":"close"}]}' "$1"; }
curl -s -X POST "$A" -H 'content-type: application/json' \
    -d "$(pipe 'CREATE TABLE IF NOT EXISTS page_stats (id INTEGER PRIMARY KEY, views INTEGER NOT NULL DEFAULT 0, plain INTEGER NOT NULL DEFAULT 0)')" >/dev/null
curl -s -X POST "$A" -H 'content-type: application/json' -d "$(pipe 'INSERT OR IGNORE INTO page_stats (id) VALUES (1)')" >/dev/null
: >"$TMP/col.counter"; : >"$TMP/col.plain"
for r in $(seq "$RUNS"); do
    for kind in counter plain; do
        col=views; [[ $kind == plain ]] && col=plain
        log "UPDATE page_stats SET $col = $col + 1 ($kind column): run $r/$RUNS"
        "$LOADGEN" --name "crdt_column_$kind" -q -c "$CONNS" -d "$DURATION" --url "$A" -m POST \
            --body "$(pipe "UPDATE page_stats SET $col = $col + 1 WHERE id = 1")" --fail-on '"type":"error"' >"$TMP/col.$r.$kind" 2>&1 || true
        x=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' "$TMP/col.$r.$kind")
        [[ -n "$x" ]] || { cat "$TMP/col.$r.$kind" >&2; echo "crdt_http.sh: no result for the $kind column" >&2; exit 1; }
        echo "$x" >>"$TMP/col.$kind"
    done
done
CC=$(median <"$TMP/col.counter")
CP=$(median <"$TMP/col.plain")
CR=$(python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.3f' % (a / b) if b > 0 else 'n/a')" "$CC" "$CP")
echo "RESULT name=crdt_column_update counter_rps=$CC plain_rps=$CP ratio=$CR runs=$RUNS conns=$CONNS duration_s=$DURATION"
