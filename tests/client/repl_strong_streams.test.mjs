// SPDX-License-Identifier: MIT
// Strong tables and schema changes through the real client on a replica: a write batch
// (one stateless request) is forwarded to the primary; inside an interactive transaction
// or over a WebSocket (state that lives on the replica) they are refused with
// STRONG_NEEDS_PRIMARY and change nothing, never executed locally.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { startCluster } from './lib/cluster.mjs';

const require = createRequire(import.meta.url);
const { createClient } = require('@libsql/client');

describe('strong writes from replica streams', { timeout: 90000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, tables: { accounts: 'strong' }, proxies: 'front' });
    await c.createTable('accounts', 'CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  const onPrimary = async (k) => (await c.rows('a', 'SELECT v FROM accounts WHERE id = ?', [k])).map((r) => r[0]);

  test('a write batch on a replica goes through the primary', async () => {
    const db = createClient({ url: c.url('b') });
    try {
      await db.batch([{ sql: 'INSERT INTO accounts VALUES (?, ?)', args: [1, 'batch-1'] },
        { sql: 'INSERT INTO accounts VALUES (?, ?)', args: [2, 'batch-2'] }], 'write');
    } finally {
      db.close();
    }
    // Acknowledged through the primary: no waiting needed.
    assert.deepEqual(await onPrimary(1), ['batch-1']);
    assert.deepEqual(await onPrimary(2), ['batch-2']);
  });

  test('an interactive transaction on a replica may not write a strong table', async () => {
    const db = createClient({ url: c.url('c') });
    const tx = await db.transaction('write');
    await assert.rejects(tx.execute({ sql: 'INSERT INTO accounts VALUES (?, ?)', args: [10, 'tx'] }),
      (e) => /STRONG_NEEDS_PRIMARY|strong/.test(`${e.code} ${e.message}`));
    try { tx.close(); } catch { /* already gone */ }
    db.close();
    await new Promise((r) => setTimeout(r, 300));
    for (const id of c.ids) {
      assert.deepEqual(await c.rows(id, 'SELECT count(*) FROM accounts WHERE id = 10'), [[0]], `row 10 in ${id}`);
    }
  });

  test('a schema change inside a replica transaction is refused', async () => {
    const db = createClient({ url: c.url('b') });
    const tx = await db.transaction('write');
    await assert.rejects(tx.execute('CREATE TABLE local_only (id INTEGER PRIMARY KEY)'),
      (e) => /STRONG_NEEDS_PRIMARY|primary/.test(`${e.code} ${e.message}`));
    try { tx.close(); } catch { /* already gone */ }
    db.close();
    assert.equal(await c.hasTable('b', 'local_only'), false);
  });

  test('over a WebSocket on a replica a strong write is refused, on the primary it works', async () => {
    const ws = createClient({ url: c.url('b').replace('http', 'ws') });
    await assert.rejects(ws.execute({ sql: 'INSERT INTO accounts VALUES (?, ?)', args: [20, 'ws'] }),
      (e) => e.code === 'STRONG_NEEDS_PRIMARY');
    ws.close();
    // Slow links into the replicas make "acknowledged before a majority has it" observable.
    await c.proxies.b.latency(300);
    await c.proxies.c.latency(300);
    const wsa = createClient({ url: c.url('a').replace('http', 'ws') });
    await wsa.execute({ sql: 'INSERT INTO accounts VALUES (?, ?)', args: [21, 'ws-primary'] });
    wsa.close();
    await c.proxies.b.reset();
    await c.proxies.c.reset();
    assert.deepEqual(await onPrimary(21), ['ws-primary']);
    // Acknowledged only once a majority holds it: no waiting here.
    let holders = 0;
    for (const id of c.ids) {
      if ((await c.rows(id, 'SELECT count(*) FROM accounts WHERE id = 21'))[0][0] === 1) holders++;
    }
    assert.ok(holders >= 2, `acknowledged while only ${holders} region(s) hold it`);
    assert.deepEqual(await onPrimary(20), []);
  });
});
