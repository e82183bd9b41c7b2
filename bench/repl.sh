#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/repl.sh: replication benchmarks (issue 4) on a three-region cluster on this machine.
#  1. No WAN emulation: eventual upserts sent to all three regions at once (1, 10 and 100 rows
#     per request), time until every region converged after each run (equal version vectors,
#     nothing pending, equal SHA-256 of the table), then strong writes to all regions.
#  2. --emulate-wan deployment/regions.json: local point reads, strong writes from each region,
#     and commit-to-applied per directed region pair (bench/repl_probe.mjs probe).
# Prints a Markdown "Replication" section on stdout, or appends it to a file.
#
# Everything it starts runs from a private temp dir on free loopback ports and is killed on
# exit. It fails (status 1) if the cluster does not converge or a load sees errors.
#
# Usage: bench/repl.sh [--runs N] [--duration SEC] [--warmup SEC] [--conns N] [--build DIR]
#                      [--out-append FILE]
# Environment: BENCH_QUICK=1 (1 run of 3 s), BUILD.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=3
DURATION=5
WARMUP=1
CONNS=32
OUT_APPEND=""
if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
    RUNS=1
    DURATION=3
fi

while [[ $# -gt 0 ]]; do
    case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --out-append) OUT_APPEND=$2; shift 2 ;;
    -h | --help) sed -n '3,17p' "$0"; exit 0 ;;
    *) echo "repl.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-5]$ ]] || { echo "repl.sh: --runs must be 1..5" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]?$ ]] || { echo "repl.sh: --duration must be 1..99" >&2; exit 2; }
