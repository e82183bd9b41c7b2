#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/sessions.sh: distributed sessions (issue 11) on a real `edgelite serve`, loopback:
#  1. GET /v1/sessions/{id} against Redis GET, and PUT against Redis SET with appendonly yes and
#     appendfsync everysec (comparable durability: edgelite commits in WAL mode with synchronous=NORMAL),
#     64 connections (build/bench/loadgen, redis-benchmark), 1 KiB JSON, zstd + XChaCha20-Poly1305 on;
#  2. LIVE sessions (default 1,000,000) created over HTTP: the node's RSS and the data directory's size;
#  3. the cost of a migration under --emulate-wan (deployment/regions.json, us-east-1 -> eu-central-1):
#     from the access that crosses sessions.migrate_after to the new home serving it, and a write's
#     latency at that region before (forwarded) and after (local).
# Prints figures and RESULT lines, never pass/fail:
#   RESULT name=sessions_get rps=... redis_get_rps=... ratio=...
#   RESULT name=sessions_put rps=... redis_set_aof_rps=... ratio=...
#   RESULT name=sessions_live sessions=... rss_mb=... disk_mb=... bytes_stored=... compression_ratio=...
#   RESULT name=sessions_migration median_ms=... forwarded_write_ms=... local_write_ms=...
#
# Usage: bench/sessions.sh [--runs N] [--duration SEC] [--conns N] [--live N] [--skip-live] [--build DIR]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=3
DURATION=10
CONNS=64
LIVE=1000000
SKIP_LIVE=0
REDIS_N=300000

while [[ $# -gt 0 ]]; do
    case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --live) LIVE=$2; shift 2 ;;
    --skip-live) SKIP_LIVE=1; shift ;;
    --build) BUILD=$2; shift 2 ;;
    -h | --help) sed -n '3,19p' "$0"; exit 0 ;;
    *) echo "sessions.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-9]$ ]] || { echo "sessions.sh: --runs must be 1..9" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]?$ ]] || { echo "sessions.sh: --duration must be 1..99" >&2; exit 2; }
