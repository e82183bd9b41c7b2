#!/usr/bin/env bash
# `make demo`: start a node on this machine, run a short workload through the real
# @libsql/client (HTTP and WebSocket), show what happened with timings, stop cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${EDGE_BIN:-build/edgelite}
DATA=$(mktemp -d /tmp/edgelite-demo.XXXXXX)
LOG="$DATA/node.log"
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -TERM "$PID"; wait "$PID" || true; fi
  rm -rf "$DATA"
}
trap cleanup EXIT INT TERM

"$BIN" serve --listen 127.0.0.1:0 --data "$DATA/db" --region local >"$DATA/out" 2>"$LOG" &
PID=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$DATA/out" 2>/dev/null && break
  sleep 0.05
done
URL=$(grep -o 'http://[0-9.:]*' "$DATA/out" | head -1)
if [ -z "$URL" ]; then echo "demo: the node did not start:"; cat "$LOG"; exit 1; fi
echo "demo: node 'local' listening on $URL (data in $DATA/db)"
node demo/demo.mjs "$URL" "$@"
echo "demo: stopping the node (SIGTERM)"
kill -TERM "$PID"; wait "$PID"; PID=""
echo "demo: node stopped cleanly"
