// SPDX-License-Identifier: MIT
// Ids without collisions (issue 8, item 6), with the real @libsql/client: two regions insert into an
// INTEGER PRIMARY KEY table without giving ids while they cannot see each other. Every acknowledged
// row must be in every region afterwards (on 75e94e3 both regions chose the same rowids and half the
// rows vanished), lastInsertRowid is the row's real id, RETURNING returns the row, and a user
// trigger sees the final id. Ids left to SQLite are striped: id % 64 == the region's position.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '@libsql/client';

import { startCluster } from './lib/cluster.mjs';

describe('repl_schema_ids', { timeout: 120000 }, () => {
  let c;
  let clients = {};
  const peerOf = (st, region) => st.peers.find((p) => p.region === region);

  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'front' });
    await c.createTable('orders', 'CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, tag TEXT UNIQUE)');
    await c.createTable('order_log', 'CREATE TABLE order_log (id TEXT PRIMARY KEY DEFAULT (lower(hex(randomblob(8)))),' +
      ' order_id INTEGER)');
    const r = await c.sql('a', 'CREATE TRIGGER orders_log AFTER INSERT ON orders BEGIN ' +
      'INSERT INTO order_log (order_id) VALUES (NEW.id); END');
    assert.ok(r.ok, JSON.stringify(r.error));
    for (const id of c.ids) clients[id] = createClient({ url: c.url(id) });
    // the trigger reached every region
    const ok = await c.waitFor(async () => {
      for (const id of c.ids) {
        const rows = await c.rows(id, "SELECT count(*) FROM sqlite_schema WHERE name = 'orders_log'");
        if (rows[0][0] !== 1) return false;
      }
      return true;
    }, 10000);
    assert.ok(ok, 'the trigger did not reach every region');
  });
  after(async () => {
    for (const cl of Object.values(clients)) cl.close();
    if (c) await c.destroy();
  });

  test('concurrent inserts without ids in two regions: every acknowledged row survives', async () => {
    await c.proxies.a.cut();
    await c.proxies.b.cut();
    const down = await c.waitFor(async () => !peerOf(await c.status('a'), 'b').connected &&
      !peerOf(await c.status('b'), 'a').connected, 10000);
    assert.ok(down, 'a and b still connected after the cut');
    const acked = [];
    await Promise.all(['a', 'b'].map(async (id) => {
      for (let i = 0; i < 3; i++) {
        const rs = await clients[id].execute({ sql: 'INSERT INTO orders (item) VALUES (?)', args: [`${id}${i}`] });
        assert.equal(rs.rowsAffected, 1, `rowsAffected in ${id}`);
        acked.push([Number(rs.lastInsertRowid), `${id}${i}`]);
      }
    }));
    await c.proxies.a.reset();
    await c.proxies.b.reset();
    acked.sort((x, y) => x[0] - y[0]);
    assert.equal(new Set(acked.map((r) => r[0])).size, 6, `ids collided: ${JSON.stringify(acked)}`);
    for (const [rowid, item] of acked) {
      assert.equal(rowid % 64, item.startsWith('a') ? 0 : 1, `id ${rowid} of ${item} is not in its region's stripe`);
    }
    const conv = await c.waitFor(async () => {
      for (const id of c.ids) {
        const rows = await c.rows(id, 'SELECT id, item FROM orders ORDER BY id');
        if (JSON.stringify(rows) !== JSON.stringify(acked)) return false;
      }
      return true;
    }, 20000);
    const seen = await c.rows('c', 'SELECT id, item FROM orders ORDER BY id');
    assert.ok(conv, `acknowledged rows missing: acked ${JSON.stringify(acked)}, c has ${JSON.stringify(seen)}`);
    // The user trigger ran once per row, at its origin, and saw the final id.
    const log = await c.rows('c', 'SELECT order_id FROM order_log ORDER BY order_id');
    assert.deepEqual(log.map((r) => r[0]), acked.map((r) => r[0]));
  });

  test('RETURNING, multi-row VALUES, OR IGNORE and an upsert without an id', async () => {
    const rs = await clients.b.execute({ sql: "INSERT INTO orders (item) VALUES ('ret') RETURNING id, item", args: [] });
    assert.equal(rs.rows.length, 1, 'RETURNING gave no row');
    const id = Number(rs.rows[0].id);
    assert.equal(rs.rows[0].item, 'ret');
    assert.equal(id % 64, 1);
    assert.equal(Number(rs.lastInsertRowid), id);
    const multi = await clients.c.execute("INSERT INTO orders (item) VALUES ('m1'), ('m2')");
    assert.equal(multi.rowsAffected, 2);
    assert.equal(Number(multi.lastInsertRowid) % 64, 2);
    const ig1 = await clients.a.execute("INSERT OR IGNORE INTO orders (item, tag) VALUES ('t1', 'only')");
    assert.equal(ig1.rowsAffected, 1);
    const ig2 = await clients.a.execute("INSERT OR IGNORE INTO orders (item, tag) VALUES ('t2', 'only')");
    assert.equal(ig2.rowsAffected, 0, 'OR IGNORE did not ignore the duplicate tag');
    await assert.rejects(
      clients.a.execute("INSERT INTO orders (item, tag) VALUES ('t3', 'only') ON CONFLICT (tag) DO UPDATE SET item = 'x'"),
      (e) => /ID_REQUIRED/.test(e.message), 'an upsert without an id is refused with ID_REQUIRED');
    // With its id, the same upsert works.
    const up = await clients.a.execute("INSERT INTO orders (id, item, tag) VALUES (100000, 't3', 'only') " +
      "ON CONFLICT (tag) DO UPDATE SET item = 'updated'");
    assert.equal(up.rowsAffected, 1);
    // The rows came from b, c and a: the regions must hold the same rows once every one has
    // arrived, and those are all of them (reading a's rows before b's and c's had reached it
    // made an expectation no region could meet).
    const q = 'SELECT id, item, tag FROM orders ORDER BY id';
    const complete = (rows) => ['ret', 'm1', 'm2', 'updated'].every((item) => rows.some((r) => r[1] === item));
    let seen = {};
    const same = await c.waitFor(async () => {
      for (const r of c.ids) seen[r] = await c.rows(r, q);
      return c.ids.every((r) => complete(seen[r]) && JSON.stringify(seen[r]) === JSON.stringify(seen.a));
    }, 20000);
    assert.ok(same, `regions differ: ${JSON.stringify(seen)}`);
    const want = seen.a;
    assert.ok(!want.some((r) => r[1] === 't2'), 'the ignored row is there');
    assert.ok(want.some((r) => r[1] === 'updated' && r[2] === 'only'));
  });
});