[[ "$LIVE" =~ ^[1-9][0-9]{0,6}$ ]] || { echo "sessions.sh: --live must be 1..9999999" >&2; exit 2; }
[[ "$BUILD" = /* ]] || BUILD=$ROOT/$BUILD

LOADGEN=$BUILD/bench/loadgen
EDGELITE=$BUILD/edgelite
for f in "$LOADGEN" "$EDGELITE"; do
    [[ -x "$f" ]] || { echo "sessions.sh: $f not built" >&2; exit 1; }
done
for f in redis-server redis-cli redis-benchmark python3 curl; do
    command -v "$f" >/dev/null || { echo "sessions.sh: $f missing (scripts/bootstrap.sh installs it)" >&2; exit 1; }
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup edgelite-sessbench

log() { printf '== %s\n' "$*" >&2; }

wait_listening() { # log file, pid
    for _ in $(seq 150); do
        kill -0 "$2" 2>/dev/null || return 1
        grep -q 'edgelite: listening on' "$1" && return 0
        sleep 0.1
    done
    return 1
}

# A 1 KiB session as an application keeps it: user, roles, a cart, flags, a CSRF token (random, so the
# record does not compress to nothing).
DATA=$(python3 - <<'EOF'
import json, secrets
d = {"user": {"id": 4711, "name": "Ann Example", "email": "ann@example.com", "locale": "en-GB"},
     "roles": ["customer", "beta"], "csrf": secrets.token_hex(32),
     "cart": [{"sku": "SKU-%05d" % i, "qty": i % 3 + 1, "price_cents": 1999 + i} for i in range(12)],
     "flags": {"dark_mode": True, "newsletter": False}, "last_path": "/checkout/shipping"}
s = json.dumps(d, separators=(",", ":"))
d["pad"] = "x" * max(0, 1024 - len(s) - 10)
print(json.dumps({"data": d}, separators=(",", ":")))
EOF
)
log "session JSON body: ${#DATA} bytes"

# ---- 1. GET and PUT against Redis ----
KEYS=$TMP/sessions.keys
printf '1 %s\n' "$(python3 -c 'import secrets; print(secrets.token_hex(32))')" >"$KEYS"
chmod 600 "$KEYS"
EPORT=$(free_port)
cat >"$TMP/single.yaml" <<EOF
regions:
  - { id: bench, listen: "127.0.0.1:$EPORT", data_dir: "$TMP/data" }
sessions: { key_file: "$KEYS", ttl_s: 86400 }
EOF
"$EDGELITE" serve --config "$TMP/single.yaml" --region bench --log-level warn >"$TMP/edgelite.log" 2>&1 &
EPID=$!
PIDS+=("$EPID")
wait_listening "$TMP/edgelite.log" "$EPID" || { cat "$TMP/edgelite.log" >&2; echo "sessions.sh: edgelite did not start" >&2; exit 1; }
BASE="http://127.0.0.1:$EPORT"
curl -sf -XPOST "$BASE/v1/sessions" -d "{\"id\":\"bench\",${DATA:1}" >/dev/null

run_loadgen() { # name, method, extra args...
    local name=$1 method=$2
    shift 2
    : >"$TMP/$name.rps"
    for i in $(seq "$RUNS"); do
        log "edgelite $name run $i/$RUNS"
        "$LOADGEN" --name "$name" -c "$CONNS" -d "$DURATION" -m "$method" --fail-on '"error"' "$@" \
            >"$TMP/$name.$i.out" 2>&1 || true
        cat "$TMP/$name.$i.out" >&2
        line=$(grep '^RESULT ' "$TMP/$name.$i.out" || true)
        [[ -n "$line" ]] || { echo "sessions.sh: loadgen printed no RESULT" >&2; exit 1; }
        sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line" >>"$TMP/$name.rps"
    done
}
run_loadgen sessions_get GET --url "$BASE/v1/sessions/bench"
run_loadgen sessions_put PUT --url "$BASE/v1/sessions/bench" --body "$DATA"
STATS=$(curl -sf "$BASE/v1/sessions/stats")
log "stats after GET/PUT: $STATS"

RPORT=$(free_port)
mkdir -p "$TMP/redis"
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --daemonize no --dir "$TMP/redis" >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
ready=0
for _ in $(seq 150); do
    if [[ "$(timeout 2 redis-cli -p "$RPORT" ping 2>/dev/null)" == PONG ]]; then ready=1; break; fi
    sleep 0.1
done
[[ $ready == 1 ]] || { cat "$TMP/redis.log" >&2; echo "sessions.sh: redis-server did not start" >&2; exit 1; }
: >"$TMP/redis_get.rps"
: >"$TMP/redis_set.rps"
for i in $(seq "$RUNS"); do
    log "redis run $i/$RUNS"
    out=$(timeout 300 redis-benchmark -p "$RPORT" -t set,get -d 1024 -c "$CONNS" -n "$REDIS_N" -q 2>&1 | tr '\r' '\n')
    grep -E '^(SET|GET):' <<<"$out" | tail -n 2 >&2
    sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' <<<"$out" | tail -n 1 >>"$TMP/redis_set.rps"
    sed -n 's/^GET: \([0-9.]*\) requests per second.*/\1/p' <<<"$out" | tail -n 1 >>"$TMP/redis_get.rps"
done
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.3f' % (a / b) if b > 0 else 'n/a')" "$1" "$2"; }
EG=$(median <"$TMP/sessions_get.rps")
EP=$(median <"$TMP/sessions_put.rps")
RG=$(median <"$TMP/redis_get.rps")
RS=$(median <"$TMP/redis_set.rps")
echo "RESULT name=sessions_get rps=$EG redis_get_rps=$RG ratio=$(ratio "$EG" "$RG") conns=$CONNS runs=$RUNS duration_s=$DURATION"
echo "RESULT name=sessions_put rps=$EP redis_set_aof_rps=$RS ratio=$(ratio "$EP" "$RS") conns=$CONNS runs=$RUNS duration_s=$DURATION"

# ---- 2. live sessions: memory and disk ----
if [[ $SKIP_LIVE == 0 ]]; then
    log "creating $LIVE sessions over HTTP (POST /v1/sessions, random ids)"
    "$LOADGEN" --name sessions_create -c "$CONNS" -d 900 --warmup 0 --max-requests "$LIVE" -m POST \
        --url "$BASE/v1/sessions" --body "$DATA" --fail-on '"error"' >"$TMP/create.out" 2>&1 || true
    grep '^RESULT' "$TMP/create.out" >&2 || cat "$TMP/create.out" >&2
    curl -sf -XPOST "$BASE/v1/sessions" -d "{\"data\":{}}" >/dev/null # settle
    sleep 2
    ST=$(curl -sf "$BASE/v1/sessions/stats")
    RSS=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$EPID/status")
    DISK=$(du -sm "$TMP/data" | cut -f1)
    python3 - "$ST" "$RSS" "$DISK" <<'EOF'
import json, sys
s = json.loads(sys.argv[1])
print("RESULT name=sessions_live sessions=%d rss_mb=%s disk_mb=%s bytes_stored=%d bytes_raw=%d compression_ratio=%.3f"
      % (s["live"], sys.argv[2], sys.argv[3], s["bytes_stored"], s["bytes_raw"], s["compression_ratio"]))
EOF
fi
kill -TERM "$EPID" 2>/dev/null || true

# ---- 3. migration under emulated WAN ----
A=us-east-1
B=eu-central-1
PA=$(free_port)
PB=$(free_port)
SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
cat >"$TMP/wan.yaml" <<EOF
cluster: { name: sessbench, secret: "$SECRET" }
regions:
  - { id: $A, listen: "127.0.0.1:$PA", url: "http://127.0.0.1:$PA", data_dir: "$TMP/wan-a", priority: 1 }
  - { id: $B, listen: "127.0.0.1:$PB", url: "http://127.0.0.1:$PB", data_dir: "$TMP/wan-b", priority: 2 }
replication: { consistency_level: eventual, sync_interval_ms: 50 }
sessions: { key_file: "$KEYS", migrate_after: 3, touch_interval_ms: 20 }
EOF
for r in "$A:wa" "$B:wb"; do
    "$EDGELITE" serve --config "$TMP/wan.yaml" --region "${r%%:*}" --emulate-wan "$ROOT/deployment/regions.json" \
        --log-level warn >"$TMP/${r##*:}.log" 2>&1 &
    PIDS+=($!)
    wait_listening "$TMP/${r##*:}.log" "$!" || { cat "$TMP/${r##*:}.log" >&2; echo "sessions.sh: $r did not start" >&2; exit 1; }
done
RTT=$(python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))['latency_ms']
a, b = sys.argv[2], sys.argv[3]
print(m.get(a, {}).get(b) or m.get(b, {}).get(a) or '?')
" "$ROOT/deployment/regions.json" "$A" "$B")
log "emulated RTT $A <-> $B: ${RTT:-see deployment/regions.json} ms"
python3 - "http://127.0.0.1:$PA" "http://127.0.0.1:$PB" "$DATA" "$B" <<'EOF'
import json, statistics, sys, time, urllib.request

A, B, DATA, BID = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]

