// SPDX-License-Identifier: MIT
// The WAL's hard bound holds while the checkpoint thread is mid-run (store/ckpt.h): a
// commit past it waits for the thread's run to end and checkpoints inline, instead of a
// PASSIVE checkpoint that SQLITE_BUSY ends at once. EDGE_TEST_CKPT_PAGES (test-only) lowers
// the threshold to 64 pages, so the bound is 256 pages and a few MiB reach it many times.
// The -wal file never shrinks (SQLite truncates it only under a journal_size_limit, which
// the node does not set), so its size is the largest the WAL ever was.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { get, startNode } from './lib/node.mjs';

const PAGES = 64;
const HARD = PAGES * 4;

async function metrics(node) {
  const r = await get(node, '/metrics');
  assert.equal(r.status, 200);
  return r.text;
}
function metric(text, name) {
  const m = new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(text);
  assert.ok(m, `no ${name} in /metrics`);
  return Number(m[1]);
}

describe('WAL hard bound with the checkpoint thread mid-run', { timeout: 180000 }, () => {
  let node;
  const clients = [];
  let maxWal = 0;
  before(async () => {
    node = await startNode({ env: { EDGE_TEST_CKPT_PAGES: String(PAGES) } });
    for (let i = 0; i < 4; i++) clients.push(createClient({ url: node.url }));
  });
  after(async () => {
    for (const c of clients) c.close();
    if (node) await node.destroy();
  });

  test('every commit past the bound checkpoints inline and the WAL stays within bound plus a commit', async () => {
    await clients[0].execute('CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)');
    const wal = path.join(node.dataDir, 'edgelite.db-wal');
    // 4 clients x 40 commits of 3 x 100 kB (about 75 pages each): the thread runs often,
    // and the writer's group commits take the WAL past 256 pages again and again.
    await Promise.all(clients.map(async (c, ci) => {
      for (let i = 0; i < 40; i++) {
        await c.execute({
          sql: 'WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 3) '
            + 'INSERT INTO blobs (id, b) SELECT ? + k, randomblob(100000) FROM n',
          args: [(ci * 100 + i) * 10],
        });
        try { maxWal = Math.max(maxWal, fs.statSync(wal).size); } catch { /* not there yet */ }
      }
    }));
    const text = await metrics(node);
    const hits = metric(text, 'edgelite_wal_hard_limit_total');
    const ok = metric(text, 'edgelite_wal_checkpoints_total{by="writer",result="ok"}');
    const busy = metric(text, 'edgelite_wal_checkpoints_total{by="writer",result="busy"}');
    const err = metric(text, 'edgelite_wal_checkpoints_total{by="writer",result="error"}');
    assert.ok(hits >= 1, 'the WAL never reached the hard bound');
    assert.equal(ok + busy + err, hits, 'one inline checkpoint per commit past the bound');
    // No reader holds a snapshot here: every inline checkpoint copies pages back.
    assert.equal(busy, 0, 'an inline checkpoint at the bound was SQLITE_BUSY');
    assert.equal(err, 0);
    assert.equal(metric(text, 'edgelite_wal_pages_left'), 0);
    // One group commit holds at most the 4 clients' inserts (about 300 pages): the WAL
    // restarts after each inline checkpoint, so it never passes bound + one commit.
    const pageBytes = 4096 + 24;
    assert.ok(maxWal <= (HARD + 400) * pageBytes + 32, `the WAL reached ${maxWal} bytes`);
    const r = await clients[0].execute('SELECT count(*) AS n FROM blobs');
    assert.equal(Number(r.rows[0].n), 4 * 40 * 3);
  });
});
