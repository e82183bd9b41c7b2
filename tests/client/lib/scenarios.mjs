// SPDX-License-Identifier: MIT
// Scenarios run with the unmodified @libsql/client against a real node, once over http:// and once
// over ws:// (hrana_http.test.mjs and hrana_ws.test.mjs). Everything here must hold for both
// transports; transport-specific cases live in the test files themselves.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@libsql/client';
import { WsClient } from '@libsql/client/ws';
import * as hrana from '@libsql/hrana-client';
import WebSocket from 'ws';

import { sleep, startNode } from './node.mjs';

const T = { timeout: 30000 };

let tableSeq = 0;
/** A table name no other test in this process uses, so tests sharing one node never interfere. */
export function freshTable(prefix = 't') {
  tableSeq += 1;
  return `${prefix}_${process.pid}_${tableSeq}`;
}

/** Assert that `promise` rejects with a LibsqlError whose code matches `code` (string or RegExp). */
export async function rejectsWithCode(promise, code) {
  await assert.rejects(promise, (e) => {
    const why = `error was: ${e.message} (cause: ${e.cause?.message ?? '-'} ${e.cause?.cause?.code ?? ''})`;
    if (code instanceof RegExp) assert.match(String(e.code), code, why);
    else assert.equal(e.code, code, why);
    return true;
  });
}

/** The single integer of `SELECT count(*) ...`. */
export async function count(client, table, where = '') {
  const rs = await client.execute(`SELECT count(*) AS n FROM ${table} ${where}`);
  return Number(rs.rows[0].n);
}

/**
 * Insert into `table` with a client until it succeeds: proves that no other connection still holds the
 * write lock (an unfinished transaction would keep it). Bounded to about `ms`.
 */
export async function insertWhenUnlocked(client, sql, args, ms = 5000) {
  const deadline = Date.now() + ms;
  let last;
  for (let i = 0; i < 100 && Date.now() < deadline; i++) {
    try {
      return await client.execute({ sql, args });
    } catch (e) {
      last = e;
      await sleep(100);
    }
  }
  throw new Error(`write still blocked after ${ms} ms: ${last && last.message}`);
}

function bytesOf(v) {
  assert.ok(v instanceof ArrayBuffer, `expected an ArrayBuffer, got ${Object.prototype.toString.call(v)}`);
  return Buffer.from(v);
}

/**
 * The real @libsql/client WebSocket client on a Hrana 3 connection: what `hrana.openWs(url, jwt, 3)`
 * opens (the same subprotocol offer), so @libsql/client runs every batch through a cursor
 * (`stream.batch(version >= 3)`). @libsql/client 0.18 itself asks for version 2; its WsClient takes
 * any hrana client. `sent`, when given, collects the type of every request the client sends.
 * (The client opens a fresh, version 2 connection only once this one is 60 s old.)
 */
export function createV3WsClient({ url, authToken, intMode = 'number', sent } = {}) {
  const socket = new WebSocket(url, ['hrana3-protobuf', 'hrana3', 'hrana2', 'hrana1']);
  if (sent) {
    const send = socket.send.bind(socket);
    socket.send = (data, ...rest) => {
      try { sent.push(JSON.parse(data).request?.type); } catch { /* not JSON */ }
      return send(data, ...rest);
    };
  }
  return new WsClient(new hrana.WsClient(socket, authToken), url, authToken, intMode, 20);
}

/**
 * Register the shared client scenarios. scheme: 'http' | 'ws' | 'ws3' (WebSocket, Hrana 3, cursors).
 */
