// SPDX-License-Identifier: MIT
// The SQL sandbox (issue 9, item 2) through the real @libsql/client over http:// and ws://, with a
// read-write and a read-only token: ATTACH/DETACH (and VACUUM INTO), load_extension(), PRAGMAs that set
// durability, journaling, writable_schema, foreign_keys or query_only, reading or writing _edge_*
// tables, triggers naming them and TEMP objects are refused with SQLITE_AUTH and a message naming what
// was refused, and change nothing. Reporting PRAGMAs, ordinary SQL and transactions (read-only ones use
// query_only internally) keep working.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { makeKeyPair, nowS, signJwt, writeKey } from './lib/jwt.mjs';
import { httpRequest, rawHttp, startNode, tmpDir } from './lib/node.mjs';

const T = { timeout: 60000 };

describe('the SQL sandbox on client connections', { timeout: 240000 }, () => {
  let node;
  let dir;
  let rw;
  let ro;
  before(async () => {
    dir = tmpDir('edgelite-sandbox-');
    const keys = makeKeyPair();
    node = await startNode({ args: ['--auth-jwt-key', writeKey(dir, 'jwt.pem', keys)] });
    rw = signJwt(keys.privateKey, { a: 'rw', exp: nowS() + 3600 });
    ro = signJwt(keys.privateKey, { a: 'ro', exp: nowS() + 3600 });
    const c = createClient({ url: node.url, authToken: rw });
    try {
      await c.execute('CREATE TABLE parent (id INTEGER PRIMARY KEY)');
      await c.execute('CREATE TABLE child (id INTEGER PRIMARY KEY, p INTEGER REFERENCES parent(id))');
      await c.execute('INSERT INTO parent VALUES (1)');
    } finally {
      c.close();
    }
    // The CRDT endpoint creates edgelite's own _edge_crdt tables.
    const r = await rawHttp(node.port, httpRequest('POST', '/v1/crdt/hits', {
      headers: { Authorization: `Bearer ${rw}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'g-counter', op: 'increment', amount: 5 }),
    }));
    assert.equal(r.status, 200, r.text);
  });
  after(async () => {
    if (node) await node.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const refused = () => [
    [`ATTACH DATABASE '${path.join(dir, 'evil.db')}' AS evil`, /ATTACH/],
    ['DETACH DATABASE main', /DETACH/],
    [`VACUUM INTO '${path.join(dir, 'copy.db')}'`, /VACUUM|ATTACH|transaction/],
    ["SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so.0')", /load_extension/],
    ['PRAGMA journal_mode = DELETE', /journal_mode/],
    ['PRAGMA synchronous = OFF', /synchronous/],
    ['PRAGMA writable_schema = ON', /writable_schema/],
    ['PRAGMA query_only = 1', /query_only/],
    ['PRAGMA user_version = 7', /user_version/],
    ['SELECT * FROM _edge_crdt', /_edge_crdt/],
    ['SELECT count(*) FROM _EDGE_CRDT_MERGES', /_edge_crdt_merges/i],
    ["UPDATE _edge_crdt SET name = 'x'", /_edge_crdt/],
    ['DELETE FROM _edge_crdt_merges', /_edge_crdt_merges/],
    ["INSERT INTO _edge_crdt (name) VALUES ('forged')", /_edge_crdt/],
    ['DROP TABLE _edge_crdt', /_edge_crdt/],
    ['CREATE TABLE _edge_mine (a)', /_edge_mine/],
    ['CREATE INDEX sneaky ON _edge_crdt (name)', /_edge_crdt/],
    ['CREATE VIEW peek AS SELECT * FROM _edge_crdt', /view/],
    ['CREATE TRIGGER tr AFTER INSERT ON parent BEGIN DELETE FROM _edge_crdt_merges; END', /trigger/],
    ['CREATE TEMP TABLE scratch (a)', /TEMP/],
    ['ALTER TABLE parent RENAME TO "_edge_parent"', /renamed/],
    ['ALTER TABLE _edge_crdt ADD COLUMN x', /_edge_crdt/],
  ];

  async function state() {
    const c = createClient({ url: node.url, authToken: rw });
    try {
      const jm = (await c.execute('PRAGMA journal_mode')).rows[0][0];
      const fk = Number((await c.execute('PRAGMA foreign_keys')).rows[0][0]);
      const uv = Number((await c.execute('PRAGMA user_version')).rows[0][0]);
      const schema = (await c.execute('SELECT type, name FROM sqlite_schema ORDER BY name')).rows
        .map((r) => `${r[0]}:${r[1]}`).join(',');
      const hits = await rawHttp(node.port, httpRequest('GET', '/v1/crdt/hits', { headers: { Authorization: `Bearer ${rw}` } }));
      return { jm, fk, uv, schema, hits: hits.json?.value };
    } finally {
      c.close();
    }
  }

  for (const scheme of ['http', 'ws']) {
    for (const who of ['rw', 'ro']) {
      test(`${scheme}, ${who} token: each refusal is SQLITE_AUTH, names what it refused and changes nothing`, T, async () => {
        const before = await state();
        assert.equal(before.jm, 'wal');
        assert.equal(before.fk, 1);
        assert.equal(before.hits, 5);
        const c = createClient({ url: scheme === 'ws' ? node.wsUrl : node.url, authToken: who === 'rw' ? rw : ro });
        try {
          for (const [sql, what] of refused()) {
            await assert.rejects(c.execute(sql), (e) => {
              const code = e.code ?? e.cause?.code;
              // VACUUM INTO fails before the authorizer on the writer (inside the group transaction), and
              // a read-only token may be refused for writing first: both change nothing, as asserted below.
              const ok = code === 'SQLITE_AUTH' || (/^VACUUM/.test(sql) && code === 'SQLITE_ERROR') ||
                (who === 'ro' && code === 'AUTH_READ_ONLY');
              assert.ok(ok, `${sql}: code ${code}: ${e.message}`);
              if (code === 'SQLITE_AUTH') assert.match(e.message, what, sql);
              return true;
            }, sql);
          }
          // The same statements inside a transaction (interactive, on a dedicated connection).
          if (who === 'rw') {
            const tx = await c.transaction('write');
            try {
              for (const sql of ['ATTACH DATABASE \'x.db\' AS x', 'PRAGMA query_only = 1', 'SELECT * FROM _edge_crdt',
                'DELETE FROM _edge_crdt_merges']) {
                await assert.rejects(tx.execute(sql), (e) => (e.code ?? e.cause?.code) === 'SQLITE_AUTH', sql);
              }
            } finally {
              await tx.rollback().catch(() => {});
              tx.close();
            }
          }
        } finally {
          c.close();
        }
        assert.deepEqual(await state(), before, 'a refused statement changed something');
        for (const f of ['evil.db', 'copy.db', 'x.db']) assert.ok(!fs.existsSync(path.join(dir, f)), `${f} was created`);
        assert.ok(!fs.existsSync(path.join(node.dataDir, 'x.db')));
      });
    }
  }

  for (const scheme of ['http', 'ws']) {
    test(`${scheme}: PRAGMA foreign_keys = OFF is a no-op (as SQLite inside a transaction) and migrate() works`, T, async () => {
      const c = createClient({ url: scheme === 'ws' ? node.wsUrl : node.url, authToken: rw });
      const rejections = [];
      const onRejection = (e) => rejections.push(e);
      process.on('unhandledRejection', onRejection);
      try {
        await c.execute('PRAGMA foreign_keys = OFF');
        assert.equal(Number((await c.execute('PRAGMA foreign_keys')).rows[0][0]), 1, 'foreign keys were turned off');
        const t = `mig_${scheme}`;
        await c.migrate([`CREATE TABLE ${t}(id INTEGER PRIMARY KEY, v TEXT)`, `INSERT INTO ${t} VALUES (1, 'a')`]);
        assert.deepEqual((await c.execute(`SELECT id, v FROM ${t}`)).rows.map((r) => [Number(r[0]), r[1]]), [[1, 'a']]);
        // Still enforced: a dangling reference is refused after the migration.
        await assert.rejects(c.execute('INSERT INTO child (id, p) VALUES (987654, 987654)'));
        await new Promise((r) => setTimeout(r, 50));
        assert.deepEqual(rejections, [], 'migrate() left unhandled promise rejections');
      } finally {
        process.off('unhandledRejection', onRejection);
        c.close();
      }
    });

    test(`${scheme}: reporting PRAGMAs, ordinary SQL and read-only transactions keep working`, T, async () => {
      const c = createClient({ url: scheme === 'ws' ? node.wsUrl : node.url, authToken: rw });
      try {
        const ti = await c.execute('PRAGMA table_info(child)');
        assert.deepEqual(ti.rows.map((r) => r.name), ['id', 'p']);
        const fkl = await c.execute('PRAGMA foreign_key_list(child)');
        assert.equal(fkl.rows[0].table, 'parent');
        assert.equal((await c.execute("SELECT count(*) AS n FROM pragma_table_info('parent')")).rows[0].n, 1);
        assert.equal((await c.execute('PRAGMA integrity_check')).rows[0][0], 'ok');
        // foreign_keys stays on: a dangling reference is refused.
        await assert.rejects(c.execute('INSERT INTO child VALUES (1, 99)'));
        await c.execute(`INSERT INTO child VALUES (${scheme === 'ws' ? 2 : 3}, 1)`);
        const rtx = await c.transaction('read');
        try {
          assert.ok(Number((await rtx.execute('SELECT count(*) FROM child')).rows[0][0]) >= 1);
          await assert.rejects(rtx.execute('INSERT INTO child VALUES (10, 1)'));
        } finally {
          rtx.close();
        }
        // A name that only contains "_edge_" is no edgelite name: triggers and views may use it.
        const tn = `flags_${scheme}`;
        await c.execute(`CREATE TABLE ${tn} (id INTEGER PRIMARY KEY, is_edge_case INTEGER)`);
        await c.execute(`CREATE TRIGGER ${tn}_tr AFTER INSERT ON ${tn} BEGIN UPDATE ${tn} SET is_edge_case = 1 WHERE id = new.id; END`);
        await c.execute(`CREATE VIEW ${tn}_v AS SELECT is_edge_case FROM ${tn}`);
        await c.execute(`INSERT INTO ${tn} (id) VALUES (1)`);
        assert.equal(Number((await c.execute(`SELECT is_edge_case FROM ${tn}_v`)).rows[0][0]), 1);
        const wtx = await c.transaction('write');
        await wtx.execute(`INSERT INTO parent VALUES (${scheme === 'ws' ? 20 : 30})`);
        await wtx.commit();
        // After the read-only transaction the pooled connections write again.
        await c.execute(`INSERT INTO parent VALUES (${scheme === 'ws' ? 21 : 31})`);
        const n = await c.execute('SELECT count(*) FROM parent');
        assert.ok(Number(n.rows[0][0]) >= 3);
      } finally {
        c.close();
      }
    });
  }
});
