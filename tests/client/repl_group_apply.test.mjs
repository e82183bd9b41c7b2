// SPDX-License-Identifier: MIT
// Group apply (src/repl/session.c): the ENTRIES frames queued for a link while its apply job
// ran are applied in one writer transaction, and each is still answered by its own ACK with
// the VV after it. Region a is stopped (SIGSTOP) while b and c commit single-row writes, one
// batch each: their links keep sending (up to the window), the frames queue at a, and when a
// runs again it applies many frames per transaction. Every ACK must cover its frame (no
// sender falls back and resends), nothing stays in flight, and all regions converge to the
// same rows, conflicts included.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { sleep, startCluster } from './lib/cluster.mjs';

describe('repl_group_apply', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, extraArgs: ['--log-level', 'warn'] });
    await c.createTable('g', 'CREATE TABLE IF NOT EXISTS g (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('frames queued at a paused region: several per transaction, one exact ACK each, converged', async () => {
    const txns0 = await c.metric('a', 'edgelite_repl_apply_transactions_total');
    const frames0 = await c.metric('a', 'edgelite_repl_apply_frames_total');
    assert.ok(Number.isFinite(txns0) && Number.isFinite(frames0), 'no group-apply metrics');
    c.pause('a');
    try {
      const writer = async (id, base) => {
        for (let i = 0; i < 120; i++) {
          assert.ok((await c.sql(id, 'INSERT INTO g VALUES (?, ?, ?)', [base + i, `${id}${i}`, i])).ok);
          // rows both regions update: the conflicts resolve the same way everywhere
          if (i % 4 === 0) assert.ok((await c.sql(id, 'UPDATE g SET v = ?, n = n + 1 WHERE id < 8', [`${id}${i}`])).ok);
        }
      };
      await c.sql('b', 'INSERT INTO g VALUES (1, ?, 0), (2, ?, 0), (3, ?, 0)', ['x', 'y', 'z']);
      await Promise.all([writer('b', 1000), writer('c', 2000)]);
      await sleep(300); // the links send what they may
    } finally {
      c.resume('a');
    }
    const conv = await c.waitConverged(['g'], 30000);
    assert.ok(conv.ok, `not converged: ${JSON.stringify(conv)}`);
    const txns = (await c.metric('a', 'edgelite_repl_apply_transactions_total')) - txns0;
    const frames = (await c.metric('a', 'edgelite_repl_apply_frames_total')) - frames0;
    console.log(`# a applied ${frames} frames in ${txns} transactions`);
    assert.ok(frames > txns, `no transaction applied more than one frame (${frames} frames in ${txns})`);
    for (const id of ['b', 'c']) {
      await c.waitFor(async () => (await c.metric(id, 'edgelite_repl_peer_in_flight{peer="a"}')) === 0, 10000);
      assert.equal(await c.metric(id, 'edgelite_repl_peer_resends_total{peer="a"}'), 0,
        `${id}: an ACK of a did not cover its frame`);
    }
    const rows = await c.rows('a', 'SELECT count(*) FROM g');
    assert.equal(Number(rows[0][0]), 243);
    const sums = await Promise.all(c.ids.map((id) => c.checksum(id, 'g')));
    for (const s of sums) assert.equal(s.hash, sums[0].hash);
  });
});
