// SPDX-License-Identifier: MIT
// A re-seeded region keeps every write it acknowledged, also those that depend on entries the snapshot lacks:
// c takes a's rows (which b never receives), writes on top of them while nobody hears it, and is then re-seeded
// from b alone (b wrote past its log bound with only d listening). c's own entries depend on a's, which only its
// set-aside copy holds; they are applied after the snapshot together with what they depend on, so no acknowledged
// row is lost and every region converges. (Four regions: with three, the region acknowledging b's entries would
// also compact a's past b, and b would be re-seeded itself, from a.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

const BOUND = 150000; // bytes of log
const PAD = 'x'.repeat(1000);

describe('a re-seed keeps own writes whose dependencies the snapshot lacks', { timeout: 240000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 4, proxies: 'pair', replication: { max_log_bytes: BOUND },
      extraArgs: ['--log-level', 'info', '--compact-interval-ms', '300'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('c re-seeded from b keeps its writes on top of a\'s rows', async () => {
    for (let i = 1; i <= 10; i++) assert.ok((await c.sql('b', 'INSERT INTO t VALUES (?, ?)', [i, 'early'])).ok);
    const conv = await c.waitConverged(['t'], 20000);
    assert.ok(conv.ok, 'the early rows did not converge');
    // Links are pushes (S>D carries S's log, and S's status requests, to D). First only a pushes, to c only.
    for (const [k, px] of Object.entries(c.proxies)) if (k !== 'a>c') await px.cut();
    for (let i = 0; i < 5; i++) assert.ok((await c.sql('a', 'INSERT INTO t VALUES (?, ?)', [2000 + i, `a ${i}`])).ok);
    const got = await c.waitFor(async () => (await c.rows('c', 'SELECT count(*) FROM t WHERE id >= 2000'))[0][0] === 5,
      20000, 100);
    assert.ok(got, 'c did not receive a\'s rows');
    // Acknowledged by c alone (16 entries), written after and on top of a's rows: their dependencies include a's.
    assert.ok((await c.sql('c', "UPDATE t SET v = v || ' edited by c' WHERE id >= 2000")).ok);
    for (let i = 0; i < 15; i++) {
      const r = await c.sql('c', 'INSERT INTO t VALUES (?, ?)', [3000 + i, `c while cut off ${i}`]);
      assert.ok(r.ok, JSON.stringify(r.error));
    }
    // Now c hears nobody either, and b writes past its bound to d alone: d acknowledges, b compacts beyond c (and
    // a) and marks them; a and c, reaching nobody, never learn it.
    await c.proxies['a>c'].cut();
    await c.proxies['b>d'].reset();
    for (let k = 0; k < 30; k++) {
      const vals = [];
      const args = [];
      for (let i = 0; i < 10; i++) {
        vals.push('(?, ?)');
        args.push(10000 + k * 10 + i, `b${k}-${i}-${PAD}`);
      }
      assert.ok((await c.sql('b', `INSERT INTO t VALUES ${vals.join(', ')}`, args)).ok);
    }
    const marked = await c.waitFor(async () => {
      const s = await c.status('b');
      return s.peers.find((p) => p.region === 'c').needs_snapshot && s.log_floor.b > 10 ? s : null;
    }, 60000, 250);
    assert.ok(marked, `b never compacted past c: ${JSON.stringify((await c.status('b')).log_floor)}`);
    // b holds none of a's new rows: a snapshot of b lacks what c's writes depend on.
    assert.deepEqual(await c.rows('b', 'SELECT count(*) FROM t WHERE id >= 2000 AND id < 3000'), [[0]]);
    // c restarts seeing only b: behind b's compacted log, it is re-seeded from b.
    await c.stop('c');
    await c.proxies['c>b'].reset();
    await c.restart('c');
    assert.match(c.stderr('c'), /behind the compacted log of b/);
    assert.match(c.stderr('c'), /seeded from a snapshot of b \(\d+ bytes/);
    // Every row c acknowledged is in its database at once, before any link catches it up.
    assert.deepEqual(await c.rows('c', "SELECT count(*) FROM t WHERE v LIKE 'c while cut off %'"), [[15]]);
    assert.deepEqual(await c.rows('c', "SELECT count(*) FROM t WHERE v LIKE '% edited by c'"), [[5]]);
    assert.match(c.stderr('c'),
      /16 entries of this region that no peer had yet were taken over from \S+, with [1-9]\d* entries of other regions/);
    assert.doesNotMatch(c.stderr('c'), /own entries of .* left in it/);
    for (const px of Object.values(c.proxies)) await px.reset();
    const all = await c.waitConverged(['t'], 60000);
    assert.ok(all.ok, `not converged: ${JSON.stringify(Object.fromEntries(Object.entries(all.sums.t)
      .map(([k, v]) => [k, v.count])))}`);
    const sums = Object.values(all.sums.t);
    for (const s of sums) assert.equal(s.text, sums[0].text);
    assert.equal(sums[0].count, 10 + 5 + 15 + 300);
    for (const id of ['a', 'b', 'd']) {
      assert.deepEqual(await c.rows(id, "SELECT count(*) FROM t WHERE v LIKE 'c while cut off %'"), [[15]]);
      assert.deepEqual(await c.rows(id, "SELECT count(*) FROM t WHERE v LIKE '% edited by c'"), [[5]]);
    }
    // It takes new writes (fresh sequence numbers, not reused ones) and they reach the others.
    assert.ok((await c.sql('c', "INSERT INTO t VALUES (5000, 'from c after')")).ok);
    const last = await c.waitFor(async () => {
      for (const id of ['a', 'b', 'd']) {
        if ((await c.rows(id, 'SELECT count(*) FROM t WHERE id = 5000'))[0][0] !== 1) return false;
      }
      return true;
    }, 20000, 200);
    assert.ok(last, 'c\'s new write did not reach the others');
    assert.deepEqual(c.unexpectedExits, []);
  });
});
