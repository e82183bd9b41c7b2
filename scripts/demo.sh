#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make demo`: start the regions of deployment/edge-config.yaml as processes on this machine with the
# WAN round-trip times of deployment/regions.json emulated, run demo/demo.mjs against them (mixed
# workload through @libsql/client, live view, summary, identical-data check), and stop every process
# it started, also on Ctrl-C or error. Details: docs/demo.md.
#
#   scripts/demo.sh [--duration S] [--regions N]      (default 15 s, 3 regions; N from 1 to 4)
#   EDGE_BIN=build-x/edgelite scripts/demo.sh          (another binary; default build/edgelite)
#   EDGE_DEMO_KEEP=1                                    keep the data directory and logs afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=15
REGIONS=3
usage() { sed -n '3,10s/^# \{0,1\}//p' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) [ $# -ge 2 ] || { usage >&2; exit 2; }; DURATION=$2; shift 2 ;;
    --duration=*) DURATION=${1#*=}; shift ;;
    --regions) [ $# -ge 2 ] || { usage >&2; exit 2; }; REGIONS=$2; shift 2 ;;
    --regions=*) REGIONS=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "demo: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$DURATION" =~ ^[0-9]+([.][0-9]+)?$ ]] && awk "BEGIN{exit !($DURATION > 0 && $DURATION <= 3600)}" \
  || { echo "demo: --duration must be a number of seconds in (0, 3600], got '$DURATION'" >&2; exit 2; }
[[ "$REGIONS" =~ ^[0-9]+$ ]] || { echo "demo: --regions must be an integer, got '$REGIONS'" >&2; exit 2; }

BIN=${EDGE_BIN:-build/edgelite}
WAN=deployment/regions.json
if [ ! -x "$BIN" ]; then echo "demo: $BIN not found; run 'make build' (or set EDGE_BIN)" >&2; exit 1; fi
command -v node >/dev/null || { echo "demo: node not found; run scripts/bootstrap.sh" >&2; exit 1; }
[ -d tests/client/node_modules/@libsql/client ] || { echo "demo: @libsql/client missing; run scripts/bootstrap.sh" >&2; exit 1; }

now_ms() { date +%s%3N; }
T_ALL=$(now_ms)
DIR=$(mktemp -d "${TMPDIR:-/tmp}/edgelite-demo.XXXXXX")
PIDS=()
IDS=()
NODE_PID=""
CLEANED=0

