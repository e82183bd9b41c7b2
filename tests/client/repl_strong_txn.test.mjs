// SPDX-License-Identifier: MIT
// Strong stays strong (issue 8, item 9): an interactive transaction that wrote a strong table
// commits (answers its COMMIT) only once a majority holds it, whatever the COMMIT request itself
// touches; X-Edge-Consistency may raise a table's level but never lower it. On 75e94e3 the COMMIT was
// answered at once and `X-Edge-Consistency: eventual` made a strong table's write a local one.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '@libsql/client';

import { sleep, startCluster } from './lib/cluster.mjs';

describe('repl_strong_txn', { timeout: 90000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, tables: { ledger: 'strong' }, extraArgs: ['--log-level', 'warn',
      '--strong-timeout-ms', '20000'] });
    await c.createTable('ledger', 'CREATE TABLE ledger (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('the COMMIT of a transaction that wrote a strong table waits for a majority', async () => {
    const client = createClient({ url: c.url('a') });
    try {
      // Both replicas stopped first: no region can acknowledge, so nothing of the transaction
      // can be answered as strong until they resume (the statements inside it need no majority).
      c.pause('b');
      c.pause('c');
      const tx = await client.transaction('write');
      await tx.execute("INSERT INTO ledger (id, v) VALUES (1, 'in a transaction')");
      let settled = false;
      const commit = tx.commit().then(() => { settled = true; }, (e) => { settled = e; });
      await sleep(700);
      assert.equal(settled, false, 'the COMMIT was answered while no other region held the write');
      c.resume('b');
      c.resume('c');
      const done = await c.waitFor(async () => settled !== false, 20000);
      assert.ok(done, 'the COMMIT was never answered after the replicas came back');
      assert.equal(settled, true, `COMMIT failed: ${settled && settled.message}`);
      await commit;
      let holders = 0;
      for (const id of c.ids) {
        const rows = await c.rows(id, 'SELECT v FROM ledger WHERE id = 1');
        if (rows.length === 1) holders++;
      }
      assert.ok(holders >= 2, `acknowledged with ${holders} region(s) holding it`);
    } finally {
      c.resume('b');
      c.resume('c');
      client.close();
    }
  });

  test('X-Edge-Consistency: eventual does not make a strong table\'s write local on a replica', async () => {
    const r = await c.sql('b', "INSERT INTO ledger (id, v) VALUES (2, 'header says eventual')", [],
      { 'X-Edge-Consistency': 'eventual' });
    assert.ok(r.ok, JSON.stringify(r.error));
    // Forwarded: the primary wrote it (its entry), and it held it before the answer.
    assert.deepEqual(await c.rows('a', 'SELECT v FROM ledger WHERE id = 2'), [['header says eventual']]);
    // The bookmark names the region whose log entry holds the write: the primary's.
    assert.match(String(r.bookmark), /^a:\d+$/, `the write ran on the replica instead of the primary (bookmark ${r.bookmark})`);
    // Raising still works: a plain table written strong through the header.
    await c.createTable('plainer', 'CREATE TABLE plainer (id INTEGER PRIMARY KEY, v TEXT)');
    const up = await c.sql('c', "INSERT INTO plainer VALUES (1, 'raised')", [], { 'X-Edge-Consistency': 'strong' });
    assert.ok(up.ok, JSON.stringify(up.error));
    assert.deepEqual(await c.rows('a', 'SELECT v FROM plainer WHERE id = 1'), [['raised']]);
  });
});
