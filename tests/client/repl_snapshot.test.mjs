// SPDX-License-Identifier: MIT
// Recovery: a region whose data directory is empty joins through a snapshot of a peer
// (SQLite backup API over GET /v1/snapshot) and then tails the logs; the snapshot
// endpoint refuses anyone without another region's challenge-response (repl_cluster_auth).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { startCluster } from './lib/cluster.mjs';

describe('new region seeded from a snapshot', { timeout: 90000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'none', extraArgs: ['--log-level', 'info'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('an empty region copies a peer, then receives new writes', async () => {
    await c.stop('c');
    fs.rmSync(c.regions.c.dataDir, { recursive: true, force: true });
    for (let i = 1; i <= 200; i++) {
      const region = i % 2 ? 'a' : 'b';
      assert.ok((await c.sql(region, 'INSERT INTO t VALUES (?, ?)', [i, `row ${i}`])).ok);
    }
    // The snapshot is of a or b: both must hold all 200 first (under load the last write of one can still be
    // on its way to the other, and then the copy would rightly lack it).
    assert.ok((await c.waitConverged(['t'], 15000, ['a', 'b'])).ok, 'a and b did not converge');
    await c.restart('c');
    assert.match(c.stderr('c'), /seeded from a snapshot of [ab]/);
    assert.deepEqual(await c.rows('c', 'SELECT count(*) FROM t'), [[200]]);
    // It tails the logs afterwards, and its own writes reach the others.
    assert.ok((await c.sql('a', "INSERT INTO t VALUES (1000, 'after')")).ok);
    assert.ok((await c.sql('c', "INSERT INTO t VALUES (1001, 'from c')")).ok);
    assert.ok((await c.waitConverged(['t'], 15000)).ok, 'the regions did not converge');
    assert.deepEqual(await c.rows('b', 'SELECT count(*) FROM t'), [[202]]);
  });

  test('the snapshot endpoint needs another region\'s challenge-response, not the secret', async () => {
    const no = await fetch(`${c.url('a')}/v1/snapshot`);
    assert.equal(no.status, 401);
    // the secret itself opens nothing any more: sending it would have exposed it (repl_cluster_auth tests the rest)
    const secret = await fetch(`${c.url('a')}/v1/snapshot`, { headers: { 'x-edge-cluster-secret': c.secret } });
    assert.equal(secret.status, 401);
    assert.equal((await secret.json()).code, 'AUTH_CLUSTER');
  });
});

describe('a new region is seeded from the most advanced peer', { timeout: 90000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'pair', extraArgs: ['--log-level', 'info'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('the first region in the configuration is cut off from the writes: the copy comes from the next one', async () => {
    for (let i = 1; i <= 50; i++) assert.ok((await c.sql('b', 'INSERT INTO t VALUES (?, ?)', [i, 'before'])).ok);
    assert.ok((await c.waitConverged(['t'], 15000)).ok);
    await c.stop('c');
    fs.rmSync(c.regions.c.dataDir, { recursive: true, force: true });
    // a answers (its status, its snapshot) but gets none of b's later writes: it is behind
    await c.proxies['a>b'].cut();
    await c.proxies['b>a'].cut();
    try {
      assert.ok(await c.waitFor(async () => !(await c.status('a')).peers.some((p) => p.region === 'b' && p.connected) &&
        !(await c.status('b')).peers.some((p) => p.region === 'a' && p.connected), 15000), 'a and b still linked');
      for (let i = 51; i <= 60; i++) assert.ok((await c.sql('b', 'INSERT INTO t VALUES (?, ?)', [i, 'after'])).ok);
      assert.deepEqual(await c.rows('a', 'SELECT count(*) FROM t'), [[50]]);
      await c.restart('c');
      // the old code asked the regions in configuration order: a's copy, 10 rows short
      assert.match(c.stderr('c'), /seeded from a snapshot of b/);
    } finally {
      await c.proxies['a>b'].reset();
      await c.proxies['b>a'].reset();
    }
    assert.ok((await c.waitConverged(['t'], 20000)).ok, 'the regions did not converge once a and b were linked again');
    assert.deepEqual(await c.rows('c', 'SELECT count(*) FROM t'), [[60]]);
  });
});

describe('a region behind the compacted logs reseeds', { timeout: 90000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'none',
      extraArgs: ['--log-level', 'info', '--log-keep', '0', '--compact-interval-ms', '300'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('restored from an old copy, it is set aside and seeded from a peer', async () => {
    for (let i = 1; i <= 20; i++) assert.ok((await c.sql('a', 'INSERT INTO t VALUES (?, ?)', [i, 'early'])).ok);
    assert.ok((await c.waitConverged(['t'], 15000)).ok);
    await c.stop('c');
    const backup = `${c.regions.c.dataDir}.backup`;
    fs.cpSync(c.regions.c.dataDir, backup, { recursive: true });
    await c.restart('c');
    for (let i = 21; i <= 40; i++) {
      assert.ok((await c.sql(i % 2 ? 'a' : 'b', 'INSERT INTO t VALUES (?, ?)', [i, 'late'])).ok);
    }
    assert.ok((await c.waitConverged(['t'], 15000)).ok);
    // Every region acknowledged everything: the logs get compacted completely.
    const compacted = await c.waitFor(async () => {
      const s = await c.status('a');
      return s.log_floor && s.log_floor.a === s.version_vector.a && s.log_floor.b === s.version_vector.b;
    }, 15000);
    assert.ok(compacted, 'the log of a was never compacted');
    await c.stop('c');
    fs.rmSync(c.regions.c.dataDir, { recursive: true, force: true });
    fs.cpSync(backup, c.regions.c.dataDir, { recursive: true });
    await c.restart('c');
    assert.match(c.stderr('c'), /behind the compacted log|restored from an old copy/);
    assert.match(c.stderr('c'), /seeded from a snapshot of [ab]/);
    assert.deepEqual(await c.rows('c', 'SELECT count(*) FROM t'), [[40]]);
    assert.ok((await c.sql('c', "INSERT INTO t VALUES (41, 'after')")).ok);
    assert.ok((await c.waitConverged(['t'], 15000)).ok, 'the regions did not converge after the reseed');
  });
});
