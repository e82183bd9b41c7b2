// SPDX-License-Identifier: MIT
// `edgelite router` in front of three real regions (issue 12, item 2): the real @libsql/client
// through it; load shared among regions of equal RTT; streams pinned to one region through their
// baton; read-your-writes by the bookmark it remembers per token; a write whose region stalled is
// not sent again (no duplicate); a region SIGKILLed under read load costs no read.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { startRouter } from './lib/router.mjs';

async function pipe(url, requests, { baton = null, headers = {} } = {}) {
  const res = await fetch(url + '/v2/pipeline', { method: 'POST', body: JSON.stringify({ baton, requests }),
    headers: { 'content-type': 'application/json', ...headers }, signal: AbortSignal.timeout(15000) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text, region: res.headers.get('x-edge-region'),
    bookmark: res.headers.get('x-edge-bookmark') };
}

const exec = (sql, args = []) => ({ type: 'execute', stmt: { sql, args: args.map((v) => (
  typeof v === 'number' ? { type: 'integer', value: String(v) } : { type: 'text', value: String(v) })) } });

async function routerMetric(url, name) {
  const text = await (await fetch(url + '/metrics')).text();
  for (const line of text.split('\n')) if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  return NaN;
}

describe('router_door', { timeout: 240000 }, () => {
  let c;
  let r;
  let cfg;
  let cfgNear; // rtt_slack_ms 0: with --client-region, only that region while it is up
  before(async () => {
    c = await startCluster({ regions: 3, extraArgs: ['--log-level', 'warn'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    await c.createTable('log', 'CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, v TEXT)');
    // The router's own view: every region straight, equal RTT on loopback (a wide slack
    // puts them all in the balanced set), fast probes, a short deadline.
    cfg = path.join(c.root, 'router.yaml');
    fs.writeFileSync(cfg, [
      `cluster: { name: ${c.name}, secret: "${c.secret}" }`,
      'regions:',
      ...c.ids.map((id) => `  - { id: ${id}, url: "${c.url(id)}", priority: ${c.regions[id].priority} }`),
      'router: { probe_interval_ms: 100, request_timeout_ms: 3000, rtt_slack_ms: 1000 }', ''].join('\n'));
    cfgNear = path.join(c.root, 'router-near.yaml');
    fs.writeFileSync(cfgNear, fs.readFileSync(cfg, 'utf8').replace('rtt_slack_ms: 1000', 'rtt_slack_ms: 0'));
    r = await startRouter(cfg);
  });
  after(async () => {
    if (r) r.proc.kill('SIGKILL');
    if (c) await c.destroy();
  });

  test('the real @libsql/client works through the router (execute, batch, transaction)', async () => {
    const { createClient } = await import('@libsql/client');
    const cl = createClient({ url: r.url });
    try {
      await cl.execute({ sql: 'INSERT INTO t (id, v) VALUES (?, ?)', args: [1, 'one'] });
      await cl.batch([{ sql: 'INSERT INTO t (id, v) VALUES (2, ?)', args: ['two'] },
        { sql: 'INSERT INTO t (id, v) VALUES (3, ?)', args: ['three'] }], 'write');
      const tx = await cl.transaction('write');
      await tx.execute({ sql: 'UPDATE t SET v = ? WHERE id = 1', args: ['uno'] });
      const inTx = await tx.execute('SELECT v FROM t WHERE id = 1');
      assert.equal(inTx.rows[0].v, 'uno');
      await tx.commit();
      // read-your-writes: wherever this read goes, the router attached this client's bookmark
      const rs = await cl.execute('SELECT id, v FROM t ORDER BY id');
      assert.deepEqual(rs.rows.map((x) => [Number(x.id), x.v]), [[1, 'uno'], [2, 'two'], [3, 'three']]);
    } finally {
      cl.close();
    }
  });

  test('WebSocket through the router: @libsql/client over ws://, the session pinned to one region', async () => {
    const { createClient } = await import('@libsql/client');
    const cl = createClient({ url: r.url.replace('http://', 'ws://') });
    try {
      await cl.execute({ sql: 'INSERT INTO t (id, v) VALUES (?, ?)', args: [50, 'ws'] });
      const tx = await cl.transaction('write');
      await tx.execute({ sql: 'UPDATE t SET v = ? WHERE id = 50', args: ['ws-tx'] });
      assert.equal((await tx.execute('SELECT v FROM t WHERE id = 50')).rows[0].v, 'ws-tx');
      await tx.commit();
      const b = await cl.batch(['SELECT count(*) AS n FROM t WHERE id = 50', 'SELECT v FROM t WHERE id = 50'], 'read');
      assert.equal(b[1].rows[0].v, 'ws-tx');
    } finally {
      cl.close();
    }
    const text = await (await fetch(r.url + '/metrics')).text();
    const sessions = [...text.matchAll(/edgelite_router_region_ws_sessions_total\{region="(\w+)"\} (\d+)/g)]
      .map((m) => Number(m[2]));
    assert.equal(sessions.reduce((a, b) => a + b, 0), 1, text);
  });

  test('reads share the load among regions of equal RTT', async () => {
    const seen = {};
    for (let i = 0; i < 300; i++) {
      const q = await pipe(r.url, [exec('SELECT count(*) FROM t'), { type: 'close' }]);
      assert.equal(q.status, 200, q.text);
      seen[q.region] = (seen[q.region] ?? 0) + 1;
    }
    console.log(`# 300 reads: ${JSON.stringify(seen)}`);
    for (const id of c.ids) assert.ok((seen[id] ?? 0) >= 30, `region ${id} got ${seen[id] ?? 0} of 300`);
  });

  test('a stream stays on its region; a baton the router did not issue is refused', async () => {
    const open = await pipe(r.url, [exec('BEGIN'), exec('INSERT INTO t (id, v) VALUES (10, ?)', ['tx'])]);
    assert.equal(open.status, 200, open.text);
    const region = open.region;
    let baton = open.json.baton;
    assert.match(baton, /^\d+\./);
    for (let i = 0; i < 8; i++) {
      const q = await pipe(r.url, [exec('SELECT count(*) FROM t WHERE id = 10')], { baton });
      assert.equal(q.status, 200, q.text);
      assert.equal(q.region, region, 'the stream moved');
      assert.equal(q.json.results[0].response.result.rows[0][0].value, '1'); // its own uncommitted row
      baton = q.json.baton;
    }
    const end = await pipe(r.url, [exec('COMMIT'), { type: 'close' }], { baton });
    assert.equal(end.status, 200, end.text);
    assert.equal(end.region, region);
    const bad = await pipe(r.url, [exec('SELECT 1')], { baton: 'forged' });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.code, 'STREAM_INVALID');
  });

  test('read-your-writes per token: the write\'s bookmark goes with the next read', async () => {
    const h = { authorization: 'Bearer ryw-test' };
    const before = await routerMetric(r.url, 'edgelite_router_ryw_bookmarks_total');
    for (let i = 0; i < 10; i++) {
      const w = await pipe(r.url, [exec('INSERT INTO t (id, v) VALUES (?, ?)', [100 + i, `w${i}`]), { type: 'close' }],
        { headers: h });
      assert.equal(w.status, 200, w.text);
      assert.ok(w.bookmark);
      const q = await pipe(r.url, [exec('SELECT v FROM t WHERE id = ?', [100 + i]), { type: 'close' }], { headers: h });
      assert.equal(q.status, 200, q.text);
      assert.deepEqual(q.json.results[0].response.result.rows, [[{ type: 'text', value: `w${i}` }]],
        `read ${i} in ${q.region} missed the write made in ${w.region}`);
    }
    assert.equal(await routerMetric(r.url, 'edgelite_router_ryw_bookmarks_total'), before + 10);
  });

  test('a write whose region stalls is answered as unknown and not sent again', async () => {
    // Only c for this router: every request goes there first.
    const rc = await startRouter(cfgNear, ['--client-region', 'c']);
    try {
      assert.equal((await pipe(rc.url, [exec('SELECT 1'), { type: 'close' }])).region, 'c');
      c.pause('c'); // its socket still takes the connection: the write is on its way, no answer comes
      let w;
      try {
        w = await pipe(rc.url, [exec("INSERT INTO log (v) VALUES ('once')"), { type: 'close' }]);
      } finally {
        c.resume('c');
      }
      assert.equal(w.status, 502, w.text);
      assert.equal(w.json.code, 'WRITE_OUTCOME_UNKNOWN');
      assert.equal(await routerMetric(rc.url, 'edgelite_router_writes_not_retried_total'), 1);
      // c runs it once resumed; nowhere else did it run: exactly one row everywhere.
      const conv = await c.waitConverged(['t'], 20000);
      assert.ok(conv.ok);
      const once = await c.waitFor(async () => {
        for (const id of c.ids) {
          if (Number((await c.rows(id, "SELECT count(*) FROM log WHERE v = 'once'"))[0][0]) !== 1) return false;
        }
        return true;
      }, 20000, 100);
      assert.ok(once, 'the write ran twice, or never');
    } finally {
      rc.proc.kill('SIGKILL');
    }
  });

  test('a region SIGKILLed under read load: no failed read, fail-over measured', async () => {
    const rc = await startRouter(cfgNear, ['--client-region', 'c']);
    try {
      const byRegion = {};
      let failed = 0;
      let maxMs = 0;
      let killedAt = 0;
      let firstAfter = 0;
      const deadline = Date.now() + 6000;
      let n = 0;
      const worker = async () => {
        while (Date.now() < deadline && n < 5000) {
          n++;
          const t0 = Date.now();
          const q = await pipe(rc.url, [exec('SELECT count(*) FROM t'), { type: 'close' }]).catch((e) => ({ status: 0, text: String(e) }));
          const ms = Date.now() - t0;
          if (q.status !== 200) failed++;
          else {
            byRegion[q.region] = (byRegion[q.region] ?? 0) + 1;
            if (killedAt && !firstAfter && q.region !== 'c') firstAfter = Date.now() - killedAt;
          }
          if (ms > maxMs) maxMs = ms;
        }
      };
      const load = Promise.all([worker(), worker(), worker(), worker()]);
      await sleep(1500);
      killedAt = Date.now();
      await c.kill('c');
      await load;
      const fo = await routerMetric(rc.url, 'edgelite_router_last_failover_ms');
      console.log(`# ${n} reads, by region ${JSON.stringify(byRegion)}, failed ${failed}, slowest ${maxMs} ms, ` +
        `first read elsewhere ${firstAfter} ms after the kill, router fail-over ${fo} ms`);
      assert.equal(failed, 0);
      assert.ok(byRegion.c > 0, 'c never served before the kill');
      assert.ok((byRegion.a ?? 0) + (byRegion.b ?? 0) > 0, 'nothing failed over');
      // writes go on too (c is known down: never tried)
      const w = await pipe(rc.url, [exec("INSERT INTO log (v) VALUES ('after')"), { type: 'close' }]);
      assert.equal(w.status, 200, w.text);
      assert.notEqual(w.region, 'c');
    } finally {
      rc.proc.kill('SIGKILL');
    }
  });
});
