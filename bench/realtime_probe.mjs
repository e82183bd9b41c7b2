// SPDX-License-Identifier: MIT
// bench/realtime_probe.mjs (run by bench/realtime.sh): the real-time feed on a real 2-region cluster.
//  fanout:  S subscribers of one table on region a, a writer inserting rows in batches at region a for D
//           seconds: change events delivered per second by the node (its counter, checked against what the
//           subscribers counted);
//  latency: one subscriber at a (in a process of its own: bench/realtime_sub.mjs), single-row writes at a
//           (local) and at b (cross-region; with --wan, the regions' emulated one-way delay applies):
//           commit-to-event latency p50/p99;
//  idle:    C idle subscriber connections at a: the node's RSS growth per connection.
// --trace=FILE: the nodes record each change's hops in FILE (EDGE_TRACE_FILE, src/repl/trace.h) and the
//           latency phase prints TRACE lines: p50/p99 of each hop of its events, local and remote.
// Prints RESULT lines, never pass/fail. Figures depend on the machine (the load generator shares it).
import { startCluster, sleep } from '../tests/client/lib/cluster.mjs';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import { spawn } from 'node:child_process';

const require = createRequire(new URL('../tests/client/package.json', import.meta.url));
const WebSocket = require('ws');

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const SUBS = Number(args.subs ?? 1000);
const DUR = Number(args.duration ?? 10);
const IDLE = Number(args.idle ?? 10000);
const LAT_N = Number(args.latency ?? 500);
const WAN = args.wan ?? '';
const TRACE = args.trace ?? '';
if (TRACE) { fs.writeFileSync(TRACE, ''); process.env.EDGE_TRACE_FILE = TRACE; }

const rss = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
};
const status = async (c, id) => (await fetch(`${c.url(id)}/v1/realtime/status`)).json();
const pct = (a, p) => { const s = a.slice().sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

function openSub(url, onFrame, from = 'now') {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws') + '/v1/realtime', ['edgelite-realtime1'], { perMessageDeflate: false });
    ws.on('open', () => { ws.send(JSON.stringify({ type: 'subscribe', id: 1, tables: ['feed'], from })); });
    let ready = false;
    ws.on('message', (d) => {
      if (!ready) {
        const s = d.toString();
        if (s.includes('"ready"')) { ready = true; resolve(ws); }
        return;
      }
      onFrame(d);
    });
    ws.on('error', reject);
  });
}

