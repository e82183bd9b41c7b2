// SPDX-License-Identifier: MIT
// The sessions part of `make demo` (docs/sessions.md): a session created in the first region is read in
// another, then read there until its home migrates to it; prints what each step saw.
//
//   node demo/sessions.mjs --region ID=URL [--region ID=URL ...]
// Exit status 1 when a step does not behave as documented.

const regions = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--region') {
    const [id, url] = process.argv[++i].split('=');
    regions.push({ id, url });
  }
}
if (regions.length < 2) {
  console.log('sessions: needs 2 regions or more; skipped');
  process.exit(0);
}
const [home, there] = regions;

async function call(url, method, path, body) {
  const t0 = performance.now();
  const res = await fetch(url + path, {
    method, headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined, signal: AbortSignal.timeout(10000),
  });
  const json = await res.json().catch(() => null);
  return { status: res.status, json, ms: performance.now() - t0 };
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fail = (msg) => { console.log(`sessions: FAILED: ${msg}`); process.exit(1); };

const id = `demo-${Date.now()}`;
console.log('\n== sessions: created in one region, read in another, migrating to where it is used');
const c = await call(home.url, 'POST', '/v1/sessions', { id, data: { user: 'ann', cart: ['sku-1'] }, ttl_s: 600 });
if (c.status !== 201) fail(`create at ${home.id}: HTTP ${c.status} ${JSON.stringify(c.json)}`);
console.log(`created ${id} at ${home.id}: home ${c.json.home}, ${c.ms.toFixed(1)} ms`);
let r;
for (let i = 0; i < 200; i++) {
  r = await call(there.url, 'GET', `/v1/sessions/${id}`);
  if (r.status === 200) break;
  await sleep(25);
}
if (r.status !== 200) fail(`never readable at ${there.id}`);
console.log(`read at ${there.id} (access 1): home ${r.json.home}, served locally in ${r.ms.toFixed(1)} ms`);
const w = await call(there.url, 'PATCH', `/v1/sessions/${id}`, { cart: ['sku-1', 'sku-2'] });
if (w.status !== 200) fail(`patch at ${there.id}: HTTP ${w.status}`);
console.log(`patch at ${there.id} (access 2): forwarded to ${w.json.home}, ${w.ms.toFixed(1)} ms (a WAN round trip)`);
r = await call(there.url, 'GET', `/v1/sessions/${id}`);
console.log(`read at ${there.id} (access 3): home ${r.json.home}; sessions.migrate_after is 3`);
let moved;
for (let i = 0; i < 400; i++) {
  moved = await call(there.url, 'GET', `/v1/sessions/${id}`);
  if (moved.status === 200 && moved.json.home === there.id) break;
  await sleep(25);
}
if (moved.json?.home !== there.id) fail(`the home did not move to ${there.id}`);
console.log(`home is now ${moved.json.home} (epoch ${moved.json.epoch}); data ${JSON.stringify(moved.json.data)}`);
const w2 = await call(there.url, 'PATCH', `/v1/sessions/${id}`, { cart: ['sku-1', 'sku-2', 'sku-3'] });
if (w2.status !== 200 || w2.json.home !== there.id) fail(`local patch at ${there.id}: HTTP ${w2.status}`);
console.log(`patch at ${there.id}: local now, ${w2.ms.toFixed(1)} ms`);
const s = (await call(there.url, 'GET', '/v1/sessions/stats')).json;
const sh = (await call(home.url, 'GET', '/v1/sessions/stats')).json;
console.log(`stats ${there.id}: hit rate ${(s.hit_rate * 100).toFixed(0)}%, forwards ${s.forwards}, migrations in ${s.migrations.in};` +
  ` ${home.id}: migrations out ${sh.migrations.out}; compression ${sh.compression_ratio.toFixed(2)}x`);
