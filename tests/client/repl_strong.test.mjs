// SPDX-License-Identifier: MIT
// Strong consistency (issue 4, test 5): a table declared `strong` is written through the primary
// (region a, the lowest priority) and acknowledged once a majority (2 of 3) holds the write. With one
// replica down strong writes still succeed; with the primary alone they fail with 503 NO_MAJORITY
// and leave nothing behind in any region.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

describe('repl_strong', { timeout: 90000 }, () => {
  let c;
  before(async () => {
    // Proxies in front of every region: added latency into the primary makes "acknowledged before
    // the primary has it" observable instead of a lost race.
    c = await startCluster({ regions: 3, tables: { accounts: 'strong' }, proxies: 'front' });
    await c.createTable('accounts', 'CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  const value = async (id, k) => {
    const rows = await c.rows(id, 'SELECT v FROM accounts WHERE id = ?', [k]);
    return rows.length ? rows[0][0] : undefined;
  };

  test('the primary is region a', async () => {
    for (const id of c.ids) {
      const st = await c.status(id);
      assert.equal(st.primary, 'a');
      assert.equal(st.role, id === 'a' ? 'primary' : 'replica');
    }
  });

  test('a strong write sent to a replica is on the primary and a majority when acknowledged', async () => {
    await c.proxies.a.latency(200);
    for (let i = 1; i <= 6; i++) {
      const r = await c.sql(i % 2 ? 'b' : 'c', 'INSERT INTO accounts (id, v) VALUES (?, ?)', [i, `s${i}`]);
      assert.ok(r.ok, `strong write ${i}: HTTP ${r.status} ${JSON.stringify(r.error)}`);
      // No waiting: the acknowledgement itself promises the primary holds it.
      assert.equal(await value('a', i), `s${i}`, `strong write ${i} acknowledged but absent on the primary`);
      let holders = 0;
      for (const id of c.ids) if ((await value(id, i)) === `s${i}`) holders++;
      assert.ok(holders >= 2, `strong write ${i} acknowledged while only ${holders} region(s) hold it`);
    }
    await c.proxies.a.reset();
    const conv = await c.waitConverged(['accounts'], 10000);
    assert.ok(conv.ok);
  });

  test('the consistency header makes an ordinary table strong', async () => {
    await c.createTable('plain', 'CREATE TABLE IF NOT EXISTS plain (id INTEGER PRIMARY KEY, v TEXT)');
    await c.proxies.a.latency(200);
    const r = await c.sql('c', 'INSERT INTO plain (id, v) VALUES (1, ?)', ['h'], { 'X-Edge-Consistency': 'strong' });
    await c.proxies.a.reset();
    assert.ok(r.ok, JSON.stringify(r.error));
    const rows = await c.rows('a', 'SELECT v FROM plain WHERE id = 1');
    assert.deepEqual(rows, [['h']], 'a strong-by-header write is not on the primary when acknowledged');
  });

  test('with one replica down strong writes still succeed', async () => {
    await c.kill('c', 'SIGKILL');
    for (const [from, k] of [['b', 100], ['a', 101]]) {
      const r = await c.sql(from, 'INSERT INTO accounts (id, v) VALUES (?, ?)', [k, `s${k}`]);
      assert.ok(r.ok, `strong write via ${from} with c down: HTTP ${r.status} ${JSON.stringify(r.error)}`);
      assert.equal(await value('a', k), `s${k}`);
      assert.equal(await value('b', k), `s${k}`, 'acknowledged without the only other live member');
    }
  });

  test('the primary alone refuses strong writes with 503 NO_MAJORITY and keeps nothing', async () => {
    await c.kill('b', 'SIGKILL');
    // The property is about a primary that knows it is alone: wait until its links say so (a write
    // racing the failure detection is committed and answered 504 STRONG_TIMEOUT instead).
    const alone = await c.waitFor(async () => (await c.status('a')).peers.every((p) => !p.connected), 10000);
    assert.ok(alone, `the primary still reports live peers: ${JSON.stringify((await c.status('a')).peers)}`);
    const before = await c.checksum('a', 'accounts');
    const r = await c.sql('a', 'INSERT INTO accounts (id, v) VALUES (?, ?)', [200, 'lost'], {}, 30000);
    assert.equal(r.status, 503, `expected 503, got ${r.status} ${r.text}`);
    assert.equal(r.error?.code, 'NO_MAJORITY');
    const r2 = await c.sql('a', 'UPDATE accounts SET v = ? WHERE id = 1', ['lost'], {}, 30000);
    assert.equal(r2.status, 503);
    assert.equal(r2.error?.code, 'NO_MAJORITY');
    assert.equal((await c.checksum('a', 'accounts')).hash, before.hash, 'a refused write changed the primary');
    // Eventual tables keep working on the lone primary.
    const ev = await c.sql('a', 'INSERT INTO plain (id, v) VALUES (2, ?)', ['ev']);
    assert.ok(ev.ok, `eventual write on the lone primary: ${JSON.stringify(ev.error)}`);

    await c.restart('b');
    await c.restart('c');
    const conv = await c.waitConverged(['accounts', 'plain'], 15000);
    assert.ok(conv.ok, 'no convergence after the replicas came back');
    for (const id of c.ids) {
      assert.equal(await value(id, 200), undefined, `refused row 200 is present in ${id}`);
      assert.equal(await value(id, 1), 's1', `refused update of row 1 is visible in ${id}`);
      assert.deepEqual(await c.rows(id, 'SELECT v FROM plain WHERE id = 2'), [['ev']]);
      assert.equal(await value(id, 100), 's100');
    }
  });
});
