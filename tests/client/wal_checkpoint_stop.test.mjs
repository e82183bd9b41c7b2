// SPDX-License-Identifier: MIT
// A clean stop folds the WAL into the database even while the checkpoint thread is
// mid-run (store/ckpt.h, edge_ckpt_quiesce): SIGTERM under write load, then the writer's
// fold was not SQLITE_BUSY and the -wal file is gone or empty.
// EDGE_TEST_CKPT_PAGES (test-only) lowers the threshold to 16 pages so the thread runs
// at nearly every commit of the load.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { sleep, startNode } from './lib/node.mjs';

describe('clean stop folds the WAL with the checkpoint thread running', { timeout: 180000 }, () => {
  const nodes = [];
  after(async () => {
    for (const n of nodes) await n.destroy();
  });

  for (let round = 0; round < 3; round++) {
    test(`SIGTERM under write load leaves no WAL behind (round ${round})`, async () => {
      const node = await startNode({ env: { EDGE_TEST_CKPT_PAGES: '16' } });
      nodes.push(node);
      const clients = [0, 1, 2, 3].map(() => createClient({ url: node.url }));
      await clients[0].execute('CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)');
      let acked = 0;
      let stop = false;
      const load = clients.map(async (c, ci) => {
        for (let i = 0; !stop; i++) {
          try {
            await c.execute({ sql: 'INSERT INTO blobs (id, b) VALUES (?, randomblob(60000))', args: [ci * 1000000 + i] });
            acked++;
          } catch {
            return; // the node is stopping
          }
        }
      });
      await sleep(1500);
      const r = await node.stop();
      stop = true;
      await Promise.all(load);
      for (const c of clients) c.close();
      assert.equal(r.timedOut, false);
      assert.equal(r.code, 0, 'not a clean exit');
      assert.ok(acked > 0);
      const wal = path.join(node.dataDir, 'edgelite.db-wal');
      const size = fs.existsSync(wal) ? fs.statSync(wal).size : 0;
      assert.equal(size, 0, `the clean stop left ${size} bytes of WAL`);
      // The WAL is gone either way (the checkpoint connection, closed last, checkpoints as
      // it closes); the writer's own fold must not have been SQLITE_BUSY.
      assert.doesNotMatch(node.stderr(), /WAL not folded/);
    });
  }
});
