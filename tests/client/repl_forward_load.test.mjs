// SPDX-License-Identifier: MIT
// Forwarding on the loop (issue 7, item 4): a strong write sent to a replica is forwarded to the
// primary as an asynchronous request on the replica's loop, not a thread-pool thread blocked until
// the primary answers. With the primary stalled (SIGSTOP) and 200 forwarded strong writes in flight
// on replica b, an interactive transaction on b (which runs on libuv's thread pool) still begins and
// commits while the primary is stopped. When the primary resumes every write is answered, each
// exactly once, and each row is on the primary exactly once.
//
// No speed is asserted: the transaction must finish before the primary is resumed, and the primary
// is kept stopped for a third of the strong timeout at most (a blocked pool would hold the
// transaction until the primary answers, i.e. until after the resume).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { sleep, startCluster } from './lib/cluster.mjs';

const require = createRequire(import.meta.url);
const { createClient } = require('@libsql/client');

const WRITES = 200;
const STRONG_TIMEOUT_MS = 30000;
const STALL_MAX_MS = STRONG_TIMEOUT_MS / 3;

describe('repl_forward_load', { timeout: 180000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'none',
      extraArgs: ['--log-level', 'warn', '--strong-timeout-ms', String(STRONG_TIMEOUT_MS)] });
    await c.createTable('f', 'CREATE TABLE IF NOT EXISTS f (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)');
    await c.createTable('loc', 'CREATE TABLE IF NOT EXISTS loc (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => {
    if (c) {
      try { c.resume('a'); } catch { /* not stopped */ }
      await c.destroy();
    }
  });

  test('200 forwarded strong writes do not starve an interactive transaction', async () => {
    c.pause('a');
    let resumed = false;
    let writes;
    try {
      writes = [];
      for (let k = 0; k < WRITES; k++) {
        writes.push(c.sql('b', 'INSERT INTO f (k, v) VALUES (?, ?)', [k, `w${k}`],
          { 'X-Edge-Consistency': 'strong' }, STRONG_TIMEOUT_MS + 30000));
      }
      const inFlight = await c.waitFor(async () => (await c.metric('b', 'edgelite_forwards_in_flight')) === WRITES,
        STALL_MAX_MS, 50);
      assert.ok(inFlight, `forwards in flight on b: ${await c.metric('b', 'edgelite_forwards_in_flight')}`);

      const db = createClient({ url: c.url('b') });
      const txn = (async () => {
        const tx = await db.transaction('write');
        await tx.execute({ sql: 'INSERT INTO loc (id, v) VALUES (?, ?)', args: [1, 'during'] });
        const r = await tx.execute('SELECT v FROM loc WHERE id = 1');
        await tx.commit();
        return r.rows[0].v;
      })();
      const first = await Promise.race([txn.then((v) => ({ txn: v })), sleep(STALL_MAX_MS).then(() => ({ stall: true }))]);
      // Hold the stall a moment longer: the writes must survive it, queued on b's connections.
      await sleep(1000);
      // Still stalled: every forward is still waiting for the primary.
      const still = await c.metric('b', 'edgelite_forwards_in_flight');
      c.resume('a');
      resumed = true;
      assert.equal(first.txn, 'during', 'the transaction on b did not commit while the primary was stopped');
      assert.equal(still, WRITES, 'forwarded writes were answered while the primary was stopped');
      db.close();
    } finally {
      if (!resumed) c.resume('a');
    }

    const answers = await Promise.all(writes);
    for (let k = 0; k < WRITES; k++) {
      const r = answers[k];
      assert.equal(r.status, 200, `write ${k}: ${r.status} ${JSON.stringify(r.error)}`);
      assert.match(r.bookmark ?? '', /^a:\d+$/, `write ${k} has no bookmark of the primary`);
    }
    const dup = await c.rows('a', 'SELECT k, count(*) FROM f GROUP BY k HAVING count(*) > 1');
    assert.deepEqual(dup, [], 'a row was written more than once');
    const [[n, d]] = await c.rows('a', 'SELECT count(*), count(DISTINCT k) FROM f');
    assert.equal(n, WRITES);
    assert.equal(d, WRITES);
    assert.equal(await c.metric('b', 'edgelite_forwards_in_flight'), 0);
    const conv = await c.waitConverged(['loc'], 15000);
    assert.ok(conv.ok, 'the transaction on b did not reach the other regions');
  });

  // Under the ASan build this also checks that forwards dropped at shutdown leak nothing (the
  // exit code is non-zero when LeakSanitizer finds a leak).
  test('a replica stops cleanly with forwarded writes in flight', async () => {
    c.pause('a');
    let pending;
    try {
      pending = [];
      for (let k = 0; k < 20; k++) {
        pending.push(c.sql('b', 'INSERT INTO f (k, v) VALUES (?, ?)', [1000 + k, 'late'],
          { 'X-Edge-Consistency': 'strong' }, STRONG_TIMEOUT_MS + 30000));
      }
      // Generous on a loaded machine: the 20 requests must all have reached b's forwarder (the
      // strong timeout is 30 s, so none can have ended yet).
      assert.ok(await c.waitFor(async () => (await c.metric('b', 'edgelite_forwards_in_flight')) >= 20,
        2 * STALL_MAX_MS, 50), `the forwards are not in flight: ${await c.metric('b', 'edgelite_forwards_in_flight')}`);
      const exit = await c.stop('b', 30000);
      assert.equal(exit.timedOut, false, 'b did not stop with forwards in flight');
      assert.equal(exit.code, 0, `b exited with ${exit.code} ${exit.signal}: ${c.stderr('b').slice(-2000)}`);
    } finally {
      c.resume('a');
    }
    const answers = await Promise.all(pending);
    for (const r of answers) assert.notEqual(r.status, 200, 'a write was answered by a stopped replica');
  });
});
