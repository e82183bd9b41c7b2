// SPDX-License-Identifier: MIT
// A change that resolved a conflict says so in the real-time feed, with the losing version: two regions
// cut from each other update one row, the link heals, and each region's subscriber gets the other
// region's update with `conflict` (winner and loser agree across regions; each side's event says whether
// its own write won).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep, startCluster } from './lib/cluster.mjs';
import { openRt } from './lib/rt.mjs';

/**
 * Row 1 of t written at a and converged; a subscriber of t in every region; then, with a and b cut from each
 * other (their front proxies), the row updated at a ('fromA') and at b ('fromB'); whileCut(subs) runs before the
 * link heals; then converged. Resolves with the subscribers and the bookmark of the first one's `ready`.
 */
async function concurrentUpdates(c, whileCut = async () => {}) {
  assert.ok((await c.sql('a', "INSERT INTO t VALUES (1, 'init')")).ok);
  assert.ok((await c.waitConverged(['t'], 30000)).ok);
  const subs = {};
  let start = null;
  for (const id of c.ids) {
    subs[id] = await openRt(c.url(id));
    const r = await subs[id].subscribe({ id: 1, tables: ['t'] });
    assert.equal(r.type, 'ready', JSON.stringify(r));
    start ??= r.bookmark;
  }
  assert.ok(await c.cutApart(['a', 'b']), 'still connected after the cut');
  assert.ok((await c.sql('a', "UPDATE t SET v = 'fromA' WHERE id = 1")).ok);
  assert.ok((await c.sql('b', "UPDATE t SET v = 'fromB' WHERE id = 1")).ok);
  await whileCut(subs);
  await c.proxies.a.reset();
  await c.proxies.b.reset();
  assert.ok((await c.waitConverged(['t'], 30000)).ok);
  return { subs, start };
}

describe('realtime conflicts', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2, proxies: 'front' });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('concurrent updates of one row: both events carry the conflict, one won', { timeout: 60000 }, async () => {
    const { subs } = await concurrentUpdates(c);
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

// Which region reports a conflict, and to whom (docs/realtime.md, "Conflicts"): every region that applied both
// versions recorded the pair, and a subscriber gets it once, on whichever version of the pair reached it second,
// live or in a backlog read from the log, at the region it is connected to or at any other after a resume.
describe('realtime conflicts in every region and in the backlog', { timeout: 180000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'front' });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  const ofRow = (e) => e.table === 't' && e.pk === 1 && e.op === 'update';
  /** The update events of row 1; exactly one of the pair carries the conflict, and it is the second. */
  function checkPair(events, what) {
    const ev = events.filter(ofRow);
    assert.equal(ev.length, 2, `${what}: ${JSON.stringify(ev)}`);
    const withC = ev.filter((e) => e.conflict);
    assert.equal(withC.length, 1, `${what}: conflict on ${withC.length} events: ${JSON.stringify(ev)}`);
    assert.ok(ev[1].conflict, `${what}: the conflict is not on the second version: ${JSON.stringify(ev)}`);
    const k = ev[1].conflict;
    assert.equal(k.resolved_for, k.winner.origin === ev[1].origin ? 'this' : 'other', `${what}: ${JSON.stringify(k)}`);
    const versions = ev.map((e) => `${e.origin}:${e.seq}`).sort();
    assert.deepEqual([`${k.winner.origin}:${k.winner.seq}`, `${k.loser.origin}:${k.loser.seq}`].sort(), versions,
      `${what}: ${JSON.stringify(k)}`);
    return { ev, k };
  }
  async function waitRowEvents(s, n, ms = 30000) {
    const end = Date.now() + ms;
    while (s.events.filter(ofRow).length < n && Date.now() < end) await sleep(20);
  }

  test('live in all three regions, from the log at each, and across a resume in the middle of the pair',
    { timeout: 150000 }, async () => {
      // a and b receive nothing while cut; c receives both of their writes before the link heals.
      const { subs, start } = await concurrentUpdates(c, (s) => waitRowEvents(s.c, 2));
      const live = {};
      for (const id of c.ids) {
        await waitRowEvents(subs[id], 2);
        live[id] = checkPair(subs[id].events, `live at ${id}`);
      }
      const w = live.a.k.winner.origin;
      for (const id of c.ids) assert.equal(live[id].k.winner.origin, w, `winner at ${id}`);
      const final = (await c.rows('c', 'SELECT v FROM t WHERE id = 1'))[0][0];
      assert.equal(final, w === 'a' ? 'fromA' : 'fromB');
      for (const s of Object.values(subs)) await s.close();

      // From the log: a subscriber from before the pair, at each region, gets it with the conflict once.
      for (const id of c.ids) {
        const s = await openRt(c.url(id));
        const r = await s.subscribe({ id: 2, tables: ['t'], from: start });
        assert.equal(r.type, 'ready', JSON.stringify(r));
        const got = checkPair(s.events, `backlog at ${id}`);
        assert.equal(got.k.winner.origin, w);
        await s.close();
      }
      // Resume in the middle: a subscriber that has only the first version of the pair (as region a delivered
      // it) resumes at every region and gets the second one, with the conflict.
      const first = live.a.ev[0];
      for (const id of c.ids) {
        const s = await openRt(c.url(id));
        const r = await s.subscribe({ id: 3, tables: ['t'], from: first.bookmark });
        assert.equal(r.type, 'ready', JSON.stringify(r));
        const ev = s.events.filter(ofRow);
        assert.equal(ev.length, 1, `resume at ${id}: ${JSON.stringify(ev)}`);
        assert.equal(`${ev[0].origin}:${ev[0].seq}`, `${live.a.ev[1].origin}:${live.a.ev[1].seq}`);
        assert.ok(ev[0].conflict, `resume at ${id}: no conflict: ${JSON.stringify(ev[0])}`);
        assert.equal(ev[0].conflict.winner.origin, w);
        await s.close();
      }
    });
});
