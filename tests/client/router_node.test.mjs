// SPDX-License-Identifier: MIT
// The query router inside a node (issue 12, items 1, 4 and 5): POST /v1/route explains a plan
// without executing it; a bookmarked read this region has not applied is sent, after
// router.bookmark_wait_ms, to a region known to have the write instead of failing; a strong read is
// served by the primary when this region does not cover the primary's commit point; statement
// statistics count exactly, per normalized statement and region, and show on /metrics.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep, startCluster } from './lib/cluster.mjs';

async function post(base, p, body) {
  const res = await fetch(base + p, { method: 'POST', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

async function getJ(base, p) {
  const res = await fetch(base + p, { signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}

describe('router_node', { timeout: 180000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'front', tables: { acct: 'strong' },
      router: '{ bookmark_wait_ms: 300, slow_ms: 100000 }',
      extraArgs: ['--log-level', 'warn', '--bookmark-timeout-ms', '8000'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    await c.createTable('acct', 'CREATE TABLE IF NOT EXISTS acct (id INTEGER PRIMARY KEY, bal INTEGER)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('explain: reads local, strong writes and schema changes to the primary, nothing executed', async () => {
    const b = c.url('b');
    let r = await post(b, '/v1/route', { sql: 'SELECT v FROM t WHERE id = ?', args: [1], client_region: 'x' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.target, 'b');
    assert.equal(r.json.action, 'local');
    assert.equal(r.json.reason, 'read-local');
    assert.equal(r.json.cache, 'miss');
    assert.deepEqual(r.json.tables, { read: ['t'], write: [] });
    assert.equal(r.json.consistency, 'eventual');
    assert.equal(r.json.client_region, 'x');

    r = await post(b, '/v1/route', { sql: "SELECT v, datetime('now') FROM t" });
    assert.equal(r.json.cache, 'bypass');
    assert.equal(r.json.cache_reason, 'nondeterministic');
    assert.equal(r.json.nondeterministic, 'datetime');

    r = await post(b, '/v1/route', { sql: 'INSERT INTO acct (id, bal) VALUES (1, 10)' });
    assert.equal(r.json.action, 'forward');
    assert.equal(r.json.target, 'a');
    assert.equal(r.json.reason, 'strong-write-primary');
    assert.equal(r.json.consistency, 'strong');
    assert.deepEqual(r.json.tables.write, ['acct']);
    assert.equal(r.json.kind, 'write');
    r = await post(b, '/v1/route', { sql: 'INSERT INTO t (id, v) VALUES (1, 1)' });
    assert.equal(r.json.reason, 'write-local');
    r = await post(b, '/v1/route', { sql: 'INSERT INTO t (id, v) VALUES (1, 1)', consistency: 'strong' });
    assert.equal(r.json.reason, 'strong-write-primary');
    r = await post(b, '/v1/route', { sql: 'CREATE TABLE u (x)' });
    assert.equal(r.json.reason, 'ddl-primary');
    r = await post(c.url('a'), '/v1/route', { sql: 'INSERT INTO acct (id, bal) VALUES (1, 10)' });
    assert.equal(r.json.action, 'local');
    assert.equal(r.json.reason, 'strong-write-local');
    // A bookmark nobody has applied: the plan is to wait.
    r = await post(b, '/v1/route', { sql: 'SELECT v FROM t', bookmark: 'a:999999' });
    assert.equal(r.json.action, 'wait');
    assert.equal(r.json.reason, 'bookmark-wait');
    // Nothing ran: the inserts explained above did not happen anywhere.
    assert.deepEqual(await c.rows('a', 'SELECT count(*) FROM acct'), [[0]]);
    assert.deepEqual(await c.rows('b', 'SELECT count(*) FROM t'), [[0]]);
    assert.equal((await c.sql('b', 'SELECT count(*) FROM u')).ok, false);

    for (const bad of [{}, { sql: 5 }, { sql: 'SELECT 1', consistency: 'total' }, { sql: 'SELECT 1', bookmark: 'x' },
      { sql: 'SELECT 1', colour: 'red' }, 'not json']) {
      const res = await fetch(b + '/v1/route', { method: 'POST', body: typeof bad === 'string' ? bad : JSON.stringify(bad) });
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.equal((await res.json()).code, 'BAD_REQUEST');
    }
  });

  test('a bookmarked read c has not applied goes to a region that has it; a strong read to the primary', async () => {
    await c.proxies.c.cut(); // nothing reaches c from the others; c's own links still go out
    try {
      const w = await c.sql('a', 'INSERT INTO t (id, v) VALUES (100, ?)', ['from-a']);
      assert.ok(w.ok && w.bookmark, JSON.stringify(w.error));
      const seqA = Number(w.bookmark.split(':')[1]);
      // c writes: its link to a ships the entry and a's ACK tells c a's version vector (with a's
      // write in it): from then on c knows a has the write.
      const cw = await c.sql('c', 'INSERT INTO t (id, v) VALUES (200, ?)', ['from-c']);
      assert.ok(cw.ok, JSON.stringify(cw.error));
      assert.ok(await c.waitFor(async () => (await c.rows('a', 'SELECT count(*) FROM t WHERE id = 200'))[0][0] === 1,
        20000, 50), 'a never got c\'s write');
      await sleep(300); // a's ACK on its way back to c
      const ex = await post(c.url('c'), '/v1/route', { sql: 'SELECT v FROM t', consistency: 'strong' });
      assert.equal(ex.json.reason, 'strong-read-index');
      assert.deepEqual(ex.json.fallbacks, ['a']);
      assert.deepEqual(await c.rows('c', 'SELECT v FROM t WHERE id = 100'), [], 'the cut did not hold');
      const ri0 = await c.metric('c', 'edgelite_router_read_index_total');

      const before = await c.metric('c', 'edgelite_router_routed_away_total');
      // Strong: answered by a, with a's row.
      const s = await c.sql('c', 'SELECT v FROM t WHERE id = 100', [], { 'X-Edge-Consistency': 'strong' });
      assert.equal(s.status, 200, s.text);
      assert.deepEqual(s.rows, [['from-a']]);
      // Bookmarked: after the 300 ms wait, answered by a, well before the 8 s bookmark timeout.
      const t0 = Date.now();
      const r = await c.sql('c', 'SELECT v FROM t WHERE id = 100', [], { 'X-Edge-Bookmark': `a:${seqA}` });
      const took = Date.now() - t0;
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.rows, [['from-a']]);
      assert.ok(took < 7000, `the read waited ${took} ms: it was not sent on`);
      assert.equal(await c.metric('c', 'edgelite_router_routed_away_total'), before + 2);
      assert.equal(await c.metric('c', 'edgelite_router_read_index_total'), ri0 + 1);
      // A plain read in c still does not see it (c really is behind).
      assert.deepEqual(await c.rows('c', 'SELECT v FROM t WHERE id = 100'), []);
    } finally {
      await c.proxies.c.reset();
    }
    const conv = await c.waitConverged(['t'], 30000);
    assert.ok(conv.ok, 'c did not catch up after the link healed');
    // Caught up: a strong read in c asks a for its point and, covering it, runs in c.
    const away = await c.metric('c', 'edgelite_router_routed_away_total');
    const s2 = await c.sql('c', 'SELECT v FROM t WHERE id = 100', [], { 'X-Edge-Consistency': 'strong' });
    assert.deepEqual(s2.rows, [['from-a']]);
    assert.equal(await c.metric('c', 'edgelite_router_routed_away_total'), away, 'a covered strong read left c');
  });

  test('strong reads on a replica that never writes see every write the primary answered', async () => {
    // b writes nothing: its link to a hears no ACKs, so only asking a at read time tells b where a is.
    // a's entries reach b 300 ms late here, so b is behind when each read arrives.
    await c.proxies.b.latency(300);
    let local = 0;
    try {
    for (let i = 0; i < 20; i++) {
      const w = await c.sql('a', 'INSERT INTO t (id, v) VALUES (?, ?)', [300 + i, `p${i}`]);
      assert.ok(w.ok);
      const before = await c.metric('b', 'edgelite_router_routed_away_total');
      const r = await c.sql('b', 'SELECT v FROM t WHERE id = ?', [300 + i], { 'X-Edge-Consistency': 'strong' });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.rows, [[`p${i}`]], `strong read ${i} in b missed a's answered write`);
      if ((await c.metric('b', 'edgelite_router_routed_away_total')) === before) local++;
    }
    } finally {
      await c.proxies.b.reset();
    }
    console.log(`# 20 strong reads in b: ${local} served in b, ${20 - local} by a`);
  });

  test('statement statistics: exact counts per normalized statement, sort, limit, reset, /metrics', async () => {
    const b = c.url('b');
    let r = await post(b, '/v1/stats/reset', {});
    assert.equal(r.status, 200);
    for (let i = 0; i < 5; i++) {
      const q = await c.sql('b', `SELECT v FROM t WHERE id = ${i} OR id = 100`);
      assert.ok(q.ok);
    }
    for (let i = 0; i < 3; i++) assert.ok((await c.sql('b', 'INSERT INTO t (v) VALUES (?)', [`s${i}`])).ok);
    // fails while it runs (integer overflow), not when it is prepared
    const bad = await c.sql('b', 'SELECT v FROM t WHERE id = abs(-9223372036854775808)');
    assert.equal(bad.ok, false);
    // through the real client as well
    const cl = await c.client('b');
    try {
      for (let i = 0; i < 2; i++) await cl.execute({ sql: 'SELECT count(*) FROM t WHERE v = ?', args: [`s${i}`] });
    } finally {
      cl.close();
    }
    r = await getJ(b, '/v1/stats/statements?sort=calls&limit=20');
    assert.equal(r.status, 200, r.text);
    const by = Object.fromEntries(r.json.statements.map((s) => [s.query, s]));
    const sel = by['select v from t where id = ? or id = ?'];
    assert.ok(sel, JSON.stringify(r.json.statements.map((s) => s.query)));
    assert.equal(sel.calls, 5);
    assert.equal(sel.rows, 5); // the row 100 each time
    assert.equal(sel.errors, 0);
    assert.equal(sel.region, 'b');
    assert.ok(sel.total_time_ms > 0 && sel.p50_ms > 0 && sel.p99_ms >= sel.p50_ms);
    assert.equal(by['insert into t(v) values(?)'].calls, 3);
    assert.equal(by['select v from t where id = abs(- ?)']?.errors, 1, JSON.stringify(r.json.statements));
    assert.equal(by['select v from t where id = abs(- ?)'].calls, 1);
    assert.equal(by['select count(*) from t where v = ?'].calls, 2);
    assert.equal(r.json.statements[0].query, 'select v from t where id = ? or id = ?'); // sorted by calls
    r = await getJ(b, '/v1/stats/statements?sort=calls&limit=1');
    assert.equal(r.json.statements.length, 1);
    assert.equal((await getJ(b, '/v1/stats/statements?sort=colour')).status, 400);
    assert.equal((await getJ(b, '/v1/stats/statements?limit=0')).status, 400);
    const m = await c.metrics('b');
    assert.match(m, /edgelite_statement_calls_total\{query="select v from t where id = \? or id = \?",region="b"\} 5\n/);
    // other regions keep their own
    const ra = await getJ(c.url('a'), '/v1/stats/statements?sort=calls&limit=100');
    assert.ok(!ra.json.statements.some((s) => s.region === 'b'));
    await post(b, '/v1/stats/reset', {});
    r = await getJ(b, '/v1/stats/statements');
    assert.deepEqual(r.json.statements, []);
  });
});