export function clientScenarios(scheme) {
  describe(`@libsql/client over ${scheme}://`, { timeout: 240000 }, () => {
    let node;
    let client;
    let big; // intMode "bigint" so that 64-bit integers round-trip exactly
    const sent = [];

    const url = () => (scheme === 'ws' || scheme === 'ws3' ? node.wsUrl : node.url);
    const makeClient = (opts) => (scheme === 'ws3'
      ? createV3WsClient({ url: url(), sent, ...opts })
      : createClient({ url: url(), ...opts }));

    before(async () => {
      node = await startNode();
      client = makeClient({});
      big = makeClient({ intMode: 'bigint' });
    });

    after(async () => {
      if (client) client.close();
      if (big) big.close();
      if (node) await node.destroy();
    });

    describe('arguments', () => {
      test('positional ? arguments bind in order', T, async () => {
        const rs = await client.execute({ sql: 'SELECT ? AS a, ? AS b', args: ['x', 'y'] });
        assert.deepEqual(rs.columns, ['a', 'b']);
        assert.equal(rs.rows[0].a, 'x');
        assert.equal(rs.rows[0].b, 'y');
      });

      test('?NNN arguments bind by number and may repeat', T, async () => {
        const rs = await client.execute({ sql: 'SELECT ?2 AS b, ?1 AS a, ?2 AS b2', args: ['one', 'two'] });
        assert.equal(rs.rows[0].a, 'one');
        assert.equal(rs.rows[0].b, 'two');
        assert.equal(rs.rows[0].b2, 'two');
      });

      test('named :a, @b and $c arguments', T, async () => {
        const rs = await client.execute({
          sql: 'SELECT :a AS a, @b AS b, $c AS c, :a AS a2',
          args: { a: 'alpha', b: 'beta', c: 'gamma' },
        });
        assert.deepEqual(
          { a: rs.rows[0].a, b: rs.rows[0].b, c: rs.rows[0].c, a2: rs.rows[0].a2 },
          { a: 'alpha', b: 'beta', c: 'gamma', a2: 'alpha' });
      });

      test('named arguments in an INSERT land in the right columns', T, async () => {
        const t = freshTable('named');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, name TEXT, note TEXT)`);
        const ins = await client.execute({
          sql: `INSERT INTO ${t} (id, name, note) VALUES ($id, :name, @note)`,
          args: { id: 7n, name: 'bob', note: 'hi' },
        });
        assert.equal(ins.rowsAffected, 1);
        assert.equal(Number(ins.lastInsertRowid), 7);
        const rs = await client.execute(`SELECT id, name, note FROM ${t}`);
        assert.equal(rs.rows.length, 1);
        assert.equal(rs.rows[0].id, 7);
        assert.equal(rs.rows[0].name, 'bob');
        assert.equal(rs.rows[0].note, 'hi');
      });

      test('too many arguments fail with ARGS_INVALID', T, async () => {
        await rejectsWithCode(client.execute({ sql: 'SELECT ? AS a', args: ['x', 'y'] }), 'ARGS_INVALID');
      });

      test('a missing argument fails with ARGS_INVALID', T, async () => {
        await rejectsWithCode(client.execute({ sql: 'SELECT ? AS a, ? AS b', args: ['x'] }), 'ARGS_INVALID');
        await rejectsWithCode(client.execute({ sql: 'SELECT :a AS a', args: { b: 'x' } }), 'ARGS_INVALID');
      });
    });

    describe('value types', () => {
      let t;
      before(async () => {
        t = freshTable('vals');
        // No declared type: no affinity, so every value keeps the storage class it was bound with.
        await client.execute(`CREATE TABLE ${t} (k TEXT PRIMARY KEY, v)`);
      });

      async function roundTrip(c, k, v) {
        await c.execute({ sql: `INSERT INTO ${t} (k, v) VALUES (?, ?)`, args: [k, v] });
        const rs = await c.execute({ sql: `SELECT v, typeof(v) AS ty, length(v) AS len FROM ${t} WHERE k = ?`, args: [k] });
        assert.equal(rs.rows.length, 1);
        return rs.rows[0];
      }

      test('null', T, async () => {
        const r = await roundTrip(client, 'null', null);
        assert.equal(r.v, null);
        assert.equal(r.ty, 'null');
      });

      test('64-bit integers round-trip exactly (bigint mode)', T, async () => {
        const cases = [0n, 1n, -1n, 9007199254740993n, -9007199254740993n,
          9223372036854775807n, -9223372036854775808n];
        for (const [i, n] of cases.entries()) {
          const r = await roundTrip(big, `int${i}`, n);
          assert.equal(r.ty, 'integer');
          assert.equal(typeof r.v, 'bigint');
          assert.equal(r.v, n);
        }
        // Integer arithmetic happens in SQLite, the result comes back as a 64-bit integer.
        const rs = await big.execute('SELECT 9223372036854775806 + 1 AS m, -9223372036854775807 - 1 AS lo');
        assert.equal(rs.rows[0].m, 9223372036854775807n);
        assert.equal(rs.rows[0].lo, -9223372036854775808n);
      });

      test('integers in number mode', T, async () => {
        const rs = await client.execute('SELECT 42 AS a, -7 AS b, typeof(42) AS ty');
        assert.equal(rs.rows[0].a, 42);
        assert.equal(rs.rows[0].b, -7);
        assert.equal(rs.rows[0].ty, 'integer');
      });

      test('floats round-trip exactly', T, async () => {
        const cases = [1.5, 0.1, 1 / 3, -2.25e-300, 1.7976931348623157e308, 5e-324, 123456789.123456789, -0.5];
        for (const [i, x] of cases.entries()) {
          const r = await roundTrip(client, `float${i}`, x);
          assert.equal(r.ty, 'real', `case ${x}`);
          assert.equal(r.v, x, `case ${x}`);
        }
        const rs = await client.execute('SELECT 1.0 AS one, 2.5 * 2 AS five, typeof(2.5) AS ty');
        assert.equal(rs.rows[0].one, 1);
        assert.equal(rs.rows[0].five, 5);
        assert.equal(rs.rows[0].ty, 'real');
      });

      test('text with full Unicode round-trips', T, async () => {
        const cases = [
          '', 'plain ascii', 'héllo wörld', '日本語のテキスト', 'עברית ومرحبا', 'e\u0301 combining',
          '🎉 emoji 👩‍👩‍👧‍👦 family', '\u{1F600}\u{10FFFF}\u{10000}', 'quote " backslash \\ slash /',
          'controls \n\r\t\u0001\u001f\u007f', '\u2028\u2029 separators', 'x'.repeat(100000) + 'é',
        ];
        for (const [i, s] of cases.entries()) {
          const r = await roundTrip(client, `text${i}`, s);
          assert.equal(r.ty, 'text');
          assert.equal(r.v, s, `case ${i}`);
          assert.equal(Number(r.len), [...s].length, `SQLite sees the same characters (case ${i})`);
        }
      });

      test('text with an embedded NUL round-trips', T, async () => {
        const s = 'before\u0000after';
        const r = await roundTrip(client, 'textnul', s);
        assert.equal(r.ty, 'text');
        assert.equal(r.v, s);
      });

      test('blobs: bytes 0..255, empty, 1 MiB', T, async () => {
        const all = Uint8Array.from({ length: 256 }, (_, i) => i);
        let r = await roundTrip(client, 'blob256', all);
        assert.equal(r.ty, 'blob');
        assert.ok(bytesOf(r.v).equals(Buffer.from(all)));

        r = await roundTrip(client, 'blobempty', new Uint8Array(0));
        assert.equal(r.ty, 'blob');
        assert.equal(bytesOf(r.v).length, 0);

        const mib = crypto.randomBytes(1024 * 1024);
        r = await roundTrip(client, 'blob1m', new Uint8Array(mib));
        assert.equal(r.ty, 'blob');
        assert.equal(Number(r.len), mib.length);
        assert.ok(bytesOf(r.v).equals(mib), '1 MiB blob differs after the round trip');
      });

      test('result metadata: columns, declared types, rowsAffected, lastInsertRowid', T, async () => {
        const u = freshTable('meta');
        await client.execute(`CREATE TABLE ${u} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)`);
        const ins = await client.execute({ sql: `INSERT INTO ${u} (name, score) VALUES (?, ?), (?, ?)`, args: ['a', 1.5, 'b', 2.5] });
        assert.equal(ins.rowsAffected, 2);
        assert.equal(Number(ins.lastInsertRowid), 2);
        const upd = await client.execute(`UPDATE ${u} SET score = score + 1`);
        assert.equal(upd.rowsAffected, 2);
        const rs = await client.execute(`SELECT id, name, score, score * 2 AS dbl FROM ${u} ORDER BY id`);
        assert.deepEqual(rs.columns, ['id', 'name', 'score', 'dbl']);
        assert.deepEqual(rs.columnTypes, ['INTEGER', 'TEXT', 'REAL', '']);
        assert.equal(rs.rows.length, 2);
        assert.deepEqual(Array.from(rs.rows[1]), [2, 'b', 3.5, 7]);
        const del = await client.execute(`DELETE FROM ${u} WHERE id = 1`);
        assert.equal(del.rowsAffected, 1);
      });
    });

    describe('batch', () => {
      for (const mode of ['write', 'deferred']) {
        test(`batch "${mode}" commits all statements`, T, async () => {
          const t = freshTable(`b${mode}`);
          await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, v TEXT)`);
          const res = await client.batch([
            { sql: `INSERT INTO ${t} (id, v) VALUES (?, ?)`, args: [1, 'a'] },
            { sql: `INSERT INTO ${t} (id, v) VALUES (?, ?)`, args: [2, 'b'] },
            `SELECT count(*) AS n FROM ${t}`,
          ], mode);
          assert.equal(res.length, 3);
          assert.equal(res[0].rowsAffected, 1);
          assert.equal(res[1].rowsAffected, 1);
          assert.equal(Number(res[2].rows[0].n), 2);
          assert.equal(await count(client, t), 2);
        });

        test(`batch "${mode}": a failing statement rolls the whole batch back`, T, async () => {
          const t = freshTable(`bfail${mode}`);
          await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, v TEXT)`);
          await client.execute(`INSERT INTO ${t} (id, v) VALUES (1, 'keep')`);
          await rejectsWithCode(client.batch([
            `INSERT INTO ${t} (id, v) VALUES (2, 'new')`,
            `UPDATE ${t} SET v = 'changed' WHERE id = 1`,
            `INSERT INTO ${t} (id, v) VALUES (1, 'dup')`, // PRIMARY KEY violation
            `INSERT INTO ${t} (id, v) VALUES (3, 'after')`,
          ], mode), /^SQLITE_CONSTRAINT/);
          const rs = await client.execute(`SELECT id, v FROM ${t} ORDER BY id`);
          assert.deepEqual(rs.rows.map((r) => [r.id, r.v]), [[1, 'keep']]);
          // The rolled-back batch must not leave the write lock behind.
          await insertWhenUnlocked(client, `INSERT INTO ${t} (id, v) VALUES (?, ?)`, [4, 'later']);
          assert.equal(await count(client, t), 2);
        });
      }

      test('batch "read" reads consistently', T, async () => {
        const t = freshTable('bread');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
        await client.batch([`INSERT INTO ${t} VALUES (1)`, `INSERT INTO ${t} VALUES (2)`], 'write');
        const res = await client.batch([`SELECT count(*) AS n FROM ${t}`, `SELECT max(id) AS m FROM ${t}`], 'read');
        assert.equal(Number(res[0].rows[0].n), 2);
        assert.equal(Number(res[1].rows[0].m), 2);
      });

      test('batch "read" refuses writes and changes nothing (BEGIN TRANSACTION READONLY is read-only)', T, async () => {
        const t = freshTable('bro');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, v TEXT)`);
        await client.execute(`INSERT INTO ${t} VALUES (1, 'orig')`);
        await assert.rejects(client.batch([
          `SELECT count(*) FROM ${t}`,
          `INSERT INTO ${t} VALUES (2, 'x')`,
        ], 'read'));
        await assert.rejects(client.batch([`UPDATE ${t} SET v = 'changed'`], 'read'));
        await assert.rejects(client.batch([`CREATE TABLE ${t}_x (a)`], 'read'));
        const rs = await client.execute(`SELECT id, v FROM ${t}`);
        assert.deepEqual(rs.rows.map((r) => [r.id, r.v]), [[1, 'orig']]);
        const ex = await client.execute({ sql: "SELECT count(*) AS n FROM sqlite_schema WHERE name = ?", args: [`${t}_x`] });
        assert.equal(Number(ex.rows[0].n), 0);
      });

      test('a batch of 200 statements', T, async () => {
        const t = freshTable('bmany');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, v TEXT)`);
        const stmts = Array.from({ length: 200 }, (_, i) => ({ sql: `INSERT INTO ${t} VALUES (?, ?)`, args: [i, `v${i}`] }));
        const res = await client.batch(stmts, 'write');
        assert.equal(res.length, 200);
        assert.equal(await count(client, t), 200);
      });
    });

    describe('interactive transactions', () => {
      test('commit makes all writes visible', T, async () => {
        const t = freshTable('txc');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, v TEXT)`);
        const tx = await client.transaction('write');
        try {
          await tx.execute({ sql: `INSERT INTO ${t} VALUES (?, ?)`, args: [1, 'a'] });
          await tx.execute({ sql: `INSERT INTO ${t} VALUES (?, ?)`, args: [2, 'b'] });
          const inside = await tx.execute(`SELECT count(*) AS n FROM ${t}`);
          assert.equal(Number(inside.rows[0].n), 2, 'the transaction sees its own writes');
          assert.equal(await count(client, t), 0, 'nobody else sees uncommitted writes');
          await tx.commit();
        } finally {
          tx.close();
        }
        assert.equal(await count(client, t), 2);
      });

      test('rollback discards all writes', T, async () => {
        const t = freshTable('txr');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
        await client.execute(`INSERT INTO ${t} VALUES (1)`);
        const tx = await client.transaction('write');
        try {
          await tx.execute(`INSERT INTO ${t} VALUES (2)`);
          await tx.execute(`DELETE FROM ${t} WHERE id = 1`);
          await tx.rollback();
        } finally {
          tx.close();
        }
        const rs = await client.execute(`SELECT id FROM ${t}`);
        assert.deepEqual(rs.rows.map((r) => r.id), [1]);
      });

      test('close without commit rolls back and releases the write lock', T, async () => {
        const t = freshTable('txclose');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
        const tx = await client.transaction('write');
        await tx.execute(`INSERT INTO ${t} VALUES (1)`);
        await tx.execute(`INSERT INTO ${t} VALUES (2)`);
        tx.close();
        await insertWhenUnlocked(client, `INSERT INTO ${t} VALUES (?)`, [3]);
        const rs = await client.execute(`SELECT id FROM ${t} ORDER BY id`);
        assert.deepEqual(rs.rows.map((r) => r.id), [3]);
      });

      test('a failing statement inside a transaction does not end it', T, async () => {
        const t = freshTable('txerr');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
        const tx = await client.transaction('write');
        try {
          await tx.execute(`INSERT INTO ${t} VALUES (1)`);
          await rejectsWithCode(tx.execute(`INSERT INTO ${t} VALUES (1)`), /^SQLITE_CONSTRAINT/);
          await tx.execute(`INSERT INTO ${t} VALUES (2)`);
          await tx.commit();
        } finally {
          tx.close();
        }
        assert.equal(await count(client, t), 2);
      });

      test('transaction("read") is read-only', T, async () => {
        const t = freshTable('txro');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
        await client.execute(`INSERT INTO ${t} VALUES (1)`);
        const tx = await client.transaction('read');
        try {
          const rs = await tx.execute(`SELECT count(*) AS n FROM ${t}`);
          assert.equal(Number(rs.rows[0].n), 1);
          await assert.rejects(tx.execute(`INSERT INTO ${t} VALUES (2)`));
          await assert.rejects(tx.execute(`DELETE FROM ${t}`));
          // Even a COMMIT must not let a write through.
          await tx.commit().catch(() => {});
        } finally {
          tx.close();
        }
        const rs = await client.execute(`SELECT id FROM ${t}`);
        assert.deepEqual(rs.rows.map((r) => r.id), [1]);
      });

      test('deferred transaction commits', T, async () => {
        const t = freshTable('txdef');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
        const tx = await client.transaction('deferred');
        try {
          await tx.execute(`SELECT count(*) FROM ${t}`);
          await tx.execute(`INSERT INTO ${t} VALUES (1)`);
          await tx.commit();
        } finally {
          tx.close();
        }
        assert.equal(await count(client, t), 1);
      });

      // SQLite does not call the busy handler for a transaction that already read: its
      // first write failed SQLITE_BUSY at once while any other connection held the write
      // lock, also one that then committed nothing (the writer's housekeeping did, 1 to 2
      // in 100 deferred transactions on an idle node). It now waits, as a write outside a
      // transaction does; a holder that commits changes still fails it (the snapshot is old).
      test('a deferred transaction\'s first write waits for the write lock', T, async () => {
        const t = freshTable('txwait');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
        const other = makeClient({});
        for (const holderWrites of [false, true]) {
          const holder = await other.transaction('write');
          await holder.execute('SELECT 1'); // the client sends BEGIN IMMEDIATE with it: the lock is held
          const tx = await client.transaction('deferred');
          try {
            await tx.execute(`SELECT count(*) FROM ${t}`);
            if (holderWrites) await holder.execute(`INSERT INTO ${t} VALUES (100)`);
            const released = (async () => {
              await sleep(300);
              if (holderWrites) await holder.commit(); else await holder.rollback();
            })();
            const ins = tx.execute(`INSERT INTO ${t} VALUES (1)`);
            if (holderWrites) {
              await assert.rejects(ins, (e) => e.code === 'SQLITE_BUSY', 'a write on a snapshot older than a commit');
              await released;
            } else {
              await ins; // before: SQLITE_BUSY at once
              await released;
              await tx.commit();
            }
          } finally {
            tx.close();
            holder.close();
          }
        }
        other.close();
        const rs = await client.execute(`SELECT id FROM ${t} ORDER BY id`);
        assert.deepEqual(rs.rows.map((r) => Number(r.id)), [1, 100]);
      });
    });

    describe('executeMultiple', () => {
      test('runs every statement', T, async () => {
        const t = freshTable('multi');
        await client.executeMultiple(`
          CREATE TABLE ${t} (id INTEGER PRIMARY KEY, v TEXT);
          INSERT INTO ${t} VALUES (1, 'a');
          INSERT INTO ${t} VALUES (2, 'b;c');
          SELECT * FROM ${t};
          UPDATE ${t} SET v = v || '!' WHERE id = 1;
        `);
        const rs = await client.execute(`SELECT id, v FROM ${t} ORDER BY id`);
        assert.deepEqual(rs.rows.map((r) => [r.id, r.v]), [[1, 'a!'], [2, 'b;c']]);
      });

      test('stops at the first error', T, async () => {
        const t = freshTable('multierr');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
        await rejectsWithCode(client.executeMultiple(
          `INSERT INTO ${t} VALUES (1); INSERT INTO no_such_table_xyz VALUES (1); INSERT INTO ${t} VALUES (2);`),
        'SQLITE_ERROR');
        const rs = await client.execute(`SELECT id FROM ${t}`);
        assert.deepEqual(rs.rows.map((r) => r.id), [1]);
      });
    });

    describe('concurrency', () => {
      test('20 concurrent requests all succeed', T, async () => {
        const t = freshTable('conc');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, v TEXT)`);
        const writes = Array.from({ length: 20 }, (_, i) =>
          client.execute({ sql: `INSERT INTO ${t} VALUES (?, ?)`, args: [i, `w${i}`] }));
        const results = await Promise.all(writes);
        for (const r of results) assert.equal(r.rowsAffected, 1);
        const reads = Array.from({ length: 20 }, (_, i) =>
          client.execute({ sql: `SELECT v FROM ${t} WHERE id = ?`, args: [i] }));
        const rows = await Promise.all(reads);
        rows.forEach((rs, i) => assert.equal(rs.rows[0].v, `w${i}`));
        assert.equal(await count(client, t), 20);
      });

      test('20 concurrent clients with write batches', T, async () => {
        const t = freshTable('conc2');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, who INTEGER)`);
        const clients = Array.from({ length: 20 }, () => makeClient({}));
        try {
          await Promise.all(clients.map((c, i) => c.batch([
            { sql: `INSERT INTO ${t} VALUES (?, ?)`, args: [i * 10, i] },
            { sql: `INSERT INTO ${t} VALUES (?, ?)`, args: [i * 10 + 1, i] },
          ], 'write')));
        } finally {
          for (const c of clients) c.close();
        }
        assert.equal(await count(client, t), 40);
      });

      // Interactive transactions hold the write lock across round trips; the others must wait for it
      // (without blocking the server) rather than fail.
      test('10 concurrent interactive transactions all commit', T, async () => {
        const t = freshTable('conc3');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, who INTEGER)`);
        const clients = Array.from({ length: 10 }, () => makeClient({}));
        try {
          await Promise.all(clients.map(async (c, i) => {
            const tx = await c.transaction('write');
            try {
              await tx.execute({ sql: `INSERT INTO ${t} VALUES (?, ?)`, args: [i * 10, i] });
              await tx.execute({ sql: `INSERT INTO ${t} VALUES (?, ?)`, args: [i * 10 + 1, i] });
              await tx.commit();
            } finally {
              tx.close();
            }
          }));
        } finally {
          for (const c of clients) c.close();
        }
        assert.equal(await count(client, t), 20);
      });
    });

    describe('errors carry sqld codes', () => {
      test('SQLITE_ERROR for a missing table', T, async () => {
        await assert.rejects(client.execute('SELECT * FROM no_such_table_abc'), (e) => {
          assert.equal(e.code, 'SQLITE_ERROR');
          assert.match(e.message, /no such table/);
          return true;
        });
      });

      test('SQLITE_CONSTRAINT for a UNIQUE / NOT NULL violation', T, async () => {
        const t = freshTable('cons');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)`);
        await client.execute(`INSERT INTO ${t} VALUES (1, 'a')`);
        await rejectsWithCode(client.execute(`INSERT INTO ${t} VALUES (2, 'a')`), /^SQLITE_CONSTRAINT/);
        await rejectsWithCode(client.execute(`INSERT INTO ${t} VALUES (3, NULL)`), /^SQLITE_CONSTRAINT/);
        assert.equal(await count(client, t), 1);
      });

      test('SQL_PARSE_ERROR for a syntax error', T, async () => {
        await rejectsWithCode(client.execute('SELEC 1'), 'SQL_PARSE_ERROR');
        await rejectsWithCode(client.execute('SELECT (1'), 'SQL_PARSE_ERROR');
      });

      test('SQL_MANY_STATEMENTS for two statements in execute, and neither runs', T, async () => {
        const t = freshTable('many');
        await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
        await rejectsWithCode(client.execute(`INSERT INTO ${t} VALUES (1); INSERT INTO ${t} VALUES (2)`),
          'SQL_MANY_STATEMENTS');
        assert.equal(await count(client, t), 0);
      });

      test('the client keeps working after errors', T, async () => {
        await assert.rejects(client.execute('SELECT * FROM nope_nope'));
        const rs = await client.execute('SELECT 1 AS one');
        assert.equal(rs.rows[0].one, 1);
      });
    });

    if (scheme === 'ws3') {
      test('every batch above went through a cursor on the hrana3 connection', T, async () => {
        assert.equal(client.protocol, 'ws');
        assert.ok(sent.filter((t) => t === 'open_cursor').length >= 20, `requests sent: ${[...new Set(sent)]}`);
        assert.ok(sent.includes('fetch_cursor') && sent.includes('close_cursor'));
        assert.ok(!sent.includes('batch'), 'no batch request: the client negotiated hrana3');
      });
    }
  });
}
