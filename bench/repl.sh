#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/repl.sh: replication benchmarks (issue 4) on a three-region cluster on this machine.
#  1. No WAN emulation: eventual upserts sent to all three regions at once (1, 10 and 100 rows
#     per request), time until every region converged after each run (equal version vectors,
#     nothing pending, equal SHA-256 of the table), then strong writes to all regions.
#     Around every throughput run: CPU time of the three node processes (utime+stime from
#     /proc/PID/stat, all threads) from the start of the load until the version vectors are
#     equal, per write acknowledged, and rows/s each region applied from its peers meanwhile
#     (edgelite_repl_rows_applied_total). CPU per write is the figure to compare builds by on a
#     shared machine: it does not depend on how much of the CPUs the bench got.
#  2. Catch-up (no WAN emulation): the third region is stopped (SIGSTOP), the first takes
#     --catchup-writes single-row writes, then the third is continued and timed until its
#     version vector equals the others': rows/s one region applies from its peers alone, and
#     its CPU per applied row.
#  3. --emulate-wan deployment/regions.json: local point reads, strong writes from each region,
#     and commit-to-applied per directed region pair (bench/repl_probe.mjs probe).
# Prints a Markdown "Replication" section on stdout, or appends it to a file.
#
# Everything it starts runs from a private temp dir on free loopback ports and is killed on
# exit. It fails (status 1) if the cluster does not converge or a load sees errors.
#
# Usage: bench/repl.sh [--runs N] [--duration SEC] [--warmup SEC] [--conns N] [--build DIR]
#                      [--loads LIST] [--catchup-writes N] [--out-append FILE]
# --loads: comma list of single,multi10,multi100,strong,catchup,wan (default: all).
# Environment: BENCH_QUICK=1 (1 run of 3 s), BUILD, REPL_PERF_DIR=DIR (perf record -g of the
# three nodes during each "single" run, one perf.data per run and region in DIR).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
RUNS=3
DURATION=5
WARMUP=1
CONNS=32
OUT_APPEND=""
LOADS=single,multi10,multi100,strong,catchup,wan
CATCHUP_WRITES=30000
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
    --loads) LOADS=$2; shift 2 ;;
    --catchup-writes) CATCHUP_WRITES=$2; shift 2 ;;
    -h | --help) sed -n '3,31p' "$0"; exit 0 ;;
    *) echo "repl.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ "$RUNS" =~ ^[1-5]$ ]] || { echo "repl.sh: --runs must be 1..5" >&2; exit 2; }
[[ "$DURATION" =~ ^[1-9][0-9]?$ ]] || { echo "repl.sh: --duration must be 1..99" >&2; exit 2; }
[[ "$WARMUP" =~ ^[0-9]$ ]] || { echo "repl.sh: --warmup must be 0..9" >&2; exit 2; }
[[ "$CONNS" =~ ^[1-9][0-9]{0,2}$ ]] || { echo "repl.sh: --conns must be 1..999" >&2; exit 2; }
[[ "$LOADS" =~ ^(single|multi10|multi100|strong|catchup|wan)(,(single|multi10|multi100|strong|catchup|wan))*$ ]] ||
    { echo "repl.sh: --loads takes a comma list of single,multi10,multi100,strong,catchup,wan" >&2; exit 2; }