const extra = ['--log-level', 'warn', ...(WAN ? ['--emulate-wan', WAN] : [])];
const ids = WAN ? JSON.parse(fs.readFileSync(WAN, 'utf8')).regions.slice(0, 2).map((r) => r.id) : undefined;
const c = await startCluster({ regions: 2, ids, extraArgs: extra, realtime: { max_connections: IDLE + SUBS + 100, queue_bytes: 8 * 1024 * 1024 } });
const [A, B] = c.ids;
try {
  await c.createTable('feed', 'CREATE TABLE IF NOT EXISTS feed (id INTEGER PRIMARY KEY, t REAL, v TEXT)');

  // ---- fan-out
  let counted = 0;
  const needle = Buffer.from('"type":"change"');
  const subs = [];
  for (let i = 0; i < SUBS; i++) {
    subs.push(await openSub(c.url(A), (d) => {
      let k = 0;
      for (let at = d.indexOf(needle); at >= 0; at = d.indexOf(needle, at + needle.length)) k++;
      counted += k;
    }));
  }
  const before = (await status(c, A)).deliveries_total;
  const t0 = Date.now();
  let next = 1;
  const writer = async () => {
    while (Date.now() - t0 < DUR * 1000) {
      const vals = [];
      for (let k = 0; k < 10; k++) vals.push(`(${next++}, 0, 'x')`);
      await c.sql(A, `INSERT INTO feed VALUES ${vals.join(',')}`);
    }
  };
  await Promise.all([writer(), writer()]);
  const wrote = next - 1;
  const tEnd = Date.now();
  // let the queues drain (bounded)
  for (let i = 0; i < 200 && counted < wrote * SUBS; i++) await sleep(50);
  const after = (await status(c, A)).deliveries_total;
  const secs = (tEnd - t0) / 1000;
  console.log(`RESULT name=realtime_fanout subscribers=${SUBS} rows=${wrote} seconds=${secs.toFixed(1)} `
    + `deliveries_per_s=${Math.round((after - before) / secs)} client_counted=${counted} expected=${wrote * SUBS}`);
  for (const s of subs) s.terminate();
  await sleep(500);

  // ---- latency
  // The subscriber runs in a process of its own (bench/realtime_sub.mjs): in this one, the writer's requests
  // and timers would queue the events behind them and count their delay as the node's.
  const lat = { [A]: [], [B]: [] };
  const fromCommit = { [A]: [], [B]: [] }; // the origin's commit (its HLC) to the event's arrival
  const sent = new Map();
  const traced = [];
  const sub = spawn(process.execPath, [new URL('./realtime_sub.mjs', import.meta.url).pathname, c.url(A), 'feed'],
    { stdio: ['pipe', 'pipe', 'inherit'] });
  let rest = '';
  let subReady;
  const readyP = new Promise((r) => { subReady = r; });
  sub.stdout.setEncoding('utf8');
  sub.stdout.on('data', (d) => {
    const lines = (rest + d).split('\n');
    rest = lines.pop();
    for (const line of lines) {
      if (line === 'READY') { subReady(); continue; }
      const [pk, ns, wall, hlcMs, origin, seq] = line.split(' ');
      const st = sent.get(Number(pk));
      if (st) {
        traced.push({ at: st.at, req: st.t, arrived: BigInt(ns), key: `${origin} ${seq}` });
        lat[st.at].push(Number(BigInt(ns) - st.t) / 1e6);
        fromCommit[st.at].push(Number(wall) - Number(hlcMs));
        sent.delete(Number(pk));
      }
    }
  });
  await Promise.race([readyP, sleep(10000).then(() => { throw new Error('the subscriber did not get ready'); })]);
  let id = 10_000_000;
  for (const at of [A, B]) {
    for (let i = 0; i < LAT_N; i++) {
      const k = id++;
      sent.set(k, { t: process.hrtime.bigint(), at });
      await c.sql(at, 'INSERT INTO feed VALUES (?, 0, ?)', [k, 'l']);
      await sleep(2);
    }
  }
  for (let i = 0; i < 100 && sent.size > 0; i++) await sleep(50);
  sub.stdin.end();
  await new Promise((r) => { if (sub.exitCode !== null) r(); else sub.on('exit', r); });
  for (const at of [A, B]) {
    const a = lat[at];
    console.log(`RESULT name=realtime_latency writer=${at === A ? 'local' : 'remote'} region=${at} n=${a.length} `
      + `p50_ms=${pct(a, 0.5)?.toFixed(2)} p99_ms=${pct(a, 0.99)?.toFixed(2)} `
      + `commit_to_event_p50_ms=${pct(fromCommit[at], 0.5)?.toFixed(1)} `
      + `commit_to_event_p99_ms=${pct(fromCommit[at], 0.99)?.toFixed(1)}`);
  }
  if (TRACE) {
    // hop -> ns per "origin seq"; the first line of a hop wins (a node traces its own hops only)
    const hops = new Map();
    for (const l of fs.readFileSync(TRACE, 'utf8').split('\n')) {
      const [hop, origin, seq, ns] = l.split(' ');
      if (!ns) continue;
      const k = `${origin} ${seq}`;
      if (!hops.has(k)) hops.set(k, {});
      const h = hops.get(k);
      if (h[hop] === undefined) h[hop] = BigInt(ns);
    }
    const path = {
      local: ['req', 'commit', 'feed', 'loop', 'written', 'arrived'],
      remote: ['req', 'commit', 'peer_queued', 'peer_sent', 'rx', 'apply', 'applied', 'feed', 'loop', 'written', 'arrived'],
    };
    for (const at of [A, B]) {
      const kind = at === A ? 'local' : 'remote';
      const evs = traced.filter((t) => t.at === at).map((t) => ({ ...hops.get(t.key), req: t.req, arrived: t.arrived }));
      const names = path[kind];
      for (let i = 0; i + 1 < names.length; i++) {
        const d = evs.filter((e) => e[names[i]] !== undefined && e[names[i + 1]] !== undefined)
          .map((e) => Number(e[names[i + 1]] - e[names[i]]) / 1e6);
        console.log(`TRACE writer=${kind} hop=${names[i]}->${names[i + 1]} n=${d.length} p50_ms=${pct(d, 0.5)?.toFixed(3)} `
          + `p99_ms=${pct(d, 0.99)?.toFixed(3)}`);
      }
      const d = evs.filter((e) => e.commit !== undefined).map((e) => Number(e.arrived - e.commit) / 1e6);
      console.log(`TRACE writer=${kind} hop=commit->arrived n=${d.length} p50_ms=${pct(d, 0.5)?.toFixed(3)} p99_ms=${pct(d, 0.99)?.toFixed(3)}`);
    }
  }
  // note: p50/p99 run from before the write's HTTP request to the event's arrival, so they include the request
  // (its answer races the event); for the remote writer they include replication to a. commit_to_event starts at
  // the origin's commit (the HLC's wall part, 1 ms steps, and an HLC can run ahead of the wall clock): the
  // node's part alone.

  // ---- idle subscribers
  await sleep(500);
  const pid = c.regions[A].proc.pid;
  const r0 = rss(pid);
  const idle = [];
  for (let i = 0; i < IDLE; i++) {
    try { idle.push(await openSub(c.url(A), () => {})); } catch (e) { console.error(`idle ${i}: ${e.message}`); break; }
  }
  await sleep(1000);
  const r1 = rss(pid);
  console.log(`RESULT name=realtime_idle connections=${idle.length} rss_before_mb=${(r0 / 1048576).toFixed(1)} `
    + `rss_after_mb=${(r1 / 1048576).toFixed(1)} bytes_per_subscriber=${Math.round((r1 - r0) / Math.max(1, idle.length))}`);
  for (const s of idle) s.terminate();
} finally {
  await c.destroy();
}
