// SPDX-License-Identifier: MIT
// Crash safety of replication (issue 4, test 2): region A takes writes and is SIGKILLed in the
// middle of the load; restarted on the same data directory it must still hand every write it
// acknowledged to the other regions.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep, startCluster } from './lib/cluster.mjs';

describe('repl_sigkill', { timeout: 60000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3 });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('every acknowledged write survives SIGKILL of the writing region and reaches all regions', async () => {
    const acked = [];
    let next = 1;
    let killed = false;
    const MAX = 5000;
    const worker = async () => {
      for (let guard = 0; guard < MAX && next <= MAX; guard++) {
        const id = next++;
        const r = await c.sql('a', 'INSERT INTO t (id, v) VALUES (?, ?)', [id, `v${id}`], {}, 5000);
        if (r.ok) acked.push(id);
        else if (killed) return; // refused or cut off by the kill: not acknowledged, stop
        else throw new Error(`write ${id} failed before the kill: HTTP ${r.status} ${JSON.stringify(r.error)}`);
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    // Kill once a fair amount is acknowledged, while the workers are still writing.
    for (let guard = 0; guard < 200 && acked.length < 300; guard++) await sleep(25);
    assert.ok(acked.length > 0, 'no write was acknowledged before the kill');
    killed = true;
    const ex = await c.kill('a', 'SIGKILL');
    assert.equal(ex.signal, 'SIGKILL');
    await Promise.all(workers);
    const before = acked.length;
    assert.ok(next <= MAX, 'the load finished before the kill: the test proves nothing');

    await c.restart('a');
    const conv = await c.waitConverged(['t'], 15000);
    assert.ok(conv.ok, `no convergence after restart: ${JSON.stringify(Object.fromEntries(
      Object.entries(conv.sums.t).map(([id, s]) => [id, s.count])))}`);
    for (const id of c.ids) {
      const have = new Set((await c.rows(id, 'SELECT id FROM t')).map((r) => r[0]));
      const missing = acked.filter((k) => !have.has(k));
      assert.deepEqual(missing.slice(0, 20), [], `region ${id} lost ${missing.length} of ${before} acknowledged writes`);
      const wrong = await c.rows(id, "SELECT count(*) FROM t WHERE v != 'v' || id");
      assert.equal(wrong[0][0], 0, `region ${id} has rows with wrong values`);
    }
    // The restarted region accepts writes again and they replicate.
    const r = await c.sql('a', 'INSERT INTO t (id, v) VALUES (?, ?)', [MAX + 1, `v${MAX + 1}`]);
    assert.ok(r.ok, JSON.stringify(r.error));
    const conv2 = await c.waitConverged(['t'], 10000);
    assert.ok(conv2.ok, 'a write after the restart did not replicate');
  });
});
