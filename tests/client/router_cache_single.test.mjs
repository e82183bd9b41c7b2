// SPDX-License-Identifier: MIT
// The hot-read cache on a single node (no replication, no config file; issue 12, item 3): reads are
// admitted and answered from the cache as on a cluster node, and every commit — a plain write, an
// interactive transaction's COMMIT over HTTP and over WebSocket — puts the cache's tables in flight
// before it commits, so a cached answer is never older than an uncached read, also under
// concurrent writes.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startNode } from './lib/node.mjs';

describe('router_cache_single', { timeout: 180000 }, () => {
  let node;
  let cl;
  let seq = 0;
  async function sql(text, args = []) {
    const res = await fetch(node.url + '/v2/pipeline', { method: 'POST', signal: AbortSignal.timeout(15000),
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ baton: null, requests: [{ type: 'execute', stmt: { sql: text,
        args: args.map((v) => ({ type: 'integer', value: String(v) })) } }, { type: 'close' }] }) });
    const j = await res.json();
    assert.equal(j.results[0].type, 'ok', JSON.stringify(j));
    return j.results[0].response.result.rows.map((r) => r.map((v) => (v.type === 'integer' ? Number(v.value) : v.value)));
  }
  async function hits() {
    const text = await (await fetch(node.url + '/metrics')).text();
    const m = /^edgelite_router_cache_hits_total (\d+)/m.exec(text);
    assert.ok(m, 'no cache metrics on a single node');
    return Number(m[1]);
  }
  const q = 'SELECT v FROM t WHERE id = 1';
  const fresh = async () => (await sql(`SELECT v FROM t WHERE id = 1 AND ${++seq} = ${seq}`))[0][0];

  before(async () => {
    node = await startNode();
    const { createClient } = await import('@libsql/client');
    cl = createClient({ url: node.url });
    await sql('CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)');
    await sql('INSERT INTO t (id, v) VALUES (1, 0)');
  });
  after(async () => {
    if (cl) cl.close();
    if (node) await node.destroy();
  });

  test('admitted after two uses, answered from the cache, invalidated by a write', async () => {
    const h0 = await hits();
    assert.deepEqual(await sql(q), [[0]]);
    assert.deepEqual(await sql(q), [[0]]);
    assert.deepEqual(await sql(q), [[0]]);
    assert.equal(await hits(), h0 + 1);
    await sql('UPDATE t SET v = 1 WHERE id = 1');
    assert.deepEqual(await sql(q), [[1]]);
    assert.equal(await hits(), h0 + 1);
  });

  test('a transaction committed over HTTP and over WebSocket invalidates', async () => {
    for (const [i, url] of [[2, node.url], [3, node.wsUrl]]) {
      await sql(q);
      await sql(q);
      const h0 = await hits();
      await sql(q);
      assert.equal(await hits(), h0 + 1, 'not cached before the transaction');
      const { createClient } = await import('@libsql/client');
      const c2 = createClient({ url });
      try {
        const tx = await c2.transaction('write');
        await tx.execute({ sql: 'UPDATE t SET v = ? WHERE id = 1', args: [i] });
        assert.deepEqual(await sql(q), [[i - 1]], 'uncommitted work is not visible');
        await tx.commit();
      } finally {
        c2.close();
      }
      assert.deepEqual(await sql(q), [[i]], `the cache answered after the COMMIT over ${url}`);
    }
  });

  test('never older than an uncached read, under concurrent writes', async () => {
    let written = 3;
    let stop = false;
    const writer = (async () => {
      for (let i = 4; i <= 300 && !stop; i++) {
        await sql('UPDATE t SET v = ? WHERE id = 1', [i]);
        written = i;
      }
    })();
    let checks = 0;
    const h0 = await hits();
    try {
      for (let i = 0; i < 600 && written < 300; i++) {
        const f = await fresh();
        const cached = (await sql(q))[0][0];
        assert.ok(cached >= f, `the cache answered ${cached} after an uncached read saw ${f}`);
        checks++;
      }
    } finally {
      stop = true;
      await writer;
    }
    console.log(`# ${checks} checks, ${written} writes, ${(await hits()) - h0} hits`);
    assert.deepEqual(await sql(q), [[written]]);
  });
});
