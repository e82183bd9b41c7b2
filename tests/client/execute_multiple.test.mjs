// SPDX-License-Identifier: MIT
// executeMultiple (a Hrana `sequence`) runs as SQLite runs a script (sqlite3_exec): statement after
// statement, the first error stops it and what ran before stays applied. Every sequence here runs
// twice, through a node with the real @libsql/client (http:// and ws://) and on a local SQLite file
// through @libsql/client's own `file:` client (the oracle), and both must end in the same state with
// the same outcome. The sequences are the ones classification used to misroute: statements that
// cannot be prepared before the sequence runs (DDL followed by use of the new table), then
// transaction control later on. The last part runs them in a 2-region cluster and checks that the
// effects replicate.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { startCluster } from './lib/cluster.mjs';
import { startNode, tmpDir } from './lib/node.mjs';

const T = { timeout: 30000 };

// {T}, {L}, ... are replaced by table names unique to one run of one case.
const CASES = [
  { name: 'DDL, a write to the new table, then BEGIN; COMMIT (the issue\'s example)',
    sql: 'CREATE TABLE {T}(a); INSERT INTO {T} VALUES(1); BEGIN; COMMIT;' },
  { name: 'DDL followed by use of the new table and its index',
    sql: "CREATE TABLE {T}(id INTEGER PRIMARY KEY, v); CREATE INDEX {T}_v ON {T}(v); INSERT INTO {T}(v) VALUES ('a'), ('b'), ('c'); " +
      "UPDATE {T} SET v = v || '!' WHERE id = 2; DELETE FROM {T} WHERE id = 1; SELECT * FROM {T} WHERE v > 'a';" },
  { name: 'transactions inside the sequence: one commits, one rolls back, autocommit after them',
    sql: 'CREATE TABLE {T}(a); BEGIN; INSERT INTO {T} VALUES (1); INSERT INTO {T} VALUES (2); COMMIT; ' +
      'BEGIN IMMEDIATE; INSERT INTO {T} VALUES (3); ROLLBACK; INSERT INTO {T} VALUES (4);' },
  { name: 'BEGIN first, DDL and writes inside, END',
    sql: 'BEGIN; CREATE TABLE {T}(a, b); INSERT INTO {T} VALUES (1, 2); ALTER TABLE {T} ADD COLUMN c; UPDATE {T} SET c = a + b; END;' },
  { name: 'a syntax error midway stops the sequence; what ran before stays',
    sql: 'CREATE TABLE {T}(a); INSERT INTO {T} VALUES (1); SELEC 1; INSERT INTO {T} VALUES (2);', fails: /syntax error/ },
  { name: 'a constraint error inside a transaction stops it; the stream then rolls back',
    sql: 'CREATE TABLE {T}(a UNIQUE); INSERT INTO {T} VALUES (0); BEGIN; INSERT INTO {T} VALUES (1); INSERT INTO {T} VALUES (1); COMMIT;',
    fails: /UNIQUE constraint failed/ },
  { name: 'COMMIT with no transaction after DDL is an error; earlier statements stay',
    sql: 'CREATE TABLE {T}(a); INSERT INTO {T} VALUES (1); COMMIT; INSERT INTO {T} VALUES (2);',
    fails: /no transaction is active/ },
  { name: 'a trigger whose body has semicolons, then a transaction that fires it',
    sql: 'CREATE TABLE {T}(a); CREATE TABLE {L}(x); CREATE TRIGGER {T}_tr AFTER INSERT ON {T} BEGIN ' +
      'INSERT INTO {L} VALUES (new.a); INSERT INTO {L} VALUES (new.a * 10); END; BEGIN; INSERT INTO {T} VALUES (1); INSERT INTO {T} VALUES (2); COMMIT;' },
  { name: 'semicolons and BEGIN inside strings, quoted names and comments',
    sql: "CREATE TABLE \"{T}\"(\"a;b\"); -- BEGIN;\nINSERT INTO {T} VALUES ('x;BEGIN;y'); /* COMMIT; */ BEGIN; INSERT INTO [{T}] VALUES ('z'); END;" },
  { name: 'savepoints after DDL',
    sql: 'CREATE TABLE {T}(a); SAVEPOINT s1; INSERT INTO {T} VALUES (1); SAVEPOINT s2; INSERT INTO {T} VALUES (2); ROLLBACK TO s2; ' +
      'INSERT INTO {T} VALUES (3); RELEASE s1;' },
  { name: 'views and DROP after use, empty statements in between',
    sql: ';; CREATE TABLE {T}(a, b);; ; INSERT INTO {T} VALUES (1, 2); CREATE VIEW {T}_v AS SELECT a + b AS s FROM {T}; ' +
      'CREATE TABLE {L} AS SELECT * FROM {T}_v; DROP VIEW {T}_v;' },
  { name: 'a missing table after DDL fails like in SQLite',
    sql: 'CREATE TABLE {T}(a); INSERT INTO {T} VALUES (1); INSERT INTO {T}_nope VALUES (2); INSERT INTO {T} VALUES (3);',
    fails: /no such table/ },
];