def call(base, method, path, body=None):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            out = json.loads(r.read() or b"null"), r.status
    except urllib.error.HTTPError as e:
        out = None, e.code
    return out[0], out[1], (time.perf_counter() - t0) * 1000

mig, fwd, loc = [], [], []
for k in range(5):
    sid = "mig-%d-%d" % (k, int(time.time() * 1000))
    call(A, "POST", "/v1/sessions", {"id": sid, **DATA})
    for _ in range(2000):
        _, st, _ = call(B, "GET", "/v1/sessions/" + sid)
        if st == 200:
            break
        time.sleep(0.005)
    # The read that found it was access 1; a second read; then a forwarded write, access 3 with
    # sessions.migrate_after: 3: the migration cost runs from the start of that write until this
    # region serves the session as its home.
    call(B, "GET", "/v1/sessions/" + sid)
    t0 = time.perf_counter()
    _, st, ms = call(B, "PUT", "/v1/sessions/" + sid, DATA)
    fwd.append(ms)
    moved = False
    for _ in range(4000):
        j, st, _ = call(B, "GET", "/v1/sessions/" + sid)
        if st == 200 and j["home"] == BID:
            moved = True
            break
        time.sleep(0.002)
    mig.append((time.perf_counter() - t0) * 1000 if moved else float("nan"))
    _, st, ms = call(B, "PUT", "/v1/sessions/" + sid, DATA)
    loc.append(ms)
print("RESULT name=sessions_migration median_ms=%.1f forwarded_write_ms=%.1f local_write_ms=%.1f samples=%d"
      % (statistics.median(mig), statistics.median(fwd), statistics.median(loc), len(mig)))
EOF
