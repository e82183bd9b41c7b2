// SPDX-License-Identifier: MIT
// Regression: the per-statement time budget must not outlive its statement. A write left
// its deadline on the writer connection, so every later write without a budget of its
// own (a CRDT operation, the application of entries from other regions) failed with
// "interrupted" once the deadline had passed.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('time budget does not leak', { timeout: 60000 }, () => {
  const cleanup = [];
  after(async () => { for (const c of cleanup) await c(); });

  test('entries from another region apply after an expired budget', async () => {
    const c = await startCluster({ regions: 2, proxies: 'none', extraArgs: ['--query-timeout-ms', '200'] });
    cleanup.push(() => c.destroy());
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    assert.ok((await c.sql('b', "INSERT INTO t VALUES (1, 'first')")).ok);
    await sleep(400); // the budget of that write has long expired on b's writer
    // A large entry: its application runs enough SQLite instructions to reach the
    // progress handler that enforces budgets.
    assert.ok((await c.sql('a', "WITH RECURSIVE n(x) AS (SELECT 2 UNION ALL SELECT x + 1 FROM n WHERE x < 2001) "
      + "INSERT INTO t SELECT x, 'bulk' FROM n")).ok);
    const seen = await c.waitFor(async () => (await c.rows('b', 'SELECT count(*) FROM t'))[0][0] === 2001, 10000);
    assert.ok(seen, 'the entry from a was never applied in b');
  });
});
