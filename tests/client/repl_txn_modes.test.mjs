// SPDX-License-Identifier: MIT
// Every transaction mode of @libsql/client works on a replicating node: transaction('read')
// (BEGIN TRANSACTION READONLY) answered "SQLITE_OK: not an error" to its first statement on a
// cluster node, because the id-striping triggers were synced under PRAGMA query_only. A write
// inside a read transaction is refused with a clear error and changes nothing anywhere.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '@libsql/client';

import { startCluster } from './lib/cluster.mjs';

describe('repl_txn_modes', { timeout: 90000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2 });
    await c.createTable('items', 'CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('read, write and deferred transactions all run on every region', async () => {
    for (const id of ['a', 'b']) {
      const db = createClient({ url: c.url(id) });
      try {
        // First, right after a schema change: the read transaction's connection has triggers to sync.
        await db.execute(`CREATE TABLE fresh_${id} (id INTEGER PRIMARY KEY, v TEXT)`);
        const r0 = await db.transaction('read');
        const n0 = (await r0.execute(`SELECT count(*) AS n FROM fresh_${id}`)).rows[0].n;
        await r0.commit();
        assert.equal(Number(n0), 0);
        const w = await db.transaction('write');
        await w.execute({ sql: 'INSERT INTO items (name) VALUES (?)', args: [`from ${id}`] });
        await w.commit();
        const d = await db.transaction('deferred');
        const dn = (await d.execute("SELECT count(*) AS n FROM items WHERE name = 'from " + id + "'")).rows[0].n;
        await d.commit();
        assert.equal(Number(dn), 1);
        const r = await db.transaction('read');
        const rows = (await r.execute("SELECT name FROM items WHERE name = 'from " + id + "'")).rows;
        const again = (await r.execute('SELECT 1 AS one')).rows[0].one;
        await r.commit();
        assert.deepEqual(rows.map((x) => x.name), [`from ${id}`]);
        assert.equal(Number(again), 1);
      } finally {
        db.close();
      }
    }
  });

  test('a write inside a read transaction is refused clearly and changes nothing', async () => {
    const db = createClient({ url: c.url('a') });
    try {
      const before = Number((await db.execute('SELECT count(*) AS n FROM items')).rows[0].n);
      const r = await db.transaction('read');
      await assert.rejects(r.execute("INSERT INTO items (name) VALUES ('sneaky')"), (e) => {
        assert.doesNotMatch(String(e.message), /not an error/);
        assert.match(String(e.message), /readonly|read-only|query_only/i);
        return true;
      });
      await r.rollback().catch(() => {});
      r.close();
      // The connection is usable for writes again afterwards.
      await db.execute("INSERT INTO items (name) VALUES ('after')");
      const n = Number((await db.execute("SELECT count(*) AS n FROM items WHERE name = 'sneaky'")).rows[0].n);
      assert.equal(n, 0);
      const total = Number((await db.execute('SELECT count(*) AS n FROM items')).rows[0].n);
      assert.equal(total, before + 1);
    } finally {
      db.close();
    }
  });
});
