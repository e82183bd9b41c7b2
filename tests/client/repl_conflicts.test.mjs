// SPDX-License-Identifier: MIT
// Conflict detection on a constructed history (issue 4, test 7): row 1 is updated concurrently in
// A and B while the two cannot see each other (one conflict); row 2 is updated in A and then, after
// B has received that, in B (sequential: no conflict). After healing every region reports exactly
// one conflict, on row 1, won by the greater (hlc, origin), row 1 holds the winner's value, and
// every region's edgelite_repl_conflicts_total is exactly 1 (a and b each applied the other's
// concurrent update, c whichever came second). The waits are generous bounds, not speed targets.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

describe('repl_conflicts', { timeout: 180000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'front' });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  const peerOf = (st, region) => st.peers.find((p) => p.region === region);
  const value = async (id, k) => {
    const rows = await c.rows(id, 'SELECT v FROM t WHERE id = ?', [k]);
    return rows.length ? rows[0][0] : undefined;
  };

  test('one concurrent update pair is one conflict; a sequential update is none', async () => {
    for (const [k, v] of [[1, 'init1'], [2, 'init2']]) {
      const r = await c.sql('a', 'INSERT INTO t (id, v) VALUES (?, ?)', [k, v]);
      assert.ok(r.ok, JSON.stringify(r.error));
    }
    assert.ok((await c.waitConverged(['t'], 30000)).ok);

    // Sequential: B updates row 2 only after it has A's update.
    assert.ok((await c.sql('a', 'UPDATE t SET v = ? WHERE id = 2', ['a2'])).ok);
    const seen = await c.waitFor(async () => (await value('b', 2)) === 'a2', 30000);
    assert.ok(seen, 'b never received a\'s update of row 2');
    assert.ok((await c.sql('b', 'UPDATE t SET v = ? WHERE id = 2', ['b2'])).ok);
    assert.ok((await c.waitConverged(['t'], 30000)).ok);
    for (const id of c.ids) assert.equal(await value(id, 2), 'b2', `row 2 in ${id}`);

    // Concurrent: cut everything into A and into B (C still hears both), then update row 1 in both.
    await c.proxies.a.cut();
    await c.proxies.b.cut();
    const down = await c.waitFor(async () => !peerOf(await c.status('a'), 'b').connected &&
      !peerOf(await c.status('b'), 'a').connected, 30000);
    assert.ok(down, 'a and b still connected after the cut');
    assert.ok((await c.sql('a', 'UPDATE t SET v = ? WHERE id = 1', ['fromA'])).ok);
    assert.ok((await c.sql('b', 'UPDATE t SET v = ? WHERE id = 1', ['fromB'])).ok);
    // Neither saw the other's write.
    assert.equal(await value('a', 1), 'fromA');
    assert.equal(await value('b', 1), 'fromB');
    await c.proxies.a.reset();
    await c.proxies.b.reset();

    const conv = await c.waitConverged(['t'], 30000);
    assert.ok(conv.ok, 'no convergence after healing');
    for (const id of c.ids) {
      const ok = await c.waitFor(async () => (await c.status(id)).peers.every((p) => p.pending === 0), 30000);
      assert.ok(ok, `region ${id} still has pending entries`);
    }

    let winner = null;
    for (const id of c.ids) {
      const cf = await c.conflicts(id);
      const onT = cf.conflicts.filter((e) => e.table === 't');
      assert.equal(onT.length, 1, `region ${id} lists ${onT.length} conflicts: ${JSON.stringify(cf.conflicts)}`);
      assert.equal(cf.total, 1, `region ${id} total ${cf.total}`);
      const e = onT[0];
      assert.deepEqual([e.winner.origin, e.loser.origin].sort(), ['a', 'b'], `region ${id}: ${JSON.stringify(e)}`);
      const w = [BigInt(e.winner.hlc), e.winner.origin];
      const l = [BigInt(e.loser.hlc), e.loser.origin];
      assert.ok(w[0] > l[0] || (w[0] === l[0] && w[1] > l[1]), `winner is not the greater (hlc, origin): ${JSON.stringify(e)}`);
      // Every region resolved the same pair the same way.
      if (winner === null) winner = e;
      assert.deepEqual([e.pk_hex, e.winner, e.loser], [winner.pk_hex, winner.winner, winner.loser],
        `region ${id} resolved differently`);
    }
    const expected = winner.winner.origin === 'a' ? 'fromA' : 'fromB';
    for (const id of c.ids) {
      assert.equal(await value(id, 1), expected, `row 1 in ${id}`);
      assert.equal(await value(id, 2), 'b2', `row 2 in ${id}`);
      // Each region applied exactly one entry that was concurrent with its row's version:
      // a and b the other's update, c whichever of the two came second.
      assert.equal(await c.metric(id, 'edgelite_repl_conflicts_total'), 1, `conflicts counted in ${id}`);
    }
    // The pk of the conflict is row 1's, not row 2's: a second, sequential write to row 1 adds none.
    assert.ok((await c.sql('c', 'UPDATE t SET v = ? WHERE id = 1', ['c1'])).ok);
    assert.ok((await c.waitConverged(['t'], 30000)).ok);
    for (const id of c.ids) {
      assert.equal((await c.conflicts(id)).total, 1, `region ${id} after a sequential write`);
      assert.equal(await c.metric(id, 'edgelite_repl_conflicts_total'), 1, `conflicts counted in ${id} after it`);
    }
    // Paging: ?limit=1 gives the one conflict and where to continue; the next page is empty but
    // still says how many there are; a bad query is a 400.
    const get = async (q) => {
      const res = await fetch(c.url('a') + '/v1/conflicts' + q, { signal: AbortSignal.timeout(10000) });
      return { status: res.status, body: await res.json() };
    };
    const p1 = await get('?limit=1');
    assert.equal(p1.status, 200);
    assert.equal(p1.body.conflicts.length, 1);
    assert.equal(p1.body.next_before, p1.body.conflicts[0].id);
    const p2 = await get(`?limit=1&before=${p1.body.next_before}`);
    assert.deepEqual([p2.status, p2.body.conflicts.length, p2.body.total, p2.body.next_before], [200, 0, 1, undefined]);
    for (const q of ['?limit=0', '?limit=x', '?limit=10001', '?before=-1']) {
      const r = await get(q);
      assert.equal(r.status, 400, q);
      assert.equal(r.body.error?.code ?? r.body.code, 'BAD_QUERY', `${q}: ${JSON.stringify(r.body)}`);
    }
  });
});
