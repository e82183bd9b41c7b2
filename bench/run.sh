#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/run.sh: the `make bench` driver. Measures, in one run on this machine,
# nginx answering a fixed 200 (the loopback HTTP ceiling), edgelite point reads
# and 100-read batches through POST /v2/pipeline, the same point reads through
# POST /v3-protobuf/pipeline, and the lead's in-process
# benchmarks, then writes bench/RESULTS.md with medians, ratios and targets.
#
# Everything it starts (nginx, edgelite) runs from a private temp dir with its
# own pid/log files and a free loopback port, and is killed on exit. A system
# nginx, if any, is left alone.
#
# Usage: bench/run.sh [--runs N] [--duration SEC] [--warmup SEC] [--conns N]
#                     [--threads T] [--build DIR] [--out FILE]
# Environment: BENCH_QUICK=1 (1 run of 3 s), BUILD, BENCH_THREADS,
#              EDGE_AUTH_TOKEN (sent as a bearer token to edgelite).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=3
DURATION=10
WARMUP=2
CONNS=64
THREADS=${BENCH_THREADS:-1}
OUT=$ROOT/bench/RESULTS.md
ROWS=100000
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
    RUNS=1
    DURATION=3
    WARMUP=1
fi

while [[ $# -gt 0 ]]; do
    case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '3,16p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]?$ ]] || { echo "run.sh: --runs must be 1..99" >&2; exit 2; }
[[ "$BUILD" = /* ]] || BUILD=$ROOT/$BUILD

LOADGEN=$BUILD/bench/loadgen
EDGELITE=$BUILD/edgelite
NGINX=/usr/sbin/nginx

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup edgelite-bench

log() { printf '== %s\n' "$*" >&2; }


# wait_http PORT PID: succeed once anything answers HTTP on PORT (up to 15 s),
# fail early if PID dies.
wait_http() {
    local port=$1 pid=$2 code
    for _ in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || return 1
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/" || true)
        [[ "$code" != 000 && -n "$code" ]] && return 0
        sleep 0.1
    done
    return 1
}

field() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2" | head -n1; }

# run_load NAME LOADGEN-ARGS...: RUNS runs of loadgen; keeps every RESULT line
# in $TMP/res/NAME and prints the median run's line (by rps) on stdout.
run_load() {
    local name=$1 i line
    shift
    mkdir -p "$TMP/res"
    : >"$TMP/res/$name"
    for i in $(seq "$RUNS"); do
        log "$name run $i/$RUNS"
        if "$LOADGEN" --name "$name" -c "$CONNS" --threads "$THREADS" -d "$DURATION" \
            --warmup "$WARMUP" "$@" >"$TMP/res/$name.$i.out" 2>&1; then :; fi
        cat "$TMP/res/$name.$i.out" >&2
        line=$(grep '^RESULT ' "$TMP/res/$name.$i.out" || true)
        [[ -n "$line" ]] && echo "$line" >>"$TMP/res/$name"
    done
    [[ -s "$TMP/res/$name" ]] || return 1
    # Median by rps; with an even count, the lower middle.
    local n
    n=$(wc -l <"$TMP/res/$name")
    while read -r line; do echo "$(field rps "$line") $line"; done <"$TMP/res/$name" |
        sort -n -k1,1 | sed -n "$(((n + 1) / 2))p" | cut -d' ' -f2-
}

ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.2f' % (a / b) if b > 0 else 'n/a')" "$1" "$2"; }
ge() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= float(sys.argv[2]) else 1)" "$1" "$2"; }

[[ -x "$LOADGEN" ]] || { echo "run.sh: $LOADGEN not built (run make build)" >&2; exit 1; }
"$LOADGEN" --self-test >&2 || { echo "run.sh: loadgen self-test failed" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Request bodies: random ids, generated once so every server sees the same load.
python3 - "$TMP" "$ROWS" <<'EOF'
import json, random, sys
tmp, rows = sys.argv[1], int(sys.argv[2])
rnd = random.Random(20240601)
def point(i):
    return {"type": "execute", "stmt": {"sql": "SELECT v FROM kv WHERE id = ?",
            "args": [{"type": "integer", "value": str(i)}]}}
# The same point read in Hrana 3's protobuf encoding (src/api/hrana/hrana.proto), one hex line each.
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out
def ld(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload
def point_pb(i):
    value = varint(2 << 3) + varint((i << 1) ^ (i >> 63))         # Value.integer, sint64
    stmt = ld(1, b"SELECT v FROM kv WHERE id = ?") + ld(3, value)  # Stmt.sql, Stmt.args
    return ld(2, ld(2, ld(1, stmt))) + ld(2, ld(1, b""))           # requests: execute, close
with open(tmp + "/points.jsonl", "w") as f, open(tmp + "/points.pbhex", "w") as fp:
    for _ in range(10000):
        i = rnd.randint(1, rows)
        f.write(json.dumps({"requests": [point(i), {"type": "close"}]},
                           separators=(",", ":")) + "\n")
        fp.write(point_pb(i).hex() + "\n")
with open(tmp + "/batch.jsonl", "w") as f:
    for _ in range(1000):
        steps = [{"stmt": {"sql": "SELECT v FROM kv WHERE id = ?",
                           "args": [{"type": "integer", "value": str(rnd.randint(1, rows))}]}}
                 for _ in range(100)]
        f.write(json.dumps({"requests": [{"type": "batch", "batch": {"steps": steps}},
                                         {"type": "close"}]}, separators=(",", ":")) + "\n")
# Loading: BEGIN, 2,000 inserts, COMMIT per request, each step conditional on the previous.
per = 2000
for k in range(rows // per):
    steps = [{"stmt": {"sql": "BEGIN"}}]
    for i in range(k * per + 1, (k + 1) * per + 1):
        steps.append({"condition": {"type": "ok", "step": len(steps) - 1},
                      "stmt": {"sql": "INSERT INTO kv(id, v) VALUES (?, ?)",
                               "args": [{"type": "integer", "value": str(i)},
                                        {"type": "text", "value": "value-%d" % i}]}})
    steps.append({"condition": {"type": "ok", "step": len(steps) - 1}, "stmt": {"sql": "COMMIT"}})
    with open("%s/load.%03d.json" % (tmp, k), "w") as f:
        json.dump({"requests": [{"type": "batch", "batch": {"steps": steps}}, {"type": "close"}]}, f,
                  separators=(",", ":"))
EOF

NGINX_LINE=""
NGINX_NOTE=""
EDGE_POINT_LINE=""
EDGE_POINT_PB_LINE=""
EDGE_BATCH_LINE=""
EDGE_NOTE=""
INPROC_LINES=""
INPROC_NOTE=""
CRDT_LINES=""
CRDT_NOTE=""

# ---------------------------------------------------------------------------
# 1. nginx: the same POST bodies, answered with a fixed 200.
if [[ -x "$NGINX" ]]; then
    if pgrep -x nginx >/dev/null 2>&1; then
        NGINX_NOTE="another nginx was already running; it was left alone (this run used its own prefix and port)."
    fi
    NPORT=$(free_port)
    NDIR=$TMP/nginx
    mkdir -p "$NDIR/logs"
    cat >"$NDIR/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $NDIR/nginx.pid;
error_log $NDIR/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $NDIR/body;
    proxy_temp_path $NDIR/proxy;
    fastcgi_temp_path $NDIR/fastcgi;
    uwsgi_temp_path $NDIR/uwsgi;
    scgi_temp_path $NDIR/scgi;
    default_type application/json;
    server {
        listen 127.0.0.1:$NPORT;
        location / { return 200 '{"ok":true}'; }
    }
}
EOF
    "$NGINX" -p "$NDIR" -c "$NDIR/nginx.conf" >"$NDIR/stdout.log" 2>&1 &
    NPID=$!
    PIDS+=("$NPID")
    if wait_http "$NPORT" "$NPID"; then
        log "nginx on 127.0.0.1:$NPORT (pid $NPID)"
        NGINX_LINE=$(run_load nginx --url "http://127.0.0.1:$NPORT/v2/pipeline" \
            --bodies-file "$TMP/points.jsonl" -H "Content-Type: application/json" || true)
        [[ -n "$NGINX_LINE" ]] || NGINX_NOTE="nginx load runs produced no result."
    else
        NGINX_NOTE="nginx did not start: $(tail -n 3 "$NDIR/error.log" "$NDIR/stdout.log" 2>/dev/null | tr '\n' ' ')"
    fi
    kill -TERM "$NPID" 2>/dev/null || true
    wait "$NPID" 2>/dev/null || true
else
    NGINX_NOTE="$NGINX not found (scripts/bootstrap.sh installs nginx-light); ceiling not measured."
fi
[[ -z "$NGINX_NOTE" ]] || log "$NGINX_NOTE"

# ---------------------------------------------------------------------------
# 2. edgelite serve: load 100,000 rows, then point reads and 100-read batches.
AUTH=()
[[ -n "${EDGE_AUTH_TOKEN:-}" ]] && AUTH=(-H "Authorization: Bearer $EDGE_AUTH_TOKEN")

pipeline() { # pipeline FILE -> response body on stdout; fails on non-200
    curl -sS -m 120 --fail-with-body -X POST -H 'Content-Type: application/json' \
        ${AUTH[@]+"${AUTH[@]}"} --data-binary "@$1" "http://127.0.0.1:$EPORT/v2/pipeline"
}

edge_section() {
    if [[ ! -x "$EDGELITE" ]]; then
        EDGE_NOTE="$EDGELITE not built; edgelite figures skipped."
        return 1
    fi
    EPORT=$(free_port)
    mkdir -p "$TMP/data"
    "$EDGELITE" serve --listen "127.0.0.1:$EPORT" --data "$TMP/data" >"$TMP/edgelite.log" 2>&1 &
    EPID=$!
    PIDS+=("$EPID")
    if ! wait_http "$EPORT" "$EPID"; then
        EDGE_NOTE="edgelite serve is not available yet (it did not answer HTTP on 127.0.0.1:$EPORT): $(tail -n 2 "$TMP/edgelite.log" | tr '\n' ' ')"
        return 1
    fi
    log "edgelite on 127.0.0.1:$EPORT (pid $EPID); loading $ROWS rows"
    printf '%s' '{"requests":[{"type":"execute","stmt":{"sql":"CREATE TABLE IF NOT EXISTS kv(id INTEGER PRIMARY KEY, v TEXT)"}},{"type":"close"}]}' >"$TMP/create.json"
    local resp f
    if ! resp=$(pipeline "$TMP/create.json") || grep -q '"type":"error"' <<<"$resp"; then
        EDGE_NOTE="CREATE TABLE failed: ${resp:0:300}"
        return 1
    fi
    for f in "$TMP"/load.*.json; do
        if ! resp=$(pipeline "$f") || grep -q '"type":"error"\|"message"' <<<"$resp"; then
            EDGE_NOTE="loading rows failed ($(basename "$f")): ${resp:0:300}"
            return 1
        fi
    done
    printf '%s' '{"requests":[{"type":"execute","stmt":{"sql":"SELECT count(*) FROM kv"}},{"type":"close"}]}' >"$TMP/count.json"
    resp=$(pipeline "$TMP/count.json" || true)
    local count
    count=$(python3 -c 'import json, sys
try:
    r = json.loads(sys.stdin.read())["results"][0]["response"]["result"]["rows"][0][0]
    print(r["value"] if isinstance(r, dict) else r)
except Exception:
    print("?")' <<<"$resp")
    if [[ "$count" != "$ROWS" ]]; then
        EDGE_NOTE="expected $ROWS rows after loading, server says '$count': ${resp:0:300}"
        return 1
    fi
    # One request of each kind by hand, so a wrong answer is caught before it is timed.
    head -n1 "$TMP/points.jsonl" >"$TMP/one_point.json"
    resp=$(pipeline "$TMP/one_point.json" || true)
    if ! grep -q '"value-[0-9]*"' <<<"$resp"; then
        EDGE_NOTE="a point read did not return its row: ${resp:0:300}"
        return 1
    fi
    head -n1 "$TMP/batch.jsonl" >"$TMP/one_batch.json"
    resp=$(pipeline "$TMP/one_batch.json" || true)
    if [[ $(grep -o '"value-[0-9]*"' <<<"$resp" | wc -l) -ne 100 ]]; then
        EDGE_NOTE="a 100-read batch did not return 100 rows: ${resp:0:300}"
        return 1
    fi
    EDGE_POINT_LINE=$(run_load edgelite_point --url "http://127.0.0.1:$EPORT/v2/pipeline" \
        --bodies-file "$TMP/points.jsonl" -H "Content-Type: application/json" ${AUTH[@]+"${AUTH[@]}"} \
        --fail-on '"type":"error"' || true)
    # The same point reads over Hrana 3 protobuf; one by hand first, as above.
    python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(open(sys.argv[1]).readline().strip()))' \
        "$TMP/points.pbhex" >"$TMP/one_point.pb"
    if curl -sS -m 30 --fail-with-body -X POST -H 'Content-Type: application/x-protobuf' ${AUTH[@]+"${AUTH[@]}"} \
        --data-binary "@$TMP/one_point.pb" "http://127.0.0.1:$EPORT/v3-protobuf/pipeline" | grep -aq 'value-[0-9]'; then
        EDGE_POINT_PB_LINE=$(run_load edgelite_point_pb --url "http://127.0.0.1:$EPORT/v3-protobuf/pipeline" \
            --bodies-file "$TMP/points.pbhex" --hex -H "Content-Type: application/x-protobuf" ${AUTH[@]+"${AUTH[@]}"} \
            --fail-on 'SQL' || true)
    else
        EDGE_NOTE="a protobuf point read (POST /v3-protobuf/pipeline) did not return its row; not measured."
    fi
    EDGE_BATCH_LINE=$(run_load edgelite_batch100 --url "http://127.0.0.1:$EPORT/v2/pipeline" \
        --bodies-file "$TMP/batch.jsonl" -H "Content-Type: application/json" ${AUTH[@]+"${AUTH[@]}"} \
        --fail-on '"type":"error"' --fail-on '"message"' || true)
    return 0
}
edge_section || true
[[ -z "$EDGE_NOTE" ]] || log "$EDGE_NOTE"
if [[ -n "${EPID:-}" ]]; then
    kill -TERM "$EPID" 2>/dev/null || true
    wait "$EPID" 2>/dev/null || true
fi

# ---------------------------------------------------------------------------
# 3. The lead's in-process benchmarks, if built; their RESULT lines are kept as-is.
run_bin() { # run_bin NAME -> RESULT lines on stdout
    local bin=$BUILD/bench/$1
    [[ -x "$bin" ]] || return 1
    log "$1"
    (cd "$TMP" && timeout 600 "$bin") >"$TMP/$1.out" 2>&1 || true
    cat "$TMP/$1.out" >&2
    grep '^RESULT ' "$TMP/$1.out" || true
}
INPROC_LINES=$(run_bin bench_inproc) || INPROC_NOTE="$BUILD/bench/bench_inproc not built; skipped."
CRDT_LINES=$(run_bin bench_crdt) || CRDT_NOTE="$BUILD/bench/bench_crdt not built; skipped."
if [[ -z "$INPROC_NOTE" && -z "$INPROC_LINES" ]]; then INPROC_NOTE="bench_inproc printed no RESULT line."; fi
if [[ -z "$CRDT_NOTE" && -z "$CRDT_LINES" ]]; then CRDT_NOTE="bench_crdt printed no RESULT line."; fi

# ---------------------------------------------------------------------------
# 4. bench/RESULTS.md
num() { python3 -c "import sys; print('{:,.0f}'.format(float(sys.argv[1])))" "$1"; }
errs() { # total of the failure counters of a RESULT line
    echo $(($(field errors "$1") + $(field non2xx "$1") + $(field app_errors "$1")))
}
row() { # row LABEL LINE FIGURE TARGET STATUS
    local line=$2
    if [[ -z "$line" ]]; then
        echo "| $1 | not measured | | | | | $4 | $5 |"
        return
    fi
    echo "| $1 | $3 | $(field p50_us "$line") | $(field p95_us "$line") | $(field p99_us "$line") | $(errs "$line") | $4 | $5 |"
}

NGINX_RPS=$( [[ -n "$NGINX_LINE" ]] && field rps "$NGINX_LINE" || echo 0)
POINT_FIG="" POINT_STATUS="not measured"
if [[ -n "$EDGE_POINT_LINE" ]]; then
    prps=$(field rps "$EDGE_POINT_LINE")
    POINT_FIG="$(num "$prps") req/s"
    if [[ "$NGINX_RPS" != 0 ]]; then
        r=$(ratio "$prps" "$NGINX_RPS")
        POINT_FIG="$POINT_FIG (${r}x nginx)"
        if [[ $(errs "$EDGE_POINT_LINE") -ne 0 ]]; then POINT_STATUS="not met (errors)"
        elif ge "$r" 0.8; then POINT_STATUS="met"; else POINT_STATUS="not met"; fi
    else
        POINT_STATUS="no nginx baseline"
    fi
fi
POINT_PB_FIG="" POINT_PB_STATUS="not measured"
if [[ -n "$EDGE_POINT_PB_LINE" ]]; then
    pbrps=$(field rps "$EDGE_POINT_PB_LINE")
    POINT_PB_FIG="$(num "$pbrps") req/s"
    [[ "$NGINX_RPS" != 0 ]] && POINT_PB_FIG="$POINT_PB_FIG ($(ratio "$pbrps" "$NGINX_RPS")x nginx)"
    [[ -n "$EDGE_POINT_LINE" ]] && POINT_PB_FIG="$POINT_PB_FIG, $(ratio "$pbrps" "$(field rps "$EDGE_POINT_LINE")")x JSON"
    if [[ $(errs "$EDGE_POINT_PB_LINE") -ne 0 ]]; then POINT_PB_STATUS="errors"; else POINT_PB_STATUS="measured"; fi
fi
BATCH_FIG="" BATCH_STATUS="not measured"
if [[ -n "$EDGE_BATCH_LINE" ]]; then
    brps=$(field rps "$EDGE_BATCH_LINE")
    sps=$(python3 -c "import sys; print(float(sys.argv[1]) * 100)" "$brps")
    BATCH_FIG="$(num "$sps") statements/s ($(num "$brps") req/s)"
    if [[ $(errs "$EDGE_BATCH_LINE") -ne 0 ]]; then BATCH_STATUS="not met (errors)"
    elif ge "$sps" 300000; then BATCH_STATUS="met"; else BATCH_STATUS="not met"; fi
fi
INPROC_STATUS="not measured"
INPROC_RATIO=$(field ratio "$(head -n1 <<<"$INPROC_LINES")")
if [[ -n "$INPROC_RATIO" ]]; then
    if ge "$INPROC_RATIO" 0.9; then INPROC_STATUS="met (${INPROC_RATIO}x)"; else INPROC_STATUS="not met (${INPROC_RATIO}x)"; fi
elif [[ -n "$INPROC_LINES" ]]; then
    INPROC_STATUS="see RESULT lines (no ratio= field)"
fi

CPU=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)
NGINX_VER=$("$NGINX" -v 2>&1 | sed 's/.*version: //' || echo "n/a")
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$ROOT" diff --quiet HEAD 2>/dev/null; then GIT_REV="$GIT_REV (with uncommitted changes)"; fi

{
    echo "# edgelite benchmark results"
    echo
    echo "Written by \`bench/run.sh\` (\`make bench\`); see docs/benchmarks.md for the method."
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "- Machine: $(nproc) CPUs, ${CPU:-unknown CPU}; kernel $(uname -r)"
    echo "- Source: edgelite $GIT_REV; nginx $NGINX_VER"
    echo "- Load: loadgen, $CONNS keep-alive connections, one request in flight each, $THREADS thread(s);"
    echo "  ${WARMUP} s warm-up then ${DURATION} s measured; median of $RUNS run(s) by throughput"
    echo "  (p50/p95/p99 are those of the median run). The load generator shares the CPUs with the server."
    echo
    echo "| Load | Throughput | p50 µs | p95 µs | p99 µs | errors | Target | Status |"
    echo "|---|---|---|---|---|---|---|---|"
    row "nginx, fixed 200 (HTTP ceiling)" "$NGINX_LINE" "$( [[ -n "$NGINX_LINE" ]] && num "$NGINX_RPS") req/s" "baseline" "-"
    row "edgelite point read, POST /v2/pipeline" "$EDGE_POINT_LINE" "$POINT_FIG" "≥ 0.8x nginx" "$POINT_STATUS"
    row "edgelite point read, POST /v3-protobuf/pipeline" "$EDGE_POINT_PB_LINE" "$POINT_PB_FIG" "reported" "$POINT_PB_STATUS"
    row "edgelite batch of 100 point reads" "$EDGE_BATCH_LINE" "$BATCH_FIG" "≥ 300,000 statements/s" "$BATCH_STATUS"
    echo
    echo "In-process point read, C API vs a bare prepared-statement loop (target ≥ 0.9x): $INPROC_STATUS"
    echo
    NOTES=$(printf '%s\n' "$NGINX_NOTE" "$EDGE_NOTE" "$INPROC_NOTE" "$CRDT_NOTE" | sed '/^$/d')
    if [[ -n "$NOTES" ]]; then
        echo "## Notes"
        echo
        sed 's/^/- /' <<<"$NOTES"
        echo
    fi
    echo "## Raw RESULT lines"
    echo
    echo '```'
    for n in nginx edgelite_point edgelite_point_pb edgelite_batch100; do
        [[ -s "$TMP/res/$n" ]] && cat "$TMP/res/$n"
    done
    [[ -n "$INPROC_LINES" ]] && echo "$INPROC_LINES"
    [[ -n "$CRDT_LINES" ]] && echo "$CRDT_LINES"
    echo '```'
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
# 5. CRDT increments over HTTP beside Redis INCR (issue 3).
if [[ -x "$EDGELITE" && -x "$ROOT/bench/crdt_http.sh" ]]; then
    CRDT_ALL=$("$ROOT/bench/crdt_http.sh" --build "$BUILD" --runs "$RUNS" 2>/dev/null || true)
    CRDT_HTTP=$(grep '^RESULT name=crdt_http_incr .*redis_incr_rps' <<<"$CRDT_ALL" | tail -n 1)
    CRDT_MORE=$(grep -E '^RESULT name=(crdt_repl_incr|crdt_column_update) ' <<<"$CRDT_ALL" || true)
    {
        echo
        echo "## CRDT increments over HTTP vs Redis INCR"
        echo
        echo "G-Counter \`POST /v1/crdt/bench\` (each increment durable, group-committed) against \`redis-benchmark -t incr\`"
        echo "(appendonly yes, appendfsync everysec), 64 connections each, same machine, median of $RUNS runs; then"
        echo "three regions: increments sent to all at once and the convergence time after the load, and a"
        echo "pn-counter column's \`UPDATE ... SET views = views + 1\` against the same on a plain column (docs/crdt.md):"
        echo
        echo '```'
        echo "${CRDT_HTTP:-crdt_http.sh produced no result}"
        [[ -n "$CRDT_MORE" ]] && echo "$CRDT_MORE"
        echo '```'
    } >>"$OUT"
fi
# 7. Sessions (issue 11): GET/PUT beside Redis GET/SET (AOF everysec), 1,000,000 live, migration cost.
if [[ -x "$EDGELITE" && -x "$ROOT/bench/sessions.sh" ]]; then
    SESS=$("$ROOT/bench/sessions.sh" --build "$BUILD" --runs "$RUNS" 2>/dev/null | grep '^RESULT name=sessions_' || true)
    {
        echo
        echo "## Sessions vs Redis"
        echo
        echo "bench/sessions.sh: \`GET\`/\`PUT /v1/sessions/{id}\` (1 KiB JSON, zstd + XChaCha20-Poly1305) against"
        echo "\`redis-benchmark -t get,set -d 1024\` with appendonly yes, appendfsync everysec; 64 connections, median of"
        echo "$RUNS runs; 1,000,000 live sessions; a migration under --emulate-wan (us-east-1 -> eu-central-1):"
        echo
        echo '```'
        echo "${SESS:-sessions.sh produced no result}"
        echo '```'
    } >>"$OUT"
fi
# 8. Real-time feed (issue 10): fan-out to 1,000 subscribers, write-to-event latency, memory per idle subscriber.
if [[ -x "$EDGELITE" && -x "$ROOT/bench/realtime.sh" ]]; then
    RT=$("$ROOT/bench/realtime.sh" --build "$BUILD" 2>/dev/null | grep '^RESULT name=realtime_' || true)
    {
        echo
        echo "## Real-time feed"
        echo
        echo "bench/realtime.sh: a 2-region cluster; change events delivered per second by one node to 1,000"
        echo "subscribers of one table, write-to-event latency (a write in the subscriber's region and in the other),"
        echo "RSS growth per idle subscriber with 10,000 connected (the load generator shares the machine):"
        echo
        echo '```'
        echo "${RT:-realtime.sh produced no result}"
        echo '```'
    } >>"$OUT"
fi
# 6. Replication (issue 4): bench/repl.sh appends its own section; its failure is logged, not fatal here.
if [[ -x "$EDGELITE" ]]; then
    "$ROOT/bench/repl.sh" --build "$BUILD" --out-append "$OUT" >/dev/null || log "bench/repl.sh failed (see above)"
fi
# 7. The query router (issue 12): bench/router.sh prints RESULT lines; appended as they are.
if [[ -x "$EDGELITE" && -x "$ROOT/bench/router.sh" ]]; then
    ROUTER_OUT=$("$ROOT/bench/router.sh" --build "$BUILD" 2>/dev/null | grep '^RESULT' || true)
    {
        echo
        echo "## Query router (bench/router.sh)"
        echo
        echo '```'
        echo "${ROUTER_OUT:-router.sh produced no result}"
        echo '```'
    } >>"$OUT"
fi
log "wrote $OUT"
cat "$OUT"
