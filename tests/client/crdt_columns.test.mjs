// SPDX-License-Identifier: MIT
// CRDT columns in SQL tables (issue 13, item 4): replication.crdt_columns makes page_stats.views a
// pn-counter. `UPDATE page_stats SET views = views + 1` run at once in three regions ends with every
// increment counted, while a plain INTEGER column of the same row, updated by the same statements,
// keeps last-writer-wins (and loses concurrent increments). Absolute assignments replicate as the
// difference they made where they ran; the configuration is checked against the schema.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

describe('crdt_columns', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({
      regions: 3,
      proxies: 'pair',
      replication: { crdt_columns: { 'page_stats.views': 'pn-counter', 'bad_t.n': 'pn-counter', 'carts.items': 'or-set' } },
    });
    await c.createTable('page_stats', 'CREATE TABLE IF NOT EXISTS page_stats (id INTEGER PRIMARY KEY,' +
      ' views INTEGER NOT NULL DEFAULT 0, plain INTEGER NOT NULL DEFAULT 0, title TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  const q = async (id, sql, args = []) => {
    const r = await c.sql(id, sql, args);
    assert.ok(r.ok, `${id}: ${sql}: ${JSON.stringify(r.error)}`);
    return r;
  };
  const row = async (id, k) => (await c.rows(id, 'SELECT views, plain, title FROM page_stats WHERE id = ?', [k]))[0];

  async function convergedRow(k, pred, timeoutMs = 15000) {
    let last = {};
    const ok = await c.waitFor(async () => {
      for (const id of c.ids) last[id] = JSON.stringify(await row(id, k));
      const v = Object.values(last);
      return v.every((x) => x === v[0]) && pred(JSON.parse(v[0]));
    }, timeoutMs, 100);
    assert.ok(ok, `row ${k} did not converge: ${JSON.stringify(last)}`);
    return JSON.parse(last[c.ids[0]]);
  }

  test('UPDATE ... SET views = views + 1 from all three regions at once ends exact', async () => {
    await q('a', 'INSERT INTO page_stats (id, views, plain, title) VALUES (1, 0, 0, ?)', ['home']);
    await convergedRow(1, (r) => r !== undefined && r[2] === 'home');
    const N = 40;
    await Promise.all(c.ids.map(async (id) => {
      for (let i = 0; i < N; i++) {
        await q(id, 'UPDATE page_stats SET views = views + 1, plain = plain + 1 WHERE id = 1');
      }
    }));
    const r = await convergedRow(1, (x) => x[0] === 3 * N);
    assert.equal(r[0], 3 * N);
    assert.ok(r[1] <= 3 * N, `plain ${r[1]}`);
  });

  test('while partitioned: every increment counts in the counter, the plain column keeps one writer', async () => {
    const start = (await row('a', 1))[0];
    const startPlain = (await row('a', 1))[1];
    await c.partitioned(async () => {
      for (const [k, id] of c.ids.entries()) {
        for (let i = 0; i < 5 + k; i++) {
          await q(id, 'UPDATE page_stats SET views = views + 1, plain = plain + 1 WHERE id = 1');
        }
      }
      await q('b', "UPDATE page_stats SET title = 'from b' WHERE id = 1");
    });
    const r = await convergedRow(1, (x) => x[0] === start + 5 + 6 + 7);
    assert.equal(r[0], start + 18, 'counter column: every increment of every region');
    // plain: per-column LWW, one region's value wins: its own increments only
    assert.ok([5, 6, 7].includes(r[1] - startPlain), `plain column moved by ${r[1] - startPlain}`);
    assert.equal(r[2], 'from b', 'other columns keep per-column last-writer-wins');
  });

  test('absolute assignments replicate as the difference they made where they ran', async () => {
    await q('a', 'UPDATE page_stats SET views = 1000 WHERE id = 1');
    await convergedRow(1, (x) => x[0] === 1000);
    // concurrently: a resets to 0 (a difference of -1000), b adds 5 and c adds 2
    await c.partitioned(async () => {
      await q('a', 'UPDATE page_stats SET views = 0 WHERE id = 1');
      await q('b', 'UPDATE page_stats SET views = views + 5 WHERE id = 1');
      await q('c', 'UPDATE page_stats SET views = views + 2 WHERE id = 1');
    });
    const r = await convergedRow(1, (x) => x[0] === 7);
    assert.equal(r[0], 7);
    // new rows contribute their value; concurrent inserts of one key add up
    await c.partitioned(async () => {
      await q('a', 'INSERT INTO page_stats (id, views) VALUES (2, 3)');
      await q('b', 'INSERT INTO page_stats (id, views) VALUES (2, 4)');
    });
    await convergedRow(2, (x) => x !== undefined && x[0] === 7);
  });

  test('an or-set column merges element-wise, add-wins, identical text everywhere', async () => {
    await c.createTable('carts', "CREATE TABLE IF NOT EXISTS carts (id INTEGER PRIMARY KEY, items TEXT NOT NULL DEFAULT '[]', note TEXT)");
    await q('a', `INSERT INTO carts (id, items) VALUES (1, '["apple"]')`);
    const items = async (id) => (await c.rows(id, 'SELECT items FROM carts WHERE id = 1'))[0]?.[0];
    const same = async (want) => {
      let last = {};
      const ok = await c.waitFor(async () => {
        for (const id of c.ids) last[id] = await items(id);
        return Object.values(last).every((v) => v === want);
      }, 15000, 100);
      assert.ok(ok, `carts.items: ${JSON.stringify(last)}, want ${want}`);
    };
    await same('["apple"]');
    await c.partitioned(async () => {
      await q('a', `UPDATE carts SET items = '["pear", "apple"]' WHERE id = 1`); // adds pear
      await q('b', `UPDATE carts SET items = '[]' WHERE id = 1`); // removes the apple it saw
      await q('c', `UPDATE carts SET items = '["fig"]' WHERE id = 1`); // removes apple, adds fig
      await q('c', `UPDATE carts SET items = '["fig", "apple"]' WHERE id = 1`); // adds apple again
    });
    // b's removal of apple loses to c's concurrent add of it; a's pear and c's fig stay
    await same('["apple","fig","pear"]');
    const bad = await c.sql('b', "UPDATE carts SET items = 'apple' WHERE id = 1");
    assert.equal(bad.ok, false);
    assert.match(JSON.stringify(bad.error), /or-set/);
  });

  test('a counter column holds integers; the schema is checked against the configuration', async () => {
    const r = await c.sql('b', "UPDATE page_stats SET views = 'many' WHERE id = 1");
    assert.equal(r.ok, false);
    assert.match(JSON.stringify(r.error), /pn-counter/);
    assert.equal((await row('b', 1))[0], 7, 'the refused statement changed nothing');
    const bad = await c.sql('a', 'CREATE TABLE bad_t (id INTEGER PRIMARY KEY, n TEXT)');
    assert.equal(bad.ok, false, 'a table whose counter column is TEXT was created');
    assert.match(JSON.stringify(bad.error), /replication\.crdt_columns: bad_t\.n/);
    assert.equal(await c.hasTable('a', 'bad_t'), false);
    await q('a', 'CREATE TABLE bad_t (id INTEGER PRIMARY KEY, n INTEGER)');
  });
});