[[ "$CATCHUP_WRITES" =~ ^[1-9][0-9]{2,5}$ ]] || { echo "repl.sh: --catchup-writes must be 100..999999" >&2; exit 2; }
[[ "$BUILD" = /* ]] || BUILD=$ROOT/$BUILD
if [[ -n "${REPL_PERF_DIR:-}" ]]; then
    mkdir -p "$REPL_PERF_DIR" && REPL_PERF_DIR=$(cd "$REPL_PERF_DIR" && pwd)
    command -v perf >/dev/null || { echo "repl.sh: REPL_PERF_DIR needs perf" >&2; exit 2; }
fi
want() { [[ ",$LOADS," == *",$1,"* ]]; }
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
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
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

# snap NAME TAG: per region one SNAP line in $TMP/res/NAME.snap: wall ms, the node's CPU ticks
# (utime+stime of all its threads), write units it executed, rows and entries it applied from
# peers. A region given as SKIP (stopped: it would not answer) gets CPU ticks only.
metric() { awk -v k="$1" '$1 == k { print $2; exit }'; }
snap() {
    local i t ticks m
    for i in 0 1 2; do
        t=$(date +%s%3N)
        ticks=$(awk '{ print $14 + $15 }' "/proc/${CLUSTER_PIDS[$i]}/stat")
        if [[ "${3:-}" == "$i" ]]; then
            echo "SNAP name=$1 tag=$2 region=$i t_ms=$t cpu_ticks=$ticks"
            continue
        fi
        m=$(curl -sf --max-time 10 "${URLS[$i]}/metrics") || die "$1: /metrics of ${IDS[$i]} did not answer"
        echo "SNAP name=$1 tag=$2 region=$i t_ms=$t cpu_ticks=$ticks" \
            "writes=$(metric 'edgelite_units_total{route="write"}' <<<"$m")" \
            "rows_applied=$(metric edgelite_repl_rows_applied_total <<<"$m")" \
            "entries_applied=$(metric edgelite_repl_entries_applied_total <<<"$m")"
    done >>"$TMP/res/$1.snap"
}

# vvwait NAME URLCSV: until those regions' version vectors are equal (60 s at most).
vvwait() {
    probe vvwait --urls "$2" --name "$1" --timeout-ms 60000 >>"$TMP/res/vvwait" || die "$1: version vectors did not meet"
}

# measured NAME BODIES CONNS DURATION [loadgen args...]: trio with SNAP lines before the load,
# when the load ends, and once every version vector is equal (before converge hashes the tables,
# which costs node CPU of its own). With REPL_PERF_DIR, "single" runs are recorded by perf.
PERF_RUN=0
measured() {
    local name=$1 pp=() i
    snap "$name" before
    if [[ -n "${REPL_PERF_DIR:-}" && "$name" == ev_single ]]; then
        PERF_RUN=$((PERF_RUN + 1))
        for i in 0 1 2; do
            perf record -g -q -o "$REPL_PERF_DIR/single.$PERF_RUN.${IDS[$i]}.data" -p "${CLUSTER_PIDS[$i]}" \
                >/dev/null 2>&1 &
            pp+=($!)
        done
    fi
    trio "$@"
    snap "$name" load
    vvwait "$name" "$URLCSV"
    snap "$name" conv
    for i in ${pp[@]+"${pp[@]}"}; do kill -INT "$i" 2>/dev/null || true; done
    for i in ${pp[@]+"${pp[@]}"}; do wait "$i" 2>/dev/null || true; done
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
    want "$b" || continue
    for r in $(seq "$RUNS"); do
        log "eventual $b run $r/$RUNS: 3 regions x $CONNS connections, ${DURATION} s"
        measured "ev_$b" "$b" "$CONNS" "$DURATION"
        converge "ev_$b"
    done
done
if want strong; then
    for r in $(seq "$RUNS"); do
        log "strong run $r/$RUNS: 3 regions x $CONNS connections, ${DURATION} s"
        measured strong single "$CONNS" "$DURATION" -H 'X-Edge-Consistency: strong'
        converge strong
    done
fi
# 2. Catch-up: rows/s that one region applies from its peers with nothing else to do.
if want catchup; then
    for r in $(seq "$RUNS"); do
        log "catch-up run $r/$RUNS: ${IDS[2]} stopped while ${IDS[0]} takes $CATCHUP_WRITES single-row writes"
        converge "catchup_pre"
        snap catchup before
        kill -STOP "${CLUSTER_PIDS[2]}"
        "$LOADGEN" --name "catchup.${IDS[0]}" --url "${URLS[0]}/v2/pipeline" -c "$CONNS" -d 60 --warmup 0 \
            --max-requests "$CATCHUP_WRITES" --bodies-file "$TMP/bodies/single.$((r % 3)).jsonl" \
            -H 'Content-Type: application/json' --fail-on '"type":"error"' -q >"$TMP/res/catchup.lg" 2>&1 ||
            { kill -CONT "${CLUSTER_PIDS[2]}"; die "catch-up load failed: $(tail -n 3 "$TMP/res/catchup.lg")"; }
        vvwait catchup_ab "${URLS[0]},${URLS[1]}"
        snap catchup stopped 2
        kill -CONT "${CLUSTER_PIDS[2]}"
        vvwait catchup "$URLCSV"
        snap catchup caught
    done
    converge catchup
fi
stop_cluster

# ---------------------------------------------------------------------------
# 3. Emulated WAN.
if want wan; then
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
fi

# ---------------------------------------------------------------------------
# 4. The report.
CPU=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n1)
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git -C "$ROOT" diff --quiet HEAD 2>/dev/null; then GIT_REV="$GIT_REV (with uncommitted changes)"; fi
ELAPSED=$(($(date +%s) - T_START))
python3 - "$TMP/res" "$CATALOGUE" "$RUNS" "$DURATION" "$WARMUP" "$CONNS" "$(getconf CLK_TCK)" "$CATCHUP_WRITES" "$LOADS" "${IDS[@]}" >"$TMP/section.md" <<EOF || die "report failed"
import json, os, re, statistics, sys
res, cat_path, runs, dur, warm, conns = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
tck, catchup_writes, loads = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9].split(",")
ids = sys.argv[10:13]
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
print("- Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg). Other work on")
print("  the 2 CPUs lowers the throughput figures and raises CPU per write (more context switches, smaller groups).")
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
def snaps(name):
    """Runs of SNAP lines: [{tag: [region0, region1, region2]}], in order."""
    p = os.path.join(res, name + ".snap")
    if not os.path.exists(p):
        return []
    out, cur = [], {}
    for l in open(p):
        x = parse(l)
        if x["tag"] == "before" and x["region"] == "0" and cur:
            out.append(cur)
            cur = {}
        cur.setdefault(x["tag"], []).append(x)
    if cur:
        out.append(cur)
    return out
def d(run, a, b, key, i):
    return float(run[b][i][key]) - float(run[a][i][key])
def cpu_ms(run, a, b, i):
    return d(run, a, b, "cpu_ticks", i) * 1000.0 / tck
rows_cpu = []
for name, label, rows_per_request in [("ev_single", "eventual, 1 row per request", 1),
                                      ("ev_multi10", "eventual, 10 rows per request", 10),
                                      ("ev_multi100", "eventual, 100 rows per request", 100),
                                      ("strong", "strong (X-Edge-Consistency), 1 row", 1)]:
    rs = [r for r in snaps(name) if all(k in r and len(r[k]) == 3 for k in ("before", "load", "conv"))]
    if not rs:
        continue
    per_write, per_row, applied_rate, conv_tail = [], [], [], []
    for r in rs:
        writes = sum(d(r, "before", "conv", "writes", i) for i in range(3))
        rows = sum(d(r, "before", "conv", "rows_applied", i) for i in range(3))
        cpu = sum(cpu_ms(r, "before", "conv", i) for i in range(3))
        per_write.append(cpu * 1000.0 / writes if writes else float("nan"))
        per_row.append(cpu * 1000.0 / (writes * rows_per_request) if writes else float("nan"))
        secs = [(float(r["load"][i]["t_ms"]) - float(r["before"][i]["t_ms"])) / 1000.0 for i in range(3)]
        applied_rate.append([d(r, "before", "load", "rows_applied", i) / secs[i] for i in range(3)])
        conv_tail.append(sum(cpu_ms(r, "load", "conv", i) for i in range(3)))
    mi = sorted(range(len(rs)), key=lambda k: per_write[k])[(len(rs) - 1) // 2]
    rows_cpu.append((label, per_write, mi, per_row[mi], applied_rate[mi], conv_tail[mi]))
if rows_cpu:
    print()
    print("CPU of the three node processes (utime+stime, all threads, from /proc) from the start of each load (warm-up")
    print("included) until every version vector is equal, divided by the write requests all regions executed in that")
    print("time; rows/s applied from peers: edgelite_repl_rows_applied_total of each region over the load (warm-up")
    print("included), median run by CPU per write:")
    print()
    print("| Load | node CPU µs per write request (runs) | per row | rows/s applied from peers (%s) | CPU ms after the load ended |" % " / ".join(ids))
    print("|---|---|---|---|---|")
    for label, pw, mi, pr, ar, tail in rows_cpu:
        print("| %s | %.0f (%s) | %.1f | %s | %.0f |" % (label, pw[mi], " / ".join("%.0f" % v for v in pw), pr,
              " / ".join("{:,.0f}".format(v) for v in ar), tail))
cu = [r for r in snaps("catchup") if all(k in r and len(r[k]) == 3 for k in ("before", "stopped", "caught"))]
vvw = [x for x in lines("vvwait") if x.get("name") == "catchup"]
if cu and len(vvw) == len(cu):
    print()
    print("### Catch-up: rows/s one region applies from its peers")
    print()
    print("%s stopped (SIGSTOP) while %s takes %s single-row writes (%s connections); once %s has them, %s is" %
          (ids[2], ids[0], "{:,}".format(catchup_writes), conns, ids[1], ids[2]))
    print("continued (SIGCONT) and timed until its version vector equals the others' (polled every 10 ms). Rows: its")
    print("edgelite_repl_rows_applied_total; CPU: its utime+stime over the catch-up.")
    print()
    print("| Run | rows applied | catch-up ms | rows/s applied | node CPU µs per applied row | entries applied |")
    print("|---|---|---|---|---|---|")
    rates = []
    for k, r in enumerate(cu):
        rows = d(r, "before", "caught", "rows_applied", 2)
        ents = d(r, "before", "caught", "entries_applied", 2)
        ms_ = float(vvw[k]["vv_ms"])
        cpu = cpu_ms(r, "stopped", "caught", 2)
        rates.append(rows * 1000.0 / ms_ if ms_ else float("nan"))
        print("| %d | {:,.0f} | %.0f | {:,.0f} | %.1f | {:,.0f} |".format(rows, rates[-1], ents) %
              (k + 1, ms_, cpu * 1000.0 / rows if rows else float("nan")))
    print()
    print("Median: {:,.0f} rows/s.".format(statistics.median(rates)))
if "wan" in loads:
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