# SIGTERM every region, SIGKILL what is still alive 5 s later, then remove the data unless asked not to.
stop_all() {
  [ "$CLEANED" = 1 ] && return 0
  CLEANED=1
  local t0 p i alive n=0 killed=0
  t0=$(now_ms)
  if [ -n "$NODE_PID" ] && kill -0 "$NODE_PID" 2>/dev/null; then kill -TERM "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null; fi
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null && n=$((n + 1)); done
  for i in $(seq 1 50); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; killed=$((killed + 1)); fi
  done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${#PIDS[@]}" -gt 0 ]; then
    # A region may already be gone: on Ctrl-C the terminal sends SIGINT to it as well, and it exits on its own.
    echo "demo: stopped ${#PIDS[@]} region process(es): $n by SIGTERM in $(( $(now_ms) - t0 )) ms" \
         "($killed needed SIGKILL after 5 s), $(( ${#PIDS[@]} - n )) had already exited"
  fi
  if [ -n "${EDGE_DEMO_KEEP:-}" ]; then echo "demo: data and logs kept in $DIR"; else rm -rf "$DIR"; fi
}
on_exit() { local rc=$?; stop_all; echo "demo: total $(( $(now_ms) - T_ALL )) ms, exit status $rc"; exit "$rc"; }
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_logs() {
  local id
  for id in "${IDS[@]}"; do echo "--- $id (last lines of $DIR/$id.log)"; tail -n 15 "$DIR/$id.log" 2>/dev/null || true; done
}

T=$(now_ms)
if ! PLAN=$(node demo/config.mjs --regions "$REGIONS" --dir "$DIR"); then exit 2; fi
declare -A PORT=()
while read -r id port; do IDS+=("$id"); PORT[$id]=$port; done <<<"$PLAN"
echo "demo: config for ${#IDS[@]} region(s) written to $DIR/edge-config.yaml ($(( $(now_ms) - T )) ms)"

T=$(now_ms)
for id in "${IDS[@]}"; do
  "$BIN" serve --config "$DIR/edge-config.yaml" --region "$id" --emulate-wan "$WAN" --log-level warn \
    >"$DIR/$id.out" 2>"$DIR/$id.log" &
  PIDS+=($!)
done
for i in "${!IDS[@]}"; do
  id=${IDS[$i]}
  for _ in $(seq 1 200); do
    grep -q "listening on" "$DIR/$id.out" 2>/dev/null && break
    kill -0 "${PIDS[$i]}" 2>/dev/null || break
    sleep 0.05
  done
  if ! grep -q "listening on" "$DIR/$id.out" 2>/dev/null; then
    if kill -0 "${PIDS[$i]}" 2>/dev/null; then why="did not start within 10 s"; else why="exited at start-up"; fi
    echo "demo: region $id $why" >&2; show_logs >&2; exit 1
  fi
done
# The node binds with SO_REUSEPORT: a process that grabbed one of our ports in the meantime would
# silently share it, so make sure each port is served by our process alone.
if command -v ss >/dev/null; then
  for i in "${!IDS[@]}"; do
    others=$(ss -Hltnp "sport = :${PORT[${IDS[$i]}]}" 2>/dev/null | grep -o 'pid=[0-9]*' | sort -u | grep -vx "pid=${PIDS[$i]}" || true)
    if [ -n "$others" ]; then
      echo "demo: port ${PORT[${IDS[$i]}]} of ${IDS[$i]} is also served by another process ($others); run the demo again" >&2
      exit 1
    fi
  done
fi
echo "demo: started ${IDS[*]} ($(( $(now_ms) - T )) ms); WAN RTTs from $WAN; logs in $DIR/<region>.log"

ARGS=(--duration "$DURATION")
for id in "${IDS[@]}"; do ARGS+=(--region "$id=http://127.0.0.1:${PORT[$id]}"); done
# In the background + wait, so that a SIGTERM to this script runs the trap at once instead of after the load.
set +e
node demo/demo.mjs "${ARGS[@]}" &
NODE_PID=$!
wait "$NODE_PID"
RC=$?
if [ "$RC" -eq 0 ]; then
  # Sessions (docs/sessions.md): created in one region, read in another, migrating there.
  node demo/sessions.mjs "${ARGS[@]:2}" &
  NODE_PID=$!
  wait "$NODE_PID"
  RC=$?
fi
if [ "$RC" -eq 0 ]; then
  # Real-time feed (docs/realtime.md): a subscriber per region sees every region's changes once.
  node demo/realtime.mjs "${ARGS[@]:2}" &
  NODE_PID=$!
  wait "$NODE_PID"
  RC=$?
fi
set -e
if [ "$RC" -ne 0 ] && [ "$RC" -ne 130 ]; then show_logs; fi
# The query router (docs/router.md): reads through `edgelite router`, the region it prefers killed midway.
if [ "$RC" -eq 0 ] && [ "${#IDS[@]}" -ge 2 ]; then
  LAST=$(( ${#IDS[@]} - 1 ))
  "$BIN" router --config "$DIR/edge-config.yaml" --listen 127.0.0.1:0 --client-region "${IDS[$LAST]}" \
    --log-level warn >"$DIR/router.out" 2>"$DIR/router.log" &
  PIDS+=($!)
  for _ in $(seq 1 200); do grep -q "listening on" "$DIR/router.out" 2>/dev/null && break; sleep 0.05; done
  RURL=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$DIR/router.out" | head -n 1)
  if [ -z "$RURL" ]; then echo "demo: the router did not start" >&2; cat "$DIR/router.log" >&2; exit 1; fi
  echo "demo: router on $RURL in front of ${IDS[*]}, clients in ${IDS[$LAST]}"
  set +e
  node demo/router.mjs --router "$RURL" --kill "${IDS[$LAST]}=${PIDS[$LAST]}" --seconds 4 &
  NODE_PID=$!
  wait "$NODE_PID"
  RC=$?
  set -e
fi
exit "$RC"
