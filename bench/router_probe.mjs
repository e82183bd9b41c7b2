// SPDX-License-Identifier: MIT
// bench/router.sh's measurements (figures only, never pass/fail): a 3-region cluster on loopback
// with `edgelite router` in front. Prints RESULT lines.
//   1. point reads straight to a region vs through the router (same concurrency): rps, p50, p99,
//      and the router's added latency at p50/p99
//   2. a 100-row aggregate over 20000 rows, cached vs uncached (each uncached call is a text of its own)
//   3. fail-over: reads through the router pinned to one region by --client-region, that region
//      SIGKILLed: time from the kill to the first read answered elsewhere, failed reads
//   1b. the same point reads over WebSocket (@libsql/client, ws://), straight vs through the router
//      (which reads every message: bookmarks, the session's state for fail-over)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startCluster, sleep } from '../tests/client/lib/cluster.mjs';

const SECONDS = Number(process.env.ROUTER_BENCH_SECONDS ?? 4);
const CONC = Number(process.env.ROUTER_BENCH_CONC ?? 16);

function startRouter(bin, config, extra = []) {
  const proc = spawn(bin, ['router', '--config', config, '--listen', '127.0.0.1:0', '--log-level', 'error', ...extra],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve({ proc, url: m[1] });
    });
    proc.once('exit', (c) => reject(new Error(`router exited ${c}`)));
  });
}

const body = (sql) => JSON.stringify({ requests: [{ type: 'execute', stmt: { sql } }, { type: 'close' }] });

async function one(url, sql) {
  const res = await fetch(url + '/v2/pipeline', { method: 'POST', body: body(sql), headers: { 'content-type': 'application/json' } });
  const t = await res.text();
  if (res.status !== 200) throw new Error(`${res.status} ${t.slice(0, 200)}`);
  return res;
}

function pct(a, q) {
  const s = [...a].sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : 0;
}

