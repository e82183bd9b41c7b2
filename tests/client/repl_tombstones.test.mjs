// SPDX-License-Identifier: MIT
// Tombstone collection (issue 9, item 6; docs/internals/replication.md, "Tombstones"), on a real
// 3-region cluster with one chaos proxy per directed link:
//  - 1,000 deleted rows leave no tombstones in any region once every region has the deletes, and
//    stay deleted;
//  - with a region stopped (SIGSTOP) the others keep their tombstones and say whom they wait for;
//  - an update made in a region whose outgoing links are cut, older than a delete made elsewhere,
//    reaches the others only after the delete was acknowledged everywhere: the tombstones must still
//    be there when it arrives (so it loses and the row stays deleted), and go only after it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep, startCluster } from './lib/cluster.mjs';

const GC_MS = 200;

describe('repl_tombstones', { timeout: 180000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'pair', replication: { tombstone_gc_interval_ms: GC_MS } });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  const tombs = (id) => c.metric(id, 'edgelite_repl_tombstones');
  const collected = (id) => c.metric(id, 'edgelite_repl_tombstones_collected_total');
  const countIn = async (id, where = '1') => Number((await c.rows(id, `SELECT count(*) FROM t WHERE ${where}`))[0][0]);

  async function insertRange(from, to) {
    for (let lo = from; lo < to; lo += 100) {
      const ids = [];
      for (let k = lo; k < Math.min(lo + 100, to); k++) ids.push(k);
      const r = await c.sql('a', `INSERT INTO t (id, v) VALUES ${ids.map(() => '(?, ?)').join(', ')}`,
        ids.flatMap((k) => [k, `v${k}`]));
      assert.ok(r.ok, JSON.stringify(r.error));
    }
  }

  async function waitAllTombs(pred, timeoutMs, regions = c.ids) {
    let last = {};
    const ok = await c.waitFor(async () => {
      last = {};
      for (const id of regions) last[id] = await tombs(id);
      return Object.values(last).every(pred);
    }, timeoutMs);
    return { ok, last };
  }

  test('1,000 deleted rows: tombstones collected in every region, rows stay deleted', async () => {
    await insertRange(1, 1001);
    const conv = await c.waitConverged(['t'], 30000);
    assert.ok(conv.ok, 'the inserts did not converge');
    const before = {};
    for (const id of c.ids) before[id] = await collected(id);
    for (const id of c.ids) assert.ok(Number.isFinite(before[id]), `${id}: no tombstone metrics`);

    const r = await c.sql('a', 'DELETE FROM t WHERE id BETWEEN 1 AND 1000');
    assert.ok(r.ok, JSON.stringify(r.error));
    assert.equal(r.affected, 1000);
    const gone = await c.waitConverged(['t'], 30000);
    assert.ok(gone.ok, 'the deletes did not converge');
    for (const id of c.ids) assert.equal(gone.sums.t[id].count, 0);

    const { ok, last } = await waitAllTombs((n) => n === 0, 30000);
    assert.ok(ok, `tombstones left: ${JSON.stringify(last)}`);
    for (const id of c.ids) {
      const n = await collected(id);
      assert.ok(n - before[id] >= 1000, `${id} collected ${n - before[id]} tombstones, expected >= 1000`);
      const st = await c.status(id);
      assert.equal(st.tombstones, 0);
      assert.ok(st.tombstone_horizon_hlc > 0, `${id}: no horizon after collecting`);
    }
    // Still deleted after several more collection steps; a new write of the same key is a new row everywhere.
    await sleep(5 * GC_MS);
    for (const id of c.ids) assert.equal(await countIn(id), 0, `${id}: rows came back`);
    const w = await c.sql('b', "INSERT INTO t (id, v) VALUES (500, 'new')");
    assert.ok(w.ok, JSON.stringify(w.error));
    const again = await c.waitConverged(['t'], 20000);
    assert.ok(again.ok, 'the new row did not converge');
    for (const id of c.ids) assert.equal(again.sums.t[id].text, '500:new');
    for (const id of c.ids) assert.equal(await c.metric(id, 'edgelite_repl_tombstone_horizon_drops_total'), 0);
    const d = await c.sql('b', 'DELETE FROM t WHERE id = 500');
    assert.ok(d.ok, JSON.stringify(d.error));
    assert.ok((await c.waitConverged(['t'], 20000)).ok);
  });

  test('a stopped region keeps every other region\'s tombstones until it is back', async () => {
    await insertRange(2001, 2201);
    assert.ok((await c.waitConverged(['t'], 30000)).ok, 'the inserts did not converge');
    c.pause('c');
    try {
      const r = await c.sql('a', 'DELETE FROM t WHERE id BETWEEN 2001 AND 2200');
      assert.ok(r.ok, JSON.stringify(r.error));
      assert.ok((await c.waitConverged(['t'], 20000, ['a', 'b'])).ok, 'a and b did not converge');
      const held = await waitAllTombs((n) => n >= 200, 10000, ['a', 'b']);
      assert.ok(held.ok, `tombstones on a and b: ${JSON.stringify(held.last)}`);
      // Many collection steps later, a and b still keep them, and say which region they wait for.
      await sleep(15 * GC_MS);
      for (const id of ['a', 'b']) {
        assert.ok(await tombs(id) >= 200, `${id} dropped tombstones while c was stopped`);
        const st = await c.status(id);
        assert.equal(st.tombstone_gc_waiting_for, 'c', `${id}: ${JSON.stringify(st.tombstone_gc_waiting_for)}`);
        assert.ok(st.tombstone_gc_waiting_ms >= 10 * GC_MS, `${id} waiting_ms ${st.tombstone_gc_waiting_ms}`);
        assert.ok(await c.metric(id, 'edgelite_repl_tombstone_gc_waiting_ms') >= 10 * GC_MS);
      }
    } finally {
      c.resume('c');
    }
    const conv = await c.waitConverged(['t'], 30000);
    assert.ok(conv.ok, 'c did not catch up');
    const { ok, last } = await waitAllTombs((n) => n === 0, 30000);
    assert.ok(ok, `tombstones left after c came back: ${JSON.stringify(last)}`);
    for (const id of c.ids) assert.equal(await countIn(id, 'id BETWEEN 2001 AND 2200'), 0);
  });

  test('an older update held back in a cut-off region never resurrects a deleted row', async () => {
    await insertRange(3001, 3021);
    assert.ok((await c.waitConverged(['t'], 30000)).ok, 'the inserts did not converge');
    // C can still receive (a>c, b>c) but nothing it writes leaves it.
    await c.proxies['c>a'].cut();
    await c.proxies['c>b'].cut();
    const peerOf = (st, region) => st.peers.find((p) => p.region === region);
    const down = await c.waitFor(async () => {
      const st = await c.status('c');
      return !peerOf(st, 'a').connected && !peerOf(st, 'b').connected;
    }, 15000);
    assert.ok(down, 'c\'s outgoing links are still up');
    try {
      // The update first (older), then the delete elsewhere (later: it wins wherever both meet).
      const u = await c.sql('c', "UPDATE t SET v = 'late' WHERE id BETWEEN 3001 AND 3010");
      assert.ok(u.ok, JSON.stringify(u.error));
      assert.equal(u.affected, 10);
      await sleep(20);
      const d = await c.sql('a', 'DELETE FROM t WHERE id BETWEEN 3001 AND 3020');
      assert.ok(d.ok, JSON.stringify(d.error));
      // C gets the delete (and acknowledges it): every region has applied the deleting entry.
      const seen = await c.waitFor(async () => (await countIn('c', 'id BETWEEN 3001 AND 3020')) === 0 &&
        (await countIn('b', 'id BETWEEN 3001 AND 3020')) === 0, 20000);
      assert.ok(seen, 'the delete did not reach b and c');
      // Acknowledged everywhere, but C's update has not arrived at A or B: their tombstones must stay.
      await sleep(15 * GC_MS);
      for (const id of ['a', 'b']) {
        const n = await tombs(id);
        assert.ok(n >= 20, `${id} holds ${n} tombstones while an older update of those rows is still on its way`);
        assert.equal((await c.status(id)).tombstone_gc_waiting_for, 'c');
      }
    } finally {
      await c.proxies['c>a'].reset();
      await c.proxies['c>b'].reset();
    }
    const conv = await c.waitConverged(['t'], 30000);
    assert.ok(conv.ok, `did not converge: ${JSON.stringify(conv.sums.t)}`);
    for (const id of c.ids) {
      assert.equal(await countIn(id, 'id BETWEEN 3001 AND 3020'), 0, `${id}: a deleted row came back`);
    }
    const { ok, last } = await waitAllTombs((n) => n === 0, 30000);
    assert.ok(ok, `tombstones left: ${JSON.stringify(last)}`);
    await sleep(5 * GC_MS);
    for (const id of c.ids) {
      assert.equal(await countIn(id, 'id BETWEEN 3001 AND 3020'), 0, `${id}: a deleted row came back after collection`);
      assert.equal(await c.metric(id, 'edgelite_repl_tombstone_horizon_drops_total'), 0);
    }
  });
});
