// SPDX-License-Identifier: MIT
// A change that resolved a conflict says so in the real-time feed, with the losing version: two regions
// cut from each other update one row, the link heals, and each region's subscriber gets the other
// region's update with `conflict` (winner and loser agree across regions; each side's event says whether
// its own write won).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';
import { openRt } from './lib/rt.mjs';

describe('realtime conflicts', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2, proxies: 'front' });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('concurrent updates of one row: both events carry the conflict, one won', { timeout: 60000 }, async () => {
    assert.ok((await c.sql('a', "INSERT INTO t VALUES (1, 'init')")).ok);
    assert.ok((await c.waitConverged(['t'], 30000)).ok);
    const subs = {};
    for (const id of c.ids) {
      subs[id] = await openRt(c.url(id));
      assert.equal((await subs[id].subscribe({ id: 1, tables: ['t'] })).type, 'ready');
    }
    const peerOf = (st, region) => st.peers.find((p) => p.region === region);
    await c.proxies.a.cut();
    await c.proxies.b.cut();
    const down = await c.waitFor(async () => !peerOf(await c.status('a'), 'b').connected &&
      !peerOf(await c.status('b'), 'a').connected, 30000);
    assert.ok(down, 'still connected after the cut');
    assert.ok((await c.sql('a', "UPDATE t SET v = 'fromA' WHERE id = 1")).ok);
    assert.ok((await c.sql('b', "UPDATE t SET v = 'fromB' WHERE id = 1")).ok);
    await c.proxies.a.reset();
    await c.proxies.b.reset();
    assert.ok((await c.waitConverged(['t'], 30000)).ok);
    const remote = {};
    for (const id of c.ids) {
      const other = id === 'a' ? 'b' : 'a';
      remote[id] = await subs[id].waitFor((m) => m.type === 'change' && m.origin === other, 20000);
      assert.ok(remote[id].conflict, `region ${id}: ${JSON.stringify(remote[id])}`);
    }
    const ca = remote.a.conflict;
    const cb = remote.b.conflict;
    assert.equal(ca.winner.origin, cb.winner.origin);
    assert.equal(ca.loser.origin, cb.loser.origin);
    assert.notEqual(ca.winner.origin, ca.loser.origin);
    assert.deepEqual([ca.resolved_for, cb.resolved_for].sort(), ['other', 'this']);
    const w = ca.winner.origin;
    const final = (await c.rows('a', 'SELECT v FROM t WHERE id = 1'))[0][0];
    assert.equal(final, w === 'a' ? 'fromA' : 'fromB');
    for (const s of Object.values(subs)) await s.close();
  });
});
