// SPDX-License-Identifier: MIT
// The front door (issue 12, item 2), deterministically: a region that the door still believes up
// (its next probe is minutes away) but whose port refuses — a read and a write sent there are both
// answered by another region, because nothing of them reached the refusing one, and both count as
// fail-overs (no write is reported as "not retried"); and the door's statement statistics count the
// rows its answers returned (pipeline results, batch steps, cursor rows).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startCluster } from './lib/cluster.mjs';
import { startRouter } from './lib/router.mjs';

async function post(url, p, body) {
  const res = await fetch(url + p, { method: 'POST', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(15000) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text, region: res.headers.get('x-edge-region') };
}

const exec = (sql) => ({ type: 'execute', stmt: { sql } });

async function metric(url, name) {
  const text = await (await fetch(url + '/metrics')).text();
  for (const line of text.split('\n')) if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  return NaN;
}

async function regionsOf(url) {
  return (await (await fetch(url + '/v1/router/regions')).json()).regions;
}

describe('router_door_refused', { timeout: 240000 }, () => {
  let c;
  let cfg;
  const routers = [];
  before(async () => {
    c = await startCluster({ regions: 3, extraArgs: ['--log-level', 'warn'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    // Probes every 10 minutes: after the first round the door learns nothing more by itself, so
    // the region killed below is still "up" for it and gets the next request.
    cfg = path.join(c.root, 'router-refused.yaml');
    fs.writeFileSync(cfg, [
      `cluster: { name: ${c.name}, secret: "${c.secret}" }`,
      'regions:',
      ...c.ids.map((id) => `  - { id: ${id}, url: "${c.url(id)}", priority: ${c.regions[id].priority} }`),
      'router: { probe_interval_ms: 600000, request_timeout_ms: 10000, rtt_slack_ms: 0, fallback: [b] }', ''].join('\n'));
  });
  after(async () => {
    for (const r of routers) r.proc.kill('SIGKILL');
    if (c) await c.destroy();
  });

  // A door whose nearest region is c (--client-region c), which has answered its first probe;
  // then c is SIGKILLed: its port refuses, and the door has not heard.
  async function doorWithDeadNearest() {
    if (!(await c.waitFor(async () => (await fetch(c.url('c') + '/health').catch(() => null))?.ok, 20000, 100))) {
      assert.fail('c is not healthy');
    }
    const r = await startRouter(cfg, ['--client-region', 'c']);
    routers.push(r);
    const probed = await c.waitFor(async () => (await regionsOf(r.url)).every((x) => x.up && x.rtt_ms > 0), 20000, 50);
    assert.ok(probed, 'the first probes did not come back');
    await c.kill('c');
    assert.equal((await regionsOf(r.url)).find((x) => x.id === 'c').up, true);
    return r;
  }

  test('a read sent to a refusing region is answered by another one, and counted', async () => {
    assert.ok((await c.sql('a', "INSERT INTO t (id, v) VALUES (1, 'one')")).ok);
    assert.ok(await c.waitFor(async () => (await c.rows('b', 'SELECT count(*) FROM t WHERE id = 1'))[0][0] == 1,
      20000, 50));
    const r = await doorWithDeadNearest();
    const f0 = await metric(r.url, 'edgelite_router_failovers_total');
    const res = await post(r.url, '/v2/pipeline', { baton: null, requests: [exec('SELECT v FROM t WHERE id = 1'),
      { type: 'close' }] });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.region, 'b', 'the read should go to router.fallback[0] after the refusal');
    assert.equal(res.json.results[0].response.result.rows[0][0].value, 'one');
    assert.equal(await metric(r.url, 'edgelite_router_failovers_total'), f0 + 1);
    const reg = await regionsOf(r.url);
    const rc = reg.find((x) => x.id === 'c');
    assert.equal(rc.up, false, 'the refusal should mark c down');
    assert.equal(rc.errors, 1);
    await c.restart('c');
  });

  test('a write sent to a refusing region is sent again (nothing of it reached it), and applied once', async () => {
    const r = await doorWithDeadNearest();
    const f0 = await metric(r.url, 'edgelite_router_failovers_total');
    const n0 = await metric(r.url, 'edgelite_router_writes_not_retried_total');
    const res = await post(r.url, '/v2/pipeline', { baton: null, requests: [
      exec("INSERT INTO t (id, v) VALUES (2, 'two')"), { type: 'close' }] });
    assert.equal(res.status, 200, res.text);
    assert.notEqual(res.region, 'c');
    assert.equal(res.json.results[0].type, 'ok', res.text);
    assert.equal(await metric(r.url, 'edgelite_router_failovers_total'), f0 + 1);
    assert.equal(await metric(r.url, 'edgelite_router_writes_not_retried_total'), n0);
    assert.deepEqual(await c.rows(res.region, 'SELECT v FROM t WHERE id = 2'), [['two']]);
    await c.restart('c');
    assert.ok(await c.waitFor(async () => (await c.rows('c', 'SELECT count(*) FROM t WHERE id = 2'))[0][0] == 1,
      20000, 50), 'the retried write never reached c');
  });

  test('the statement statistics count the rows of the answers', async () => {
    const r = await startRouter(cfg);
    routers.push(r);
    const values = Array.from({ length: 7 }, (_, i) => `(${100 + i}, 'r${i}')`).join(', ');
    assert.ok((await post(r.url, '/v2/pipeline', { baton: null, requests: [
      exec(`INSERT INTO t (id, v) VALUES ${values}`), { type: 'close' }] })).json.results[0].type === 'ok');
    const q = 'SELECT id, v FROM t WHERE id >= 100 ORDER BY id';
    // text that looks like a rows key inside a value is not counted
    const tricky = `SELECT '"rows":[[1],[2]]' AS v`;
    for (let i = 0; i < 3; i++) {
      const res = await post(r.url, '/v2/pipeline', { baton: null, requests: [exec(q), { type: 'close' }] });
      assert.equal(res.json.results[0].response.result.rows.length, 7, res.text);
    }
    // a batch: two steps of 7 and 1 rows
    const b = await post(r.url, '/v3/pipeline', { baton: null, requests: [{ type: 'batch', batch: { steps: [
      { stmt: { sql: 'SELECT id FROM t WHERE id >= 100 AND 1 = 1' } },
      { stmt: { sql: 'SELECT id FROM t WHERE id = 100' } }] } }, { type: 'close' }] });
    assert.equal(b.status, 200, b.text);
    assert.equal((await post(r.url, '/v2/pipeline', { baton: null, requests: [exec(tricky), { type: 'close' }] }))
      .status, 200);
    // a cursor: its row entries
    const cur = await post(r.url, '/v3/cursor', { baton: null, batch: { steps: [
      { stmt: { sql: 'SELECT id FROM t WHERE id >= 103' } }] } });
    assert.equal(cur.status, 200, cur.text);
    const st = (await (await fetch(r.url + '/v1/router/stats/statements?sort=calls&limit=100')).json()).statements;
    const find = (text) => st.filter((s) => s.query === text).reduce((a, s) => ({ calls: a.calls + s.calls,
      rows: a.rows + s.rows }), { calls: 0, rows: 0 });
    assert.deepEqual(find('select id, v from t where id >= ? order by id'), { calls: 3, rows: 21 });
    assert.deepEqual(find('select id from t where id >= ? and ? = ?'), { calls: 1, rows: 8 });
    assert.deepEqual(find('select ? as v'), { calls: 1, rows: 1 });
    assert.deepEqual(find('select id from t where id >= ?'), { calls: 1, rows: 4 });
  });
});
