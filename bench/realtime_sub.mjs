// SPDX-License-Identifier: MIT
// bench/realtime_sub.mjs (started by bench/realtime_probe.mjs): the latency phase's subscriber, in a process of
// its own so that the writer's event loop (HTTP requests, timers, GC) does not delay the events it times.
// Usage: node realtime_sub.mjs <node url> <table>. Prints "READY" once subscribed, then one line per change
// event: "<pk> <CLOCK_MONOTONIC ns when its frame arrived> <wall clock ms then> <the event's hlc, as wall ms>
// <origin> <seq>"
// (process.hrtime is system-wide on Linux, so the parent compares it with its own; the HLC's wall part is the
// origin's commit time, on this machine's clock). Exits when its stdin closes.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../tests/client/package.json', import.meta.url));
const WebSocket = require('ws');
const [url, table] = process.argv.slice(2);

const ws = new WebSocket(url.replace(/^http/, 'ws') + '/v1/realtime', ['edgelite-realtime1'], { perMessageDeflate: false });
let ready = false;
ws.on('open', () => ws.send(JSON.stringify({ type: 'subscribe', id: 1, tables: [table], from: 'now' })));
ws.on('message', (d) => {
  const now = process.hrtime.bigint();
  const wall = performance.timeOrigin + performance.now();
  const s = d.toString();
  if (!ready) {
    if (s.includes('"ready"')) { ready = true; process.stdout.write('READY\n'); }
    return;
  }
  let out = '';
  // An HLC is wall ms << 16 | a counter (docs/realtime.md).
  for (const m of s.matchAll(/"pk":(\d+).*?"origin":"([^"]*)","seq":(\d+),"hlc":"(\d+)"/g)) {
    out += `${m[1]} ${now} ${wall.toFixed(3)} ${BigInt(m[4]) >> 16n} ${m[2]} ${m[3]}\n`;
  }
  if (out) process.stdout.write(out);
});
ws.on('error', (e) => { process.stderr.write(`realtime_sub: ${e.message}\n`); process.exit(1); });
process.stdin.on('end', () => { ws.terminate(); process.exit(0); });
process.stdin.resume();
