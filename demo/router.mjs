// SPDX-License-Identifier: MIT
// `make demo`, router section (issue 12): reads through `edgelite router`, the region the router
// prefers SIGKILLed midway, reads failing over with no client error, then the router's view of
// the regions and its statement statistics.
//   node demo/router.mjs --router URL --kill ID=PID [--seconds S]
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const o = { seconds: 4 };
for (let i = 2; i < process.argv.length; i += 2) {
  const [a, v] = [process.argv[i], process.argv[i + 1]];
  if (a === '--router') o.router = v;
  else if (a === '--kill') [o.killId, o.killPid] = v.split('=');
  else if (a === '--seconds') o.seconds = Number(v);
  else { console.error(`router.mjs: unknown argument ${a}`); process.exit(2); }
}
if (!o.router || !o.killPid) { console.error('router.mjs: --router URL --kill ID=PID needed'); process.exit(2); }

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'tests', 'client', 'package.json'));
const { createClient } = require('@libsql/client');
const db = createClient({ url: o.router });
const byRegion = {};
let ok = 0;
let failed = 0;
let killedAt = 0;
let firstAfter = 0;
const t0 = Date.now();
const end = t0 + o.seconds * 1000;
await db.execute('CREATE TABLE IF NOT EXISTS demo_router (id INTEGER PRIMARY KEY, v TEXT)');
await db.execute({ sql: 'INSERT OR REPLACE INTO demo_router (id, v) VALUES (1, ?)', args: ['hello through the router'] });
const raw = async () => {
  const res = await fetch(o.router + '/v2/pipeline', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ requests: [{ type: 'execute', stmt: { sql: 'SELECT count(*) FROM demo_router' } }, { type: 'close' }] }) });
  await res.text();
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  return res.headers.get('x-edge-region');
};
const worker = async () => {
  for (let n = 0; Date.now() < end && n < 100000; n++) {
    try {
      const region = n % 2 ? await raw() : ((await db.execute('SELECT v FROM demo_router WHERE id = 1')), null);
      ok++;
      if (region) {
        byRegion[region] = (byRegion[region] ?? 0) + 1;
        if (killedAt && !firstAfter && region !== o.killId) firstAfter = Date.now() - killedAt;
      }
    } catch (e) {
      failed++;
    }
  }
};
const load = Promise.all([worker(), worker(), worker(), worker()]);
setTimeout(() => {
  killedAt = Date.now();
  process.kill(Number(o.killPid), 'SIGKILL');
  console.log(`router demo: SIGKILLed region ${o.killId} (pid ${o.killPid}) after ${killedAt - t0} ms of reads`);
}, (o.seconds * 1000) / 2);
await load;
db.close();
console.log(`router demo: ${ok} reads answered, ${failed} failed; served by ${JSON.stringify(byRegion)}; ` +
  `first read answered elsewhere ${firstAfter} ms after the kill`);
const regions = await (await fetch(o.router + '/v1/router/regions')).json();
for (const r of regions.regions) {
  console.log(`router demo:   ${r.id.padEnd(16)} ${r.up ? 'up  ' : 'DOWN'} rtt ${r.rtt_ms.toFixed(2)} ms, ${r.requests} requests, ${r.errors} errors`);
}
console.log(`router demo: fail-overs ${regions.failovers}, last one took ${regions.last_failover_ms.toFixed(1)} ms`);
const st = await (await fetch(o.router + '/v1/router/stats/statements?sort=calls&limit=5')).json();
for (const s of st.statements) {
  console.log(`router demo:   ${String(s.calls).padStart(6)} calls  p50 ${s.p50_ms.toFixed(2)} ms  p99 ${s.p99_ms.toFixed(2)} ms  ` +
    `${s.region.padEnd(16)} ${s.query}`);
}
process.exit(failed === 0 ? 0 : 1);
