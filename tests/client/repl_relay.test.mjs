// SPDX-License-Identifier: MIT
// Relaying through a third region (issue 4, test 4): with one chaos proxy per directed link, the
// A<->B link is cut in both directions while all three regions write. A's and B's writes must still
// reach each other through C, and once the link heals nothing may be applied twice.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

describe('repl_relay', { timeout: 90000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'pair' });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  const peerOf = (st, region) => st.peers.find((p) => p.region === region);
  const base = { a: 1000, b: 2000, c: 3000 };
  const written = new Set();

  async function writeRound(from, to) {
    for (const id of c.ids) {
      for (let i = from; i < to; i++) {
        const k = base[id] + i;
        const r = await c.sql(id, 'INSERT INTO t (id, v) VALUES (?, ?)', [k, `${id}${i}`]);
        assert.ok(r.ok, `${id}: ${JSON.stringify(r.error)}`);
        written.add(k);
      }
    }
  }

  test('with A<->B cut, A and B still get each other\'s writes through C', async () => {
    await c.proxies['a>b'].cut();
    await c.proxies['b>a'].cut();
    // Make sure the direct link is really down before writing: otherwise this proves nothing.
    const down = await c.waitFor(async () => !peerOf(await c.status('a'), 'b').connected &&
      !peerOf(await c.status('b'), 'a').connected, 10000);
    assert.ok(down, 'the a<->b link is still connected after cutting both proxies');

    await writeRound(0, 30);
    const conv = await c.waitConverged(['t'], 15000);
    assert.ok(conv.ok, `no convergence through c: ${JSON.stringify(Object.fromEntries(
      Object.entries(conv.sums.t).map(([id, s]) => [id, s.count])))}`);
    assert.equal(conv.sums.t.a.count, written.size);
    // The direct link stayed down the whole time.
    assert.equal(peerOf(await c.status('a'), 'b').connected, false);
    assert.equal(peerOf(await c.status('b'), 'a').connected, false);
  });

  test('after healing, every entry is applied exactly once and the data is identical', async () => {
    await c.proxies['a>b'].reset();
    await c.proxies['b>a'].reset();
    const up = await c.waitFor(async () => peerOf(await c.status('a'), 'b').connected &&
      peerOf(await c.status('b'), 'a').connected, 15000);
    assert.ok(up, 'the a<->b link did not come back after the proxies were reset');
    await writeRound(30, 40);
    const conv = await c.waitConverged(['t'], 15000);
    assert.ok(conv.ok, 'no convergence after healing');
    for (const id of c.ids) {
      assert.equal(conv.sums.t[id].count, written.size, `region ${id} row count`);
    }
    // Quiesce, then compare what each region applied with what the others wrote: a relayed entry
    // that also arrives directly must be counted as a duplicate, never applied a second time.
    for (const id of c.ids) {
      const ok = await c.waitFor(async () => (await c.status(id)).peers.every((p) => p.pending === 0), 10000);
      assert.ok(ok, `region ${id} still has pending entries`);
    }
    const vv = (await c.status('a')).version_vector;
    for (const id of c.ids) {
      const st = await c.status(id);
      assert.deepEqual(st.version_vector, vv, `version vectors differ between a and ${id}`);
      const fromOthers = Object.entries(vv).filter(([o]) => o !== id).reduce((s, [, n]) => s + n, 0);
      const applied = await c.metric(id, 'edgelite_repl_entries_applied_total');
      assert.equal(applied, fromOthers, `region ${id} applied ${applied} entries, the others wrote ${fromOthers}`);
      const dups = await c.metric(id, 'edgelite_repl_duplicates_total');
      assert.ok(dups >= 0, `duplicates_total ${dups}`);
    }
  });
});
