// SPDX-License-Identifier: MIT
// Process lifecycle: graceful stop on SIGTERM/SIGINT, restart on the same data directory, and no
// acknowledged write lost to SIGKILL.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { healthy, startNode } from './lib/node.mjs';

const T = { timeout: 60000 };

describe('lifecycle', { timeout: 200000 }, () => {
  const nodes = [];
  after(async () => {
    for (const n of nodes) await n.destroy();
  });

  async function fresh(opts) {
    const n = await startNode(opts);
    nodes.push(n);
    return n;
  }

  for (const sig of ['SIGTERM', 'SIGINT']) {
    test(`${sig} stops the node gracefully with exit code 0`, T, async () => {
      const node = await fresh();
      assert.ok(await healthy(node));
      const c = createClient({ url: node.url });
      try {
        await c.execute('CREATE TABLE s (a)');
      } finally {
        c.close();
      }
      const r = await node.kill(sig, 10000);
      assert.equal(r.timedOut, false, `the node did not exit within 10 s of ${sig}`);
      assert.equal(r.signal, null, `killed by a signal instead of exiting: ${r.signal}`);
      assert.equal(r.code, 0, `exit code ${r.code}; stderr:\n${node.stderr().slice(-2000)}`);
      assert.ok(fs.existsSync(path.join(node.dataDir, 'edgelite.db')), 'the database lives in DIR/edgelite.db');
    });
  }

  test('SIGTERM with an open WebSocket and an open transaction still exits 0', T, async () => {
    const node = await fresh();
    const c = createClient({ url: node.wsUrl });
    await c.execute('CREATE TABLE w (a)');
    const tx = await c.transaction('write');
    await tx.execute('INSERT INTO w VALUES (1)');
    const r = await node.kill('SIGTERM', 10000);
    c.close();
    assert.equal(r.timedOut, false);
    assert.equal(r.code, 0, node.stderr().slice(-2000));
    await node.restart();
    const c2 = createClient({ url: node.url });
    try {
      const rs = await c2.execute('SELECT count(*) AS n FROM w');
      assert.equal(Number(rs.rows[0].n), 0, 'an uncommitted transaction does not survive');
    } finally {
      c2.close();
    }
  });

  test('a restart on the same data directory keeps all data', T, async () => {
    const node = await fresh();
    let c = createClient({ url: node.url });
    try {
      await c.execute('CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT, b BLOB)');
      await c.batch(Array.from({ length: 100 }, (_, i) => ({ sql: 'INSERT INTO k VALUES (?, ?, ?)', args: [i, `v${i}`, new Uint8Array([i, 255 - i])] })), 'write');
      const tx = await c.transaction('write');
      await tx.execute("UPDATE k SET v = 'tx' WHERE id = 7");
      await tx.commit();
      tx.close();
    } finally {
      c.close();
    }
    const firstPort = node.port;
    for (let round = 0; round < 2; round++) {
      const r = await node.stop();
      assert.equal(r.code, 0);
      await node.restart();
      c = createClient({ url: node.url });
      try {
        const rs = await c.execute('SELECT count(*) AS n, sum(id) AS s FROM k WHERE id < 1000');
        assert.equal(Number(rs.rows[0].n), 100);
        assert.equal(Number(rs.rows[0].s), 4950);
        const one = await c.execute('SELECT v, b FROM k WHERE id = 7');
        assert.equal(one.rows[0].v, 'tx');
        assert.deepEqual([...new Uint8Array(one.rows[0].b)], [7, 248]);
        await c.execute({ sql: 'INSERT INTO k (id, v) VALUES (?, ?)', args: [1000 + round, 'after restart'] });
      } finally {
        c.close();
      }
    }
    assert.ok(node.port > 0 && firstPort > 0);
  });

  test('SIGKILL after acknowledged writes: every acknowledged row survives', T, async () => {
    const node = await fresh();
    const acked = new Set();
    const c = createClient({ url: node.url });
    const w = createClient({ url: node.wsUrl });
    try {
      await c.execute('CREATE TABLE d (id INTEGER PRIMARY KEY, v TEXT)');
      // Sequential autocommit writes over both transports, then concurrent ones, then batches and a transaction.
      for (let i = 0; i < 50; i++) {
        await (i % 2 ? w : c).execute({ sql: 'INSERT INTO d VALUES (?, ?)', args: [i, `s${i}`] });
        acked.add(i);
      }
      await Promise.all(Array.from({ length: 50 }, (_, k) => 50 + k).map(async (i) => {
        await (i % 2 ? w : c).execute({ sql: 'INSERT INTO d VALUES (?, ?)', args: [i, `c${i}`] });
        acked.add(i);
      }));
      await c.batch(Array.from({ length: 50 }, (_, k) => ({ sql: 'INSERT INTO d VALUES (?, ?)', args: [100 + k, 'b'] })), 'write');
      for (let k = 0; k < 50; k++) acked.add(100 + k);
      const tx = await w.transaction('write');
      for (let k = 0; k < 10; k++) await tx.execute({ sql: 'INSERT INTO d VALUES (?, ?)', args: [150 + k, 't'] });
      await tx.commit();
      tx.close();
      for (let k = 0; k < 10; k++) acked.add(150 + k);
      await c.execute({ sql: 'UPDATE d SET v = ? WHERE id = 0', args: ['updated'] });
    } finally {
      c.close();
      w.close();
    }
    // Unacknowledged writes may or may not land; fire some without awaiting right before the kill.
    const bg = createClient({ url: node.url });
    const inflight = Array.from({ length: 20 }, (_, k) => bg.execute({ sql: 'INSERT INTO d VALUES (?, ?)', args: [500 + k, 'x'] }).catch(() => null));
    const r = await node.kill('SIGKILL');
    assert.equal(r.signal, 'SIGKILL');
    await Promise.all(inflight);
    bg.close();

    await node.restart();
    const c2 = createClient({ url: node.url });
    try {
      const rs = await c2.execute('SELECT id FROM d WHERE id < 500 ORDER BY id');
      const have = new Set(rs.rows.map((row) => Number(row.id)));
      const missing = [...acked].filter((i) => !have.has(i));
      assert.deepEqual(missing, [], 'acknowledged rows lost after SIGKILL');
      assert.equal(have.size, acked.size);
      const u = await c2.execute('SELECT v FROM d WHERE id = 0');
      assert.equal(u.rows[0].v, 'updated');
      const ic = await c2.execute('PRAGMA integrity_check');
      assert.equal(ic.rows[0][0], 'ok');
      await c2.execute("INSERT INTO d VALUES (10000, 'writable after restart')");
    } finally {
      c2.close();
    }
  });
});
