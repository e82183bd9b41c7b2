// SPDX-License-Identifier: MIT
// The real-time part of `make demo` (docs/realtime.md): a subscriber in each region (clients/js/realtime.mjs)
// receives the changes written in all of them, each once, with the write-to-event latency (the emulated WAN
// delay included for changes from other regions).
//
//   node demo/realtime.mjs --region ID=URL [--region ID=URL ...]
// Exit status 1 when a subscriber misses a change or gets one twice.
import { createRequire } from 'node:module';
import { edgeliteRealtime } from '../clients/js/realtime.mjs';

const require = createRequire(new URL('../tests/client/package.json', import.meta.url));
const WebSocket = globalThis.WebSocket ?? require('ws');

const regions = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--region') {
    const [id, url] = process.argv[++i].split('=');
    regions.push({ id, url });
  }
}
if (regions.length < 2) {
  console.log('realtime: needs 2 regions or more; skipped');
  process.exit(0);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sql = async (url, q, args = []) => {
  const res = await fetch(`${url}/v2/pipeline`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(10000),
    body: JSON.stringify({ requests: [{ type: 'execute', stmt: { sql: q, args: args.map((v) => (typeof v === 'number'
      ? { type: 'integer', value: String(v) } : { type: 'text', value: String(v) })) } }, { type: 'close' }] }),
  });
  return res.status;
};
const fail = (msg) => { console.log(`realtime: FAILED: ${msg}`); process.exit(1); };

console.log('\n== realtime: a subscriber in each region, every region writing');
if (await sql(regions[0].url, 'CREATE TABLE IF NOT EXISTS demo_feed (id INTEGER PRIMARY KEY, at TEXT, sent REAL)') !== 200) {
  fail('cannot create demo_feed');
}
for (let i = 0; i < 100; i++) { // the table reaches every region
  const ok = await Promise.all(regions.map((r) => sql(r.url, 'SELECT count(*) FROM demo_feed')));
  if (ok.every((s) => s === 200)) break;
  await sleep(100);
}
const N = 10;
const subs = regions.map((r) => {
  const s = { region: r, got: new Map(), lat: {}, ready: false };
  s.feed = edgeliteRealtime(r.url, { WebSocket });
  s.feed.on('ready', () => { s.ready = true; });
  s.feed.subscribe('demo_feed', { from: 'now' }, (ev) => {
    if (ev.op !== 'insert') return;
    s.got.set(ev.pk, (s.got.get(ev.pk) ?? 0) + 1);
    (s.lat[ev.origin] ??= []).push(Date.now() - ev.row.sent);
  });
  return s;
});
for (let i = 0; i < 200 && !subs.every((s) => s.ready); i++) await sleep(20);
if (!subs.every((s) => s.ready)) fail('a subscriber never got ready');
const t0 = Date.now();
await Promise.all(regions.map(async (r, k) => {
  for (let i = 0; i < N; i++) {
    await sql(r.url, 'INSERT INTO demo_feed (id, at, sent) VALUES (?, ?, ?)', [t0 % 1e9 * 10 + k * 1000 + i, r.id, Date.now()]);
    await sleep(20);
  }
}));
const want = N * regions.length;
for (let i = 0; i < 300 && !subs.every((s) => s.got.size >= want); i++) await sleep(20);
let ok = true;
for (const s of subs) {
  const twice = [...s.got.values()].filter((n) => n > 1).length;
  const per = Object.entries(s.lat).map(([o, a]) => {
    a.sort((x, y) => x - y);
    return `${o}: p50 ${a[Math.floor(a.length / 2)]} ms, max ${a[a.length - 1]} ms`;
  }).join('; ');
  console.log(`subscriber at ${s.region.id}: ${s.got.size}/${want} changes${twice ? `, ${twice} twice` : ''}  (${per})`);
  ok = ok && s.got.size === want && twice === 0;
  s.feed.close();
}
if (!ok) fail('a subscriber missed a change or got one twice');
console.log('realtime: OK: every subscriber got every change of every region once');
process.exit(0);
