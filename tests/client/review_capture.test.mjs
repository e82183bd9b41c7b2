// SPDX-License-Identifier: MIT
// Review findings on change capture of interactive transactions (src/api/hrana.c repl_pre/repl_post):
//  1. ROLLBACK TO a savepoint does not rewind the capture: rows the transaction rolled back are
//     still logged and appear in the other region (divergence).
//  2. A transaction opened with SAVEPOINT and ended with RELEASE commits without a log entry: the
//     write stays local forever.
//  3. INSERT OR FAIL kept the rows it wrote before the failing one (SQLite's FAIL does not undo
//     them) while the capture dropped them: the regions diverged. In a replicating node every write
//     statement now runs in its own savepoint, so a failing statement is undone as a whole (OR FAIL
//     behaves like ABORT) and the log and the database always agree.
// Run: cd tests/client && EDGE_BIN=../../build-review/edgelite node --test review_capture.test.mjs

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

// One pipeline of several execute requests (runs on the transaction route as one unit).
async function pipeline(base, sqls) {
  const requests = sqls.map((sql) => ({ type: 'execute', stmt: { sql } }));
  requests.push({ type: 'close' });
  const res = await fetch(base + '/v2/pipeline', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ requests }),
    signal: AbortSignal.timeout(15000),
  });
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  for (const [i, r] of json.results.entries()) {
    assert.equal(r.type, 'ok', `step ${i} (${sqls[i] ?? 'close'}): ${JSON.stringify(r.error)}`);
  }
  return json;
}

describe('review: capture of savepoints', { timeout: 60000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2, proxies: 'none' });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('ROLLBACK TO drops the rolled-back rows from the log entry too', async () => {
    await pipeline(c.url('a'), [
      'BEGIN',
      "INSERT INTO t VALUES (1, 'kept')",
      'SAVEPOINT s1',
      "INSERT INTO t VALUES (2, 'rolled back')",
      'ROLLBACK TO s1',
      'RELEASE s1',
      'COMMIT',
    ]);
    assert.deepEqual(await c.rows('a', 'SELECT id FROM t WHERE id IN (1, 2) ORDER BY id'), [[1]]);
    const seen = await c.waitFor(async () => (await c.rows('b', 'SELECT count(*) FROM t WHERE id = 1'))[0][0] === 1,
      10000);
    assert.ok(seen, 'row 1 never reached b');
    // Row 2 never existed in a; b must not have it either.
    assert.deepEqual(await c.rows('b', 'SELECT id FROM t WHERE id IN (1, 2) ORDER BY id'), [[1]]);
  });

  test('a transaction opened by SAVEPOINT and committed by RELEASE is replicated', async () => {
    await pipeline(c.url('a'), ['SAVEPOINT outer_sp', "INSERT INTO t VALUES (10, 'via savepoint')", 'RELEASE outer_sp']);
    assert.deepEqual(await c.rows('a', 'SELECT v FROM t WHERE id = 10'), [['via savepoint']]);
    // A later ordinary write, so a lost entry cannot hide behind "not yet delivered".
    assert.ok((await c.sql('a', "INSERT INTO t VALUES (11, 'marker')")).ok);
    const marker = await c.waitFor(async () => (await c.rows('b', 'SELECT count(*) FROM t WHERE id = 11'))[0][0] === 1,
      10000);
    assert.ok(marker, 'the marker row never reached b');
    assert.deepEqual(await c.rows('b', 'SELECT v FROM t WHERE id = 10'), [['via savepoint']],
      'the SAVEPOINT/RELEASE transaction was committed in a but never replicated to b');
  });

  test('a failing INSERT OR FAIL leaves the same rows in every region', async () => {
    assert.ok((await c.sql('a', "INSERT INTO t VALUES (20, 'first')")).ok);
    const r = await c.sql('a', "INSERT OR FAIL INTO t VALUES (21, 'kept by FAIL'), (20, 'dup')");
    assert.equal(r.ok, false, 'the duplicate key must fail the statement');
    assert.deepEqual(await c.rows('a', 'SELECT v FROM t WHERE id = 21'), [], 'a failing statement is undone whole');
    assert.ok((await c.sql('a', "INSERT INTO t VALUES (22, 'marker')")).ok);
    const marker = await c.waitFor(async () => (await c.rows('b', 'SELECT count(*) FROM t WHERE id = 22'))[0][0] === 1,
      10000);
    assert.ok(marker, 'the marker row never reached b');
    assert.deepEqual(await c.rows('b', 'SELECT v FROM t WHERE id = 21'), [],
      'row 21 must be absent in b as it is in a');
    assert.deepEqual(await c.rows('b', 'SELECT v FROM t WHERE id = 20'), [['first']]);
  });
});