let seq = 0;
function names() {
  seq += 1;
  const p = `em${process.pid}_${seq}`;
  return { T: `${p}_t`, L: `${p}_l` };
}
const fill = (sql, n) => sql.replace(/\{(\w)\}/g, (_, k) => n[k]);

/** Run a sequence; the outcome is 'ok' or the error message without the client's "CODE: " prefix. */
async function outcome(client, sql) {
  try {
    await client.executeMultiple(sql);
    return 'ok';
  } catch (e) {
    return String(e.message).replace(/^[A-Z_]+: /, '');
  }
}

/** Every table and view whose name starts with the case's prefix, with all its rows, in order. */
async function dump(client, prefix) {
  const objs = await client.execute({
    sql: "SELECT type, name FROM sqlite_schema WHERE name LIKE ? AND type IN ('table', 'view', 'index', 'trigger') ORDER BY name",
    args: [`${prefix}%`] });
  const out = {};
  for (const o of objs.rows) {
    out[`${o.type} ${o.name}`] = o.type === 'table'
      ? (await client.execute(`SELECT * FROM "${o.name}" ORDER BY rowid`)).rows.map((r) => Array.from(r))
      : true;
  }
  return out;
}

describe('executeMultiple as SQLite runs it', { timeout: 240000 }, () => {
  let node;
  let oracleDir;
  let oracle;
  before(async () => {
    node = await startNode();
    oracleDir = tmpDir('edgelite-oracle-');
    oracle = createClient({ url: `file:${path.join(oracleDir, 'oracle.db')}` });
  });
  after(async () => {
    if (oracle) oracle.close();
    if (oracleDir) fs.rmSync(oracleDir, { recursive: true, force: true });
    if (node) await node.destroy();
  });

  for (const scheme of ['http', 'ws']) {
    describe(`over ${scheme}://`, () => {
      let client;
      before(() => { client = createClient({ url: scheme === 'ws' ? node.wsUrl : node.url }); });
      after(() => { if (client) client.close(); });

      for (const c of CASES) {
        test(c.name, T, async () => {
          const n = names();
          const sql = fill(c.sql, n);
          const want = await outcome(oracle, sql);
          // A sequence that stops inside a transaction leaves it open on the connection; a client
          // stream is closed after executeMultiple, which rolls it back: do the same on the oracle.
          await oracle.execute('ROLLBACK').catch(() => {});
          if (c.fails) assert.match(want, c.fails, 'the oracle fails as the case expects');
          else assert.equal(want, 'ok', 'the oracle runs the case');
          const got = await outcome(client, sql);
          assert.equal(got, want, `outcome of: ${sql}`);
          const prefix = n.T.replace(/_t$/, '_');
          assert.deepEqual(await dump(client, prefix), await dump(oracle, prefix), `state after: ${sql}`);
          // The connection is usable afterwards and in autocommit.
          const rs = await client.execute('SELECT 1 AS one');
          assert.equal(rs.rows[0].one, 1);
        });
      }
    });
  }
});

describe('executeMultiple in a 2-region cluster replicates its effects', { timeout: 120000 }, () => {
  let c;
  before(async () => { c = await startCluster({ regions: 2 }); });
  after(async () => { if (c) await c.destroy(); });

  const seqFor = (t) => `CREATE TABLE ${t} (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO ${t} VALUES (1, 'one'); ` +
    `BEGIN; INSERT INTO ${t} VALUES (2, 'two'); UPDATE ${t} SET v = 'uno' WHERE id = 1; COMMIT; ` +
    `BEGIN; INSERT INTO ${t} VALUES (3, 'rolled back'); ROLLBACK; INSERT INTO ${t} VALUES (4, 'four');`;
  const want = { count: 3, text: '1:uno,2:two,4:four' };

  test('over http:// on the replica (schema changes go through the primary) and over ws:// on the primary', T, async () => {
    const http = createClient({ url: c.url('b') });
    const ws = createClient({ url: c.url('a').replace(/^http:/, 'ws:') });
    try {
      await http.executeMultiple(seqFor('em_http'));
      await ws.executeMultiple(seqFor('em_ws'));
    } finally {
      http.close();
      ws.close();
    }
    const conv = await c.waitConverged(['em_http', 'em_ws'], 15000);
    assert.ok(conv.ok, `regions differ: ${JSON.stringify(conv.sums)}`);
    for (const t of ['em_http', 'em_ws']) {
      for (const id of c.ids) {
        const s = await c.checksum(id, t);
        assert.deepEqual({ count: s.count, text: s.text }, want, `${t} in region ${id}`);
      }
    }
  });

  test('a sequence that fails midway keeps (and replicates) what ran before the error', T, async () => {
    const ws = createClient({ url: c.url('a').replace(/^http:/, 'ws:') });
    try {
      await assert.rejects(ws.executeMultiple(
        "CREATE TABLE em_fail (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO em_fail VALUES (1, 'kept'); SELEC 1; INSERT INTO em_fail VALUES (2, 'never');"),
      /syntax error/);
    } finally {
      ws.close();
    }
    const conv = await c.waitConverged(['em_fail'], 15000);
    assert.ok(conv.ok, `regions differ: ${JSON.stringify(conv.sums)}`);
    assert.equal((await c.checksum('b', 'em_fail')).text, '1:kept');
  });
});
