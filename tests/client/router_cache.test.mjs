// SPDX-License-Identifier: MIT
// The hot-read cache in the node (issue 12, item 3): a read is kept after router.cache.admit_after
// uses and answered from the cache until a table it read changes, by a local write or by an entry
// applied from another region, so it is never older than an uncached read; non-deterministic reads
// and reads inside a transaction are never cached; POST /v1/route tells hit/miss/bypass as execute
// then does; the hit rate is on /metrics.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

async function explain(base, body) {
  const res = await fetch(base + '/v1/route', { method: 'POST', body: JSON.stringify(body),
    signal: AbortSignal.timeout(10000) });
  return res.json();
}

const int = (v) => ({ type: 'integer', value: String(v) });

describe('router_cache', { timeout: 180000 }, () => {
  let c;
  const hits = (id) => c.metric(id, 'edgelite_router_cache_hits_total');
  before(async () => {
    c = await startCluster({ regions: 2, router: '{ cache: { admit_after: 2, max_bytes: 1048576 } }' });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v INTEGER)');
    assert.ok((await c.sql('a', 'INSERT INTO t (id, v) VALUES (1, 0), (2, 0)')).ok);
    const conv = await c.waitConverged(['t'], 20000);
    assert.ok(conv.ok);
  });
  after(async () => { if (c) await c.destroy(); });

  test('admitted after two uses, invalidated by a local write, explain agrees', async () => {
    const q = 'SELECT v FROM t WHERE id = ?';
    const ex = () => explain(c.url('b'), { sql: q, args: [int(1)] });
    assert.equal((await ex()).cache, 'miss');
    const h0 = await hits('b');
    assert.deepEqual(await c.rows('b', q, [1]), [[0]]); // use 1: counted
    assert.deepEqual(await c.rows('b', q, [1]), [[0]]); // use 2: filled
    assert.equal(await hits('b'), h0);
    assert.equal((await ex()).cache, 'hit');
    assert.deepEqual(await c.rows('b', q, [1]), [[0]]); // answered from the cache
    assert.equal(await hits('b'), h0 + 1);
    // other arguments are another entry
    assert.equal((await explain(c.url('b'), { sql: q, args: [int(2)] })).cache, 'miss');
    // a local write to t: the entry is gone, the next read sees the write
    assert.ok((await c.sql('b', 'UPDATE t SET v = 5 WHERE id = 1')).ok);
    assert.equal((await ex()).cache, 'miss');
    assert.deepEqual(await c.rows('b', q, [1]), [[5]]);
    assert.equal(await hits('b'), h0 + 1);
    // a write to another table does not invalidate
    await c.createTable('other', 'CREATE TABLE IF NOT EXISTS other (id INTEGER PRIMARY KEY)', { on: 'a' });
    assert.deepEqual(await c.rows('b', q, [1]), [[5]]);
    assert.deepEqual(await c.rows('b', q, [1]), [[5]]);
    const h1 = await hits('b');
    assert.ok((await c.sql('b', 'INSERT INTO other (id) VALUES (1)')).ok);
    assert.deepEqual(await c.rows('b', q, [1]), [[5]]);
    assert.equal(await hits('b'), h1 + 1);
    // statistics count hits
    const st = await (await fetch(c.url('b') + '/v1/stats/statements?sort=cache_hits&limit=1')).json();
    assert.equal(st.statements[0].query, 'select v from t where id = ?');
    assert.ok(st.statements[0].cache_hits >= 2);
    assert.match(await c.metrics('b'), /edgelite_router_cache_hit_ratio \d/);
  });

  test('never stale: entries from another region invalidate, under concurrent writes', async () => {
    const q = 'SELECT v FROM t WHERE id = 2';
    let stop = false;
    let written = 0;
    const writer = (async () => {
      for (let i = 1; i <= 200 && !stop; i++) {
        const w = await c.sql('a', 'UPDATE t SET v = ? WHERE id = 2', [i]);
        assert.ok(w.ok);
        written = i;
      }
    })();
    let hitsSeen = 0;
    let checks = 0;
    const h0 = await hits('b');
    try {
      for (let i = 0; i < 400 && written < 200; i++) {
        // an uncached read (a text of its own), then the cached one: never older
        const fresh = Number((await c.rows('b', `SELECT v FROM t WHERE id = 2 AND ${i} = ${i}`))[0][0]);
        const cached = Number((await c.rows('b', q))[0][0]);
        assert.ok(cached >= fresh, `the cache answered ${cached} after an uncached read saw ${fresh}`);
        checks++;
      }
    } finally {
      stop = true;
      await writer;
    }
    hitsSeen = (await hits('b')) - h0;
    console.log(`# ${checks} checks, ${written} replicated writes, ${hitsSeen} hits`);
    // once replication is quiet the cached statement shows the last write
    const last = await c.waitFor(async () => Number((await c.rows('b', q))[0][0]) === written, 20000, 50);
    assert.ok(last, 'b never showed the last write through the cached statement');
  });

  test('non-deterministic reads and reads in a transaction are never cached', async () => {
    for (const sql of ['SELECT v, random() FROM t WHERE id = 1', "SELECT v, datetime('now') FROM t WHERE id = 1",
      'SELECT v, CURRENT_TIMESTAMP FROM t WHERE id = 1']) {
      const ex = await explain(c.url('b'), { sql });
      assert.equal(ex.cache, 'bypass', sql);
      assert.equal(ex.cache_reason, 'nondeterministic');
      const h0 = await hits('b');
      for (let i = 0; i < 5; i++) assert.ok((await c.sql('b', sql)).ok);
      assert.equal(await hits('b'), h0, `${sql} was answered from the cache`);
    }
    // inside an interactive transaction: same statement as a cached one, run on the stream
    const q = 'SELECT v FROM t WHERE id = ?';
    await c.rows('b', q, [1]);
    await c.rows('b', q, [1]);
    const cl = await c.client('b');
    try {
      const h0 = await hits('b');
      const tx = await cl.transaction('write');
      for (let i = 0; i < 4; i++) await tx.execute({ sql: q, args: [1] });
      await tx.commit();
      assert.equal(await hits('b'), h0);
    } finally {
      cl.close();
    }
  });
});