async function load(url, sqlOf, seconds, conc) {
  const lat = [];
  const end = Date.now() + seconds * 1000;
  let n = 0;
  let errors = 0;
  const worker = async () => {
    while (Date.now() < end && n < 2e6) {
      const i = n++;
      const t0 = process.hrtime.bigint();
      try { await one(url, sqlOf(i)); } catch { errors++; }
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  };
  const t0 = Date.now();
  await Promise.all(Array.from({ length: conc }, worker));
  const s = (Date.now() - t0) / 1000;
  return { rps: lat.length / s, p50: pct(lat, 0.5), p99: pct(lat, 0.99), errors, n: lat.length };
}

const bin = process.env.EDGE_BIN;
const c = await startCluster({ regions: 3, router: '{ cache: { admit_after: 2, max_bytes: 67108864 } }',
  extraArgs: ['--log-level', 'error'] });
try {
  await c.createTable('kv', 'CREATE TABLE IF NOT EXISTS kv (id INTEGER PRIMARY KEY, v TEXT)');
  await c.createTable('big', 'CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, k INTEGER, v INTEGER)');
  await one(c.url('a'), "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 1000) " +
    "INSERT INTO kv (id, v) SELECT i, 'value-' || i FROM s");
  await one(c.url('a'), 'WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20000) ' +
    'INSERT INTO big (id, k, v) SELECT i, i % 100, i * 7 FROM s');
  // every region done applying before anything is timed
  await c.waitConverged(['kv'], 60000);
  await c.waitFor(async () => Number((await c.rows('b', 'SELECT count(*) FROM big'))[0][0]) === 20000 &&
    Number((await c.rows('c', 'SELECT count(*) FROM big'))[0][0]) === 20000, 60000, 200);
  await sleep(1000);
  const cfg = path.join(c.root, 'router.yaml');
  fs.writeFileSync(cfg, [`cluster: { name: ${c.name}, secret: "${c.secret}" }`, 'regions:',
    ...c.ids.map((id) => `  - { id: ${id}, url: "${c.url(id)}", priority: ${c.regions[id].priority} }`),
    'router: { probe_interval_ms: 100, request_timeout_ms: 3000, rtt_slack_ms: 0 }', ''].join('\n'));
  const r = await startRouter(bin, cfg, ['--client-region', 'b']);
  // 1. point reads over 1000 keys; every text differs (a comment), so the cache never answers
  // them and both paths do the same work in the region
  const point = (i) => `SELECT v FROM kv WHERE id = ${(i % 1000) + 1} /* ${i} */`;
  // alternated twice, the better run of each kept: the machine is shared
  const best = (a, b) => (!a || b.rps > a.rps ? b : a);
  let direct = null;
  let routed = null;
  await load(c.url('b'), point, 1, CONC);
  await load(r.url, point, 1, CONC);
  for (let k = 0; k < 2; k++) {
    direct = best(direct, await load(c.url('b'), point, SECONDS, CONC));
    routed = best(routed, await load(r.url, point, SECONDS, CONC));
  }
  console.log(`RESULT name=router_point_reads direct_rps=${direct.rps.toFixed(0)} routed_rps=${routed.rps.toFixed(0)} ` +
    `ratio=${(routed.rps / direct.rps).toFixed(2)} direct_p50_ms=${direct.p50.toFixed(3)} direct_p99_ms=${direct.p99.toFixed(3)} ` +
    `routed_p50_ms=${routed.p50.toFixed(3)} routed_p99_ms=${routed.p99.toFixed(3)} ` +
    `added_p50_ms=${(routed.p50 - direct.p50).toFixed(3)} added_p99_ms=${(routed.p99 - direct.p99).toFixed(3)} ` +
    `errors=${direct.errors + routed.errors} conc=${CONC}`);
  // 1b. over WebSocket: one @libsql/client per path, CONC executes in flight on it
  // the client is installed with the tests (tests/client/node_modules)
  const req = createRequire(new URL('../tests/client/package.json', import.meta.url));
  const { createClient } = await import(pathToFileURL(req.resolve('@libsql/client')).href);
  const wsLoad = async (url, seconds) => {
    const cl = createClient({ url: url.replace('http://', 'ws://') });
    const lat = [];
    let n = 0;
    let errors = 0;
    const stop = Date.now() + seconds * 1000;
    const t0 = Date.now();
    await Promise.all(Array.from({ length: CONC }, async () => {
      while (Date.now() < stop && n < 2e6) {
        const i = n++;
        const s0 = process.hrtime.bigint();
        try { await cl.execute(point(i)); } catch { errors++; }
        lat.push(Number(process.hrtime.bigint() - s0) / 1e6);
      }
    }));
    const secs = (Date.now() - t0) / 1000;
    cl.close();
    return { rps: lat.length / secs, p50: pct(lat, 0.5), p99: pct(lat, 0.99), errors };
  };
  let wsDirect = null;
  let wsRouted = null;
  await wsLoad(c.url('b'), 1);
  await wsLoad(r.url, 1);
  for (let k = 0; k < 2; k++) {
    wsDirect = best(wsDirect, await wsLoad(c.url('b'), SECONDS));
    wsRouted = best(wsRouted, await wsLoad(r.url, SECONDS));
  }
  console.log(`RESULT name=router_ws_point_reads direct_rps=${wsDirect.rps.toFixed(0)} routed_rps=${wsRouted.rps.toFixed(0)} ` +
    `ratio=${(wsRouted.rps / wsDirect.rps).toFixed(2)} direct_p50_ms=${wsDirect.p50.toFixed(3)} ` +
    `routed_p50_ms=${wsRouted.p50.toFixed(3)} direct_p99_ms=${wsDirect.p99.toFixed(3)} ` +
    `routed_p99_ms=${wsRouted.p99.toFixed(3)} errors=${wsDirect.errors + wsRouted.errors} conc=${CONC}`);
  // 2. aggregate: cached (one text) vs uncached (a text of its own each time)
  const agg = 'SELECT k, count(*), sum(v) FROM big GROUP BY k';
  const unc = await load(c.url('b'), (i) => `${agg} /* u${i} */`, SECONDS, 4);
  await one(c.url('b'), agg);
  await one(c.url('b'), agg);
  const cached = await load(c.url('b'), () => agg, SECONDS, 4);
  console.log(`RESULT name=router_cache_aggregate uncached_rps=${unc.rps.toFixed(0)} cached_rps=${cached.rps.toFixed(0)} ` +
    `speedup=${(cached.rps / unc.rps).toFixed(1)} uncached_p50_ms=${unc.p50.toFixed(3)} cached_p50_ms=${cached.p50.toFixed(3)} rows=100`);
  // 3. fail-over: b killed under load through the router
  let killedAt = 0;
  let firstElsewhere = 0;
  let failed = 0;
  let reads = 0;
  const end = Date.now() + 3000;
  const worker = async () => {
    while (Date.now() < end && reads < 1e6) {
      reads++;
      try {
        const res = await one(r.url, 'SELECT count(*) FROM kv');
        if (killedAt && !firstElsewhere && res.headers.get('x-edge-region') !== 'b') firstElsewhere = Date.now() - killedAt;
      } catch { failed++; }
    }
  };
  const w = Promise.all(Array.from({ length: 8 }, worker));
  await sleep(1000);
  killedAt = Date.now();
  await c.kill('b');
  await w;
  const m = await (await fetch(r.url + '/metrics')).text();
  const fo = /edgelite_router_last_failover_ms ([\d.]+)/.exec(m)?.[1];
  console.log(`RESULT name=router_failover first_read_elsewhere_ms=${firstElsewhere} router_failover_ms=${fo} ` +
    `failed_reads=${failed} reads=${reads}`);
  r.proc.kill('SIGKILL');
} finally {
  await c.destroy();
}
