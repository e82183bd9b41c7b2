// SPDX-License-Identifier: MIT
// A frozen region (issue 4, test 3): region C is SIGSTOPped while A and B write. A must report
// the backlog towards C (pending entries, growing lag) in /v1/status; after SIGCONT C catches up
// and the backlog drains to zero.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep, startCluster } from './lib/cluster.mjs';

describe('repl_sigstop', { timeout: 60000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3 });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  const peerOf = (st, region) => st.peers.find((p) => p.region === region);

  test('backlog towards a stopped region is visible and drains after SIGCONT', async () => {
    c.pause('c');
    try {
      for (let i = 1; i <= 40; i++) {
        const r = await c.sql(i % 2 ? 'a' : 'b', 'INSERT INTO t (id, v) VALUES (?, ?)', [i, `v${i}`]);
        assert.ok(r.ok, JSON.stringify(r.error));
      }
      // A and B still replicate to each other.
      const ab = await c.waitConverged(['t'], 10000, ['a', 'b']);
      assert.ok(ab.ok, 'a and b did not converge while c was stopped');
      assert.equal(ab.sums.t.a.count, 40);

      const s1 = peerOf(await c.status('a'), 'c');
      assert.ok(s1, 'a has no peer entry for c');
      assert.ok(s1.pending > 0, `pending towards the stopped region is ${s1.pending}`);
      await sleep(600);
      const s2 = peerOf(await c.status('a'), 'c');
      assert.ok(s2.pending >= s1.pending, `pending went down while c was stopped: ${s1.pending} -> ${s2.pending}`);
      assert.ok(s2.lag_ms > s1.lag_ms, `lag did not grow: ${s1.lag_ms} -> ${s2.lag_ms}`);
      assert.ok(s2.lag_ms >= 500, `lag ${s2.lag_ms} ms after at least 600 ms of backlog`);
      // The other link is healthy meanwhile.
      const sb = peerOf(await c.status('a'), 'b');
      const drained = await c.waitFor(async () => peerOf(await c.status('a'), 'b').pending === 0, 5000);
      assert.ok(drained, `a->b backlog did not drain: ${JSON.stringify(sb)}`);
    } finally {
      c.resume('c');
    }
    const conv = await c.waitConverged(['t'], 10000);
    assert.ok(conv.ok, 'c did not catch up after SIGCONT');
    assert.equal(conv.sums.t.c.count, 40);
    for (const id of ['a', 'b']) {
      const st = await c.waitFor(async () => {
        const p = peerOf(await c.status(id), 'c');
        return p.pending === 0 && p.lag_ms === 0 ? p : null;
      }, 10000);
      assert.ok(st, `${id}->c backlog did not return to zero: ${JSON.stringify(peerOf(await c.status(id), 'c'))}`);
    }
  });
});
