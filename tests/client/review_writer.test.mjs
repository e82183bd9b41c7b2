// SPDX-License-Identifier: MIT
// Review finding on src/store/writer.c run_group(): a statement whose conflict clause (or trigger
// RAISE(ROLLBACK)) rolls back the whole transaction takes every other client's write of the same
// group commit down with it: they get HTTP 500 "SQLITE_IOERR" although nothing was wrong with them.
// Run: cd tests/client && EDGE_BIN=../../build-review/edgelite node --test review_writer.test.mjs

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { pipeline, startNode } from './lib/node.mjs';

const one = (sql) => JSON.stringify({ requests: [{ type: 'execute', stmt: { sql } }, { type: 'close' }] });

describe('review: writer group commit', { timeout: 60000 }, () => {
  let node;
  before(async () => {
    node = await startNode({ args: ['--threads', '2'] });
    assert.equal((await pipeline(`${node.url}/v2/pipeline`, one('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)'))).status, 200);
    assert.equal((await pipeline(`${node.url}/v2/pipeline`, one("INSERT INTO t VALUES (0, 'x')"))).status, 200);
  });
  after(async () => { if (node) await node.destroy(); });

  test("one client's INSERT OR ROLLBACK does not fail other clients' writes", async () => {
    let failed = 0;
    let total = 0;
    for (let round = 0; round < 10; round++) {
      const ps = [];
      for (let i = 0; i < 30; i++) {
        ps.push(pipeline(`${node.url}/v2/pipeline`, one(`INSERT INTO t VALUES (${round * 100 + i + 1}, 'ok')`)));
      }
      ps.push(pipeline(`${node.url}/v2/pipeline`, one("INSERT OR ROLLBACK INTO t VALUES (0, 'dup')")));
      const rs = await Promise.all(ps);
      for (const r of rs.slice(0, 30)) {
        total++;
        if (r.status !== 200 || r.json?.results?.[0]?.type !== 'ok') failed++;
      }
    }
    assert.equal(failed, 0, `${failed}/${total} unrelated writes failed`);
  });
});
