// SPDX-License-Identifier: MIT
// Replication with an ordinary application schema (issue 8): foreign keys with ON DELETE CASCADE,
// a secondary UNIQUE column, an audit trigger, ALTER TABLE while other regions write. Every case
// here failed on the main of 75e94e3 (REPLACE on apply, triggers firing on apply, positional
// columns, a failing entry resent forever). Concurrency is made by cutting A and B apart (front
// proxies: C still hears both), writing on both sides, then healing.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep, startCluster } from './lib/cluster.mjs';

async function getJson(c, id, p) {
  const res = await fetch(c.url(id) + p, { signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  assert.equal(res.status, 200, `GET ${p} on ${id}: ${text}`);
  return JSON.parse(text.replace(/"hlc":(\d+)/g, '"hlc":"$1"'));
}

describe('repl_schema', { timeout: 120000 }, () => {
  let c;
  const ok = async (id, sql, args = []) => {
    const r = await c.sql(id, sql, args);
    assert.ok(r.ok, `${id}: ${sql}: HTTP ${r.status} ${JSON.stringify(r.error)}`);
    return r;
  };
  const rowsEverywhere = async (sql, args = []) => {
    const out = {};
    for (const id of c.ids) out[id] = JSON.stringify(await c.rows(id, sql, args));
    return out;
  };
  // Wait until `sql` gives the same rows in every region and `pred(rows of a)` holds.
  const settle = async (sql, pred = () => true, timeoutMs = 15000) => {
    let last = null;
    const done = await c.waitFor(async () => {
      last = await rowsEverywhere(sql);
      const vals = Object.values(last);
      return vals.every((v) => v === vals[0]) && pred(JSON.parse(vals[0]));
    }, timeoutMs);
    assert.ok(done, `regions differ or the state is wrong for ${sql}: ${JSON.stringify(last)}`);
    return JSON.parse(last.a);
  };
  const peerOf = (st, region) => st.peers.find((p) => p.region === region);
  const partitionAB = async () => {
    await c.proxies.a.cut();
    await c.proxies.b.cut();
    const down = await c.waitFor(async () => !peerOf(await c.status('a'), 'b').connected &&
      !peerOf(await c.status('b'), 'a').connected, 10000);
    assert.ok(down, 'a and b still connected after the cut');
  };
  const heal = async () => {
    await c.proxies.a.reset();
    await c.proxies.b.reset();
  };
  const quiet = async () => {
    for (const id of c.ids) {
      const q = await c.waitFor(async () => (await c.status(id)).peers.every((p) => p.pending === 0), 15000);
      assert.ok(q, `region ${id} still has pending entries`);
    }
  };

  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'front' });
    await c.createTable('parents', 'CREATE TABLE parents (id INTEGER PRIMARY KEY, name TEXT)');
    await c.createTable('kids', 'CREATE TABLE kids (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL ' +
      'REFERENCES parents(id) ON DELETE CASCADE, v TEXT)');
    await c.createTable('users', 'CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE, name TEXT)');
    await c.createTable('items', 'CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)');
    await c.createTable('audit', "CREATE TABLE audit (id TEXT PRIMARY KEY DEFAULT (lower(hex(randomblob(8)))), " +
      'what TEXT)');
    await ok('a', "CREATE TRIGGER items_audit AFTER INSERT ON items BEGIN INSERT INTO audit (what) VALUES " +
      "('insert ' || NEW.id); END");
    await c.createTable('notes', 'CREATE TABLE notes (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('a parent update leaves its ON DELETE CASCADE children alone; a delete cascades once', async () => {
    await ok('a', "INSERT INTO parents VALUES (1, 'p1')");
    await ok('a', "INSERT INTO kids VALUES (1, 1, 'k1'), (2, 1, 'k2')");
    await settle('SELECT id, pid, v FROM kids ORDER BY id', (r) => r.length === 2);
    await ok('b', "UPDATE parents SET name = 'renamed' WHERE id = 1");
    await settle('SELECT name FROM parents WHERE id = 1', (r) => r.length === 1 && r[0][0] === 'renamed');
    await quiet();
    const kids = await settle('SELECT id, pid, v FROM kids ORDER BY id');
    assert.deepEqual(kids, [[1, 1, 'k1'], [2, 1, 'k2']], 'the update of the parent deleted its children');
    // The origin's cascade is part of its entry: applied once, nothing fails.
    await ok('c', 'DELETE FROM parents WHERE id = 1');
    await settle('SELECT count(*) FROM kids', (r) => r[0][0] === 0);
    for (const id of c.ids) assert.equal((await getJson(c, id, '/v1/apply-errors')).total, 0, `apply errors in ${id}`);
  });

  test('a child inserted while another region deletes its parent: delete wins everywhere, nothing blocks', async () => {
    await ok('a', "INSERT INTO parents VALUES (2, 'p2'), (3, 'p3')");
    await settle('SELECT id FROM parents ORDER BY id', (r) => r.length === 2);
    await partitionAB();
    await ok('a', 'DELETE FROM parents WHERE id = 2');
    await ok('b', "INSERT INTO kids VALUES (10, 2, 'orphan')");
    await heal();
    // One documented rule in every region: the orphan goes (recorded as an fk conflict).
    await settle('SELECT (SELECT count(*) FROM parents WHERE id = 2), (SELECT count(*) FROM kids WHERE id = 10)',
      (r) => r[0][0] === 0 && r[0][1] === 0, 20000);
    // The stream from b was not blocked: a later write of b reaches every region.
    await ok('b', "INSERT INTO kids VALUES (11, 3, 'after')");
    await settle('SELECT v FROM kids WHERE id = 11', (r) => r.length === 1 && r[0][0] === 'after', 20000);
    await quiet();
    for (const id of c.ids) {
      assert.equal((await getJson(c, id, '/v1/apply-errors')).total, 0, `apply errors in ${id}`);
      const fk = (await c.conflicts(id)).conflicts.filter((e) => e.kind === 'fk' && e.table === 'kids');
      // Recorded where the orphan was removed: every region but the one that deleted the parent first
      // saw the child, and a (the deleter) removed it when b's insert arrived.
      if (id !== 'c') assert.ok(fk.length >= 1, `region ${id} lists no fk conflict`);
      for (const e of fk) assert.equal(e.loser.values.v, 'orphan');
    }
    assert.equal(await c.metric('a', 'edgelite_repl_apply_errors'), 0);
  });

  test('the same UNIQUE value inserted in two regions: one deterministic winner, the loser recorded', async () => {
    await partitionAB();
    await ok('a', "INSERT INTO users VALUES (1, 'x@example.com', 'from a')");
    await sleep(5); // distinct clocks: b writes later, so b's row wins by (hlc, origin)
    await ok('b', "INSERT INTO users VALUES (2, 'x@example.com', 'from b')");
    await heal();
    const rows = await settle('SELECT id, email, name FROM users ORDER BY id', (r) => r.length === 1, 20000);
    assert.deepEqual(rows, [[2, 'x@example.com', 'from b']]);
    await quiet();
    for (const id of c.ids) {
      const u = (await c.conflicts(id)).conflicts.filter((e) => e.kind === 'unique' && e.table === 'users');
      if (id !== 'b') assert.ok(u.length >= 1, `region ${id} lists no unique conflict`);
      for (const e of u) {
        assert.equal(e.loser.values.email, 'x@example.com');
        assert.equal(e.loser.values.name, 'from a');
      }
      assert.equal((await getJson(c, id, '/v1/apply-errors')).total, 0, `apply errors in ${id}`);
    }
    // The loser was kept: once the winner gives the value up, it is back in every region.
    await ok('b', "UPDATE users SET email = 'y@example.com' WHERE id = 2");
    await settle('SELECT id, email, name FROM users ORDER BY id', (r) => r.length === 2, 20000);
  });

  test('a user trigger fires once, at the origin; its row arrives with the entry', async () => {
    await ok('a', "INSERT INTO items VALUES (1, 'one')");
    await ok('b', "INSERT INTO items VALUES (2, 'two')");
    await settle('SELECT id FROM items ORDER BY id', (r) => r.length === 2);
    await quiet();
    const audit = await settle('SELECT what, count(*) FROM audit GROUP BY what ORDER BY what');
    assert.deepEqual(audit, [['insert 1', 1], ['insert 2', 1]], 'the trigger fired again on apply');
  });

  test('ALTER TABLE ADD COLUMN, CREATE/DROP INDEX, VIEW and TRIGGER while other regions keep writing', async () => {
    const writers = ['b', 'c'].map(async (id, w) => {
      for (let i = 0; i < 40; i++) {
        await ok(id, 'INSERT INTO notes (id, v) VALUES (?, ?)', [1000 * (w + 1) + i, `${id}${i}`]);
        await sleep(10);
      }
    });
    await sleep(100);
    await ok('a', "ALTER TABLE notes ADD COLUMN extra TEXT DEFAULT 'none'");
    await ok('a', 'CREATE INDEX notes_v ON notes (v)');
    await ok('a', 'CREATE VIEW notes_view AS SELECT id, v FROM notes');
    await ok('a', "CREATE TRIGGER notes_touch AFTER UPDATE ON notes BEGIN SELECT 1; END");
    await Promise.all(writers);
    await ok('b', "UPDATE notes SET extra = 'set by b' WHERE id = 1000");
    const rows = await settle("SELECT id, v, extra FROM notes ORDER BY id", (r) => r.length === 80, 20000);
    assert.deepEqual(rows.find((r) => r[0] === 1000), [1000, 'b0', 'set by b']);
    assert.ok(rows.filter((r) => r[0] !== 1000).every((r) => r[2] === 'none'), JSON.stringify(rows.slice(0, 5)));
    await settle("SELECT name FROM sqlite_schema WHERE name = 'notes_v'", (r) => r.length === 1);
    await settle("SELECT name FROM sqlite_schema WHERE name IN ('notes_view', 'notes_touch') ORDER BY name",
      (r) => r.length === 2);
    await ok('a', 'DROP INDEX notes_v');
    await ok('a', 'DROP VIEW notes_view');
    await ok('a', 'DROP TRIGGER notes_touch');
    await settle("SELECT count(*) FROM sqlite_schema WHERE name IN ('notes_v', 'notes_view', 'notes_touch')",
      (r) => r[0][0] === 0);
    await quiet();
    for (const id of c.ids) assert.equal((await getJson(c, id, '/v1/apply-errors')).total, 0, `apply errors in ${id}`);
  });

  test('idle links do no work: nothing is resent once every region holds everything', async () => {
    await quiet();
    const sent = async () => {
      let total = 0;
      for (const id of c.ids) {
        const text = await c.metrics(id);
        for (const line of text.split('\n')) {
          if (line.startsWith('edgelite_repl_peer_entries_sent_total{')) total += Number(line.split(' ')[1]);
        }
      }
      return total;
    };
    const before = await sent();
    await sleep(1500); // several sync intervals (200 ms) and pings
    assert.equal(await sent(), before, 'entries were sent while the cluster was idle');
  });

  test('apply errors: listed, counted, and a retry with nothing to do changes nothing', async () => {
    for (const id of c.ids) {
      const st = await c.status(id);
      assert.equal(st.apply_errors, 0, `status of ${id}`);
      const res = await fetch(c.url(id) + '/v1/apply-errors/retry', { method: 'POST', signal: AbortSignal.timeout(10000) });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { applied: 0, left: 0 });
      assert.equal(await c.metric(id, 'edgelite_repl_apply_failures_total'), 0);
    }
  });
});