[[ "$WARMUP" =~ ^[0-9]$ ]] || { echo "repl.sh: --warmup must be 0..9" >&2; exit 2; }
[[ "$CONNS" =~ ^[1-9][0-9]{0,2}$ ]] || { echo "repl.sh: --conns must be 1..999" >&2; exit 2; }
[[ "$BUILD" = /* ]] || BUILD=$ROOT/$BUILD
if [[ -n "$OUT_APPEND" && "$OUT_APPEND" != /* ]]; then OUT_APPEND=$PWD/$OUT_APPEND; fi

LOADGEN=$BUILD/bench/loadgen
EDGELITE=$BUILD/edgelite
PROBE=$ROOT/bench/repl_probe.mjs
CATALOGUE=$ROOT/deployment/regions.json
BASECONF=$ROOT/deployment/edge-config.yaml
for f in "$LOADGEN" "$EDGELITE"; do
    [[ -x "$f" ]] || { echo "repl.sh: $f not built (cmake --build BUILD --target edgelite_bin loadgen)" >&2; exit 1; }
done
command -v node >/dev/null || { echo "repl.sh: node (18+) is required for bench/repl_probe.mjs" >&2; exit 1; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_setup edgelite-replbench

T_START=$(date +%s)
log() { printf '== [%3ds] %s\n' "$(($(date +%s) - T_START))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
probe() { node "$PROBE" "$@"; }

# Region ids, in the shipped file's order; the first has the lowest priority (the primary).
mapfile -t IDS < <(sed -n 's/^[[:space:]]*-[[:space:]]*{[[:space:]]*id:[[:space:]]*\([a-z0-9-]*\).*/\1/p' "$BASECONF" | head -n 3)
[[ ${#IDS[@]} == 3 ]] || die "expected 3 regions in $BASECONF, found ${#IDS[@]}"

free_ports() { # three distinct ports, all held until all are bound
    python3 -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'
}

URLS=()
CLUSTER_PIDS=()
# start_cluster NAME [serve args...]: a fresh three-region cluster (config derived from the
# shipped one: ids, priorities, secret and replication settings kept; ports and data dirs new).
start_cluster() {
    local name=$1 dir=$TMP/$1 ports i
    shift
    mkdir -p "$dir"
    read -r -a ports <<<"$(free_ports)"
    URLS=()
    python3 - "$BASECONF" "$dir" "${IDS[@]}" "${ports[@]}" >"$dir/config.yaml" <<'EOF'
import re, sys
base, d, ids, ports = sys.argv[1], sys.argv[2], sys.argv[3:6], sys.argv[6:9]
for line in open(base):
    m = re.match(r'^(\s*-\s*\{\s*id:\s*)([a-z0-9-]+)(\s*,.*)$', line.rstrip('\n'))
    if m and m.group(2) in ids:
        p = ports[ids.index(m.group(2))]
        rest = re.sub(r'listen:\s*"[^"]*"', 'listen: "127.0.0.1:%s"' % p, m.group(3))
        rest = re.sub(r'url:\s*"[^"]*"', 'url: "http://127.0.0.1:%s"' % p, rest)
        rest = re.sub(r'data_dir:\s*"[^"]*"', 'data_dir: "%s/%s"' % (d, m.group(2)), rest)
        line = m.group(1) + m.group(2) + rest + '\n'
    sys.stdout.write(line)
EOF
    CLUSTER_PIDS=()
    for i in 0 1 2; do
        "$EDGELITE" serve --config "$dir/config.yaml" --region "${IDS[$i]}" "$@" >"$dir/${IDS[$i]}.log" 2>&1 &
        PIDS+=($!)
        CLUSTER_PIDS+=($!)
        URLS+=("http://127.0.0.1:${ports[$i]}")
    done
    for i in 0 1 2; do
        for _ in $(seq 150); do
            grep -q 'edgelite: listening on' "$dir/${IDS[$i]}.log" && break
            kill -0 "${CLUSTER_PIDS[$i]}" 2>/dev/null || break
            sleep 0.1
        done
        grep -q 'edgelite: listening on' "$dir/${IDS[$i]}.log" ||
            { tail -n 5 "$dir/${IDS[$i]}.log" >&2; die "region ${IDS[$i]} did not start"; }
    done
    URLCSV=$(IFS=,; echo "${URLS[*]}")
    probe ready --urls "$URLCSV" --timeout-ms 15000 || die "$name: peers did not connect"
    probe create --urls "$URLCSV" --timeout-ms 15000 || die "$name: tables did not replicate"
    log "$name cluster up: ${IDS[*]} at ${URLS[*]}"
}

stop_cluster() {
    local p
    for p in "${CLUSTER_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${CLUSTER_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    CLUSTER_PIDS=()
}

mkdir -p "$TMP/res" "$TMP/bodies"
probe gen --dir "$TMP/bodies" --regions 3 --keys 200000 --bodies 20000 || die "could not generate request bodies"

# trio NAME BODIES CONNS DURATION [loadgen args...]: one loadgen per region, all at once;
# their three RESULT lines go to $TMP/res/NAME (appended, one block per call).
trio() {
    local name=$1 bodies=$2 conns=$3 dur=$4 i
    shift 4
    local lg=()
    for i in 0 1 2; do
        "$LOADGEN" --name "$name.${IDS[$i]}" --url "${URLS[$i]}/v2/pipeline" -c "$conns" -d "$dur" \
            --warmup "$WARMUP" --bodies-file "$TMP/bodies/$bodies.$i.jsonl" -H 'Content-Type: application/json' \
            --fail-on '"type":"error"' "$@" >"$TMP/res/$name.lg$i" 2>&1 &
        lg+=($!)
    done
    for i in 0 1 2; do wait "${lg[$i]}" || true; done
    for i in 0 1 2; do
        grep '^RESULT ' "$TMP/res/$name.lg$i" >>"$TMP/res/$name" || die "$name: loadgen for ${IDS[$i]} printed no result: $(tail -n 3 "$TMP/res/$name.lg$i")"
    done
}

# converge NAME: wait (up to 60 s) until all regions agree; fails the script if they never do.
converge() {
    if ! probe converge --urls "$URLCSV" --name "$1" --timeout-ms 60000 >>"$TMP/res/converge"; then
        find "$TMP" -name '*.log' -exec grep -HE 'WARN|ERROR' {} + 2>/dev/null | tail -n 40 >&2 || true
        die "$1: the regions did not converge (warnings from the region logs above)"
    fi
    log "$(tail -n 1 "$TMP/res/converge")"
}

# ---------------------------------------------------------------------------
# 1. No WAN emulation.
start_cluster lan
for load in single:1 multi10:10 multi100:100; do
    b=${load%%:*}
    for r in $(seq "$RUNS"); do
        log "eventual $b run $r/$RUNS: 3 regions x $CONNS connections, ${DURATION} s"
        trio "ev_$b" "$b" "$CONNS" "$DURATION"
        converge "ev_$b"
    done
done
for r in $(seq "$RUNS"); do
    log "strong run $r/$RUNS: 3 regions x $CONNS connections, ${DURATION} s"
    trio strong single "$CONNS" "$DURATION" -H 'X-Edge-Consistency: strong'
    converge strong
done
stop_cluster

# ---------------------------------------------------------------------------
# 2. Emulated WAN.
start_cluster wan --emulate-wan "$CATALOGUE"
log "wan: preloading rows in ${IDS[0]}"
"$LOADGEN" --name preload --url "${URLS[0]}/v2/pipeline" -c 8 -d 60 --warmup 0 --max-requests 1000 \
    --bodies-file "$TMP/bodies/multi100.0.jsonl" -H 'Content-Type: application/json' --fail-on '"type":"error"' \
    -q >"$TMP/res/preload.lg" 2>&1 || die "preload failed: $(tail -n 3 "$TMP/res/preload.lg")"
converge wan_preload
for r in $(seq "$RUNS"); do
    log "wan local reads run $r/$RUNS"
    trio wan_read reads 8 3
done
log "wan strong writes from each region: 3 x 8 connections, $((DURATION + 3)) s"
trio wan_strong single 8 "$((DURATION + 3))" -H 'X-Edge-Consistency: strong'
converge wan_strong
log "wan commit-to-applied probe"
probe probe --urls "$URLCSV" --ids "$(IFS=,; echo "${IDS[*]}")" --catalogue "$CATALOGUE" --writes 60 \
    --concurrency 3 >"$TMP/res/applied" || die "commit-to-applied probe failed"
cat "$TMP/res/applied" >&2
converge wan_probe
stop_cluster

# ---------------------------------------------------------------------------
# 3. The report.
CPU=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$ROOT" diff --quiet HEAD 2>/dev/null; then GIT_REV="$GIT_REV (with uncommitted changes)"; fi
ELAPSED=$(($(date +%s) - T_START))
python3 - "$TMP/res" "$CATALOGUE" "$RUNS" "$DURATION" "$WARMUP" "$CONNS" "${IDS[@]}" >"$TMP/section.md" <<EOF || die "report failed"
import json, os, re, statistics, sys
res, cat_path, runs, dur, warm, conns = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
ids = sys.argv[7:10]
cat = json.load(open(cat_path))
def rtt(a, b):
    m = cat["latency_ms"]
    return m.get(a, {}).get(b) or m.get(b, {}).get(a) or 0
def parse(line):
    return dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
def lines(name):
    p = os.path.join(res, name)
    return [parse(l) for l in open(p) if l.startswith("RESULT ")] if os.path.exists(p) else []
def trio_runs(name):
    ls = lines(name)
    return [ls[i:i + 3] for i in range(0, len(ls) - len(ls) % 3, 3)]
def median_run(name):
    rs = sorted(trio_runs(name), key=lambda r: sum(float(x["rps"]) for x in r))
    return rs[(len(rs) - 1) // 2] if rs else None, rs
def errs(r):
    return sum(int(x["errors"]) + int(x["non2xx"]) + int(x["app_errors"]) for x in r)
def ms(us):
    return "%.1f" % (float(us) / 1000)
def per_region(r, key):
    return " / ".join(ms(x[key]) for x in r)
conv = {}
for c in lines("converge"):
    conv.setdefault(c["name"], []).append(c)
def conv_cell(name):
    cs = conv.get(name, [])
    if not cs:
        return "n/a"
    vv = statistics.median(float(c["vv_ms"]) for c in cs)
    data = statistics.median(float(c["data_ms"]) for c in cs)
    return "%.0f ms (data equal %.0f ms)" % (vv, data)
print("## Replication")
print()
print("Written by \`bench/repl.sh\` (method: docs/benchmarks.md, \"Replication\").")
print()
print("- Date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); machine: $(nproc) CPUs, ${CPU:-unknown CPU}; kernel $(uname -r); edgelite $GIT_REV")
print("- Three regions (%s; %s is the primary) as three \`edgelite serve\` processes on loopback, config derived from" % (", ".join(ids), ids[0]))
print("  deployment/edge-config.yaml; three loadgen processes (one per region) on the same CPUs; whole script %d s." % $ELAPSED)
print("- Throughput loads: %s keep-alive connections per region, %s s warm-up + %s s, median of %d run(s) by total" % (conns, warm, dur, runs))
print("  throughput (latencies are the median run's, per region %s). Writes are upserts into" % "/".join(ids))
print("  \`kv(id INTEGER PRIMARY KEY, v TEXT)\` over 200,000 keys shared by all regions (so they also conflict).")
print("- Converged = every region's version vector equal with no peer pending, measured from the end of the load;")
print("  \"data equal\" = SHA-256 of every row in key order equal in all regions (includes hashing time).")
print()
print("### Without WAN emulation")
print()
print("| Load | Requests/s (runs) | Rows/s | p50 ms | p99 ms | errors | Converged after |")
print("|---|---|---|---|---|---|---|")
for name, label, rows in [("ev_single", "eventual, 1 row per request", 1), ("ev_multi10", "eventual, 10 rows per request", 10),
                          ("ev_multi100", "eventual, 100 rows per request", 100), ("strong", "strong (X-Edge-Consistency), 1 row", 1)]:
    m, rs = median_run(name)
    if not m:
        print("| %s | not measured | | | | | |" % label)
        continue
    tot = sum(float(x["rps"]) for x in m)
    allruns = " / ".join("{:,.0f}".format(sum(float(x["rps"]) for x in r)) for r in rs)
    print("| %s | {:,.0f} (%s) | {:,.0f} | %s | %s | %d | %s |".format(tot, tot * rows) %
          (label, allruns, per_region(m, "p50_us"), per_region(m, "p99_us"), errs(m), conv_cell(name)))
print()
print("### With \`--emulate-wan deployment/regions.json\`")
print()
print("RTTs: " + ", ".join("%s-%s %d ms" % (a, b, rtt(a, b)) for a, b in [(ids[0], ids[1]), (ids[0], ids[2]), (ids[1], ids[2])]) + ".")
m, rs = median_run("wan_read")
if m:
    print()
    print("Local point reads (8 connections per region, all regions at once, 3 s, median of %d): {:,.0f} reads/s in total;".format(sum(float(x["rps"]) for x in m)) % len(rs))
    print("p50 %s ms, p95 %s ms, p99 %s ms (%s); errors %d." % (per_region(m, "p50_us"), per_region(m, "p95_us"), per_region(m, "p99_us"), "/".join(ids), errs(m)))
m, rs = median_run("wan_strong")
floor = [min(rtt(ids[0], ids[1]), rtt(ids[0], ids[2]))]
floor += [rtt(i, ids[0]) + floor[0] for i in ids[1:]]
print()
print("Strong writes from each region (8 connections per region, all at once, one run):")
print()
print("| Region | writes/s | p50 ms | p95 ms | p99 ms | errors | floor ms |")
print("|---|---|---|---|---|---|---|")
if m:
    for i, x in enumerate(m):
        print("| %s | %s | %s | %s | %s | %d | %d |" % (ids[i], x["rps"], ms(x["p50_us"]), ms(x["p95_us"]), ms(x["p99_us"]),
              int(x["errors"]) + int(x["non2xx"]) + int(x["app_errors"]), floor[i]))
print()
print("Floor = the primary's round trip to its nearest peer (majority of 3), plus, from a replica, the forward to")
print("the primary and the answer back (one RTT).")
print()
print("Commit-to-applied (60 writes per origin, 3 in flight, idle cluster otherwise; each write is followed, once")
print("acknowledged, by a read carrying its X-Edge-Bookmark in the two other regions, which the node answers once it")
print("has applied the write). Percentiles: from sending the write to the read's answer (an upper bound, since the")
print("commit is somewhere before the acknowledgement); \"from ack\": from the acknowledgement (a lower bound).")
print()
print("| Origin > region | samples | min ms | p50 ms | p95 ms | p99 ms | max ms | p50 from ack ms | RTT/2 floor ms |")
print("|---|---|---|---|---|---|---|---|---|")
for x in lines("applied"):
    if x.get("name") != "applied":
        continue
    fl = x.get("floor_ms", "")
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (x["pair"].replace(">", " > "), x["n"], x.get("min_ms", ""),
          x["p50_ms"], x["p95_ms"], x["p99_ms"], x["max_ms"], x.get("ack_p50_ms", ""), fl))
print()
print("Raw RESULT lines:")
print()
print("\`\`\`")
for n in sorted(os.listdir(res)):
    if "." in n:
        continue
    for l in open(os.path.join(res, n)):
        if l.startswith("RESULT "):
            sys.stdout.write(l)
print("\`\`\`")
EOF

if [[ -n "$OUT_APPEND" ]]; then
    { echo; cat "$TMP/section.md"; } >>"$OUT_APPEND"
    log "appended the Replication section to $OUT_APPEND"
fi
cat "$TMP/section.md"
log "done in $(($(date +%s) - T_START)) s"
