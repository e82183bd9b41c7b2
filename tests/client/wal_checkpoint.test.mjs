// SPDX-License-Identifier: MIT
// WAL checkpoints run on the checkpoint thread, not inside a write's COMMIT on the writer
// thread (store/ckpt.h): past the threshold (8192 pages) the thread copies the WAL back,
// the next write restarts it, and every row is there.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { get, sleep, startNode } from './lib/node.mjs';

async function metric(node, re) {
  const r = await get(node, '/metrics');
  assert.equal(r.status, 200);
  const m = re.exec(r.text);
  assert.ok(m, `no ${re} in /metrics`);
  return Number(m[1]);
}
const ckpts = (node, by, result) => metric(node, new RegExp(`^edgelite_wal_checkpoints_total\\{by="${by}",result="${result}"\\} (\\d+)$`, 'm'));
const byThread = (node) => ckpts(node, 'thread', 'ok');
const writerAll = async (node) => (await ckpts(node, 'writer', 'ok')) + (await ckpts(node, 'writer', 'busy'))
  + (await ckpts(node, 'writer', 'error'));
const walPages = (node) => metric(node, /^edgelite_wal_pages (\d+)$/m);

describe('WAL checkpoints off the writer thread', { timeout: 120000 }, () => {
  let node;
  let client;
  before(async () => {
    node = await startNode();
    client = createClient({ url: node.url });
  });
  after(async () => {
    if (client) client.close();
    if (node) await node.destroy();
  });

  test('past 8192 WAL pages the checkpoint thread copies the WAL back; the next write restarts it', async () => {
    await client.execute('CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)');
    assert.equal(await byThread(node), 0);
    // 12 writes of 4 MiB: about 12,300 pages of WAL, past the threshold once.
    for (let i = 0; i < 12; i++) {
      await client.execute({
        sql: 'WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 40) '
          + 'INSERT INTO blobs (id, b) SELECT ? * 100 + k, randomblob(100000) FROM n',
        args: [i],
      });
    }
    let thread = 0;
    for (let i = 0; i < 200 && thread === 0; i++) {
      thread = await byThread(node);
      if (thread === 0) await sleep(50);
    }
    assert.ok(thread >= 1, 'the checkpoint thread copied nothing back');
    assert.equal(await writerAll(node), 0, 'the writer checkpointed inline below the hard bound');
    assert.equal(await ckpts(node, 'thread', 'error'), 0);
    // Once the thread has copied everything back, a write starts the WAL again from its
    // beginning (a few pages) instead of appending past 8192 pages.
    let pages = Infinity;
    for (let i = 0; i < 100 && pages >= 8192; i++) {
      await client.execute({ sql: 'INSERT INTO blobs (id, b) VALUES (?, x\'00\')', args: [100000 + i] });
      pages = await walPages(node);
      if (pages >= 8192) await sleep(50);
    }
    assert.ok(pages < 8192, `the WAL was not restarted (${pages} pages)`);
    const r = await client.execute('SELECT count(*) AS n, sum(length(b)) AS bytes FROM blobs WHERE id < 100000');
    assert.equal(Number(r.rows[0].n), 480);
    assert.equal(Number(r.rows[0].bytes), 480 * 100000);
  });
});
