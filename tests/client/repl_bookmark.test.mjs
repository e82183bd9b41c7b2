// SPDX-License-Identifier: MIT
// Read-your-writes across regions with bookmarks (issue 4, test 6): every write answers with
// `X-Edge-Bookmark: <region>:<seq>`; a read carrying it waits until the region it is sent to has
// applied that write, and gives up with 504 BOOKMARK_TIMEOUT (after --bookmark-timeout-ms) when the
// write cannot arrive.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { serveSupports, startCluster } from './lib/cluster.mjs';

const TIMEOUT_MS = 1500;
const todo = serveSupports('--bookmark-timeout-ms')
  ? false
  : 'edgelite serve has no --bookmark-timeout-ms yet (bookmark reads are landing)';

describe('repl_bookmark', { timeout: 60000, todo }, () => {
  let c;
  before(async () => {
    if (todo) return;
    c = await startCluster({ regions: 3, proxies: 'front',
      extraArgs: ['--log-level', 'warn', '--bookmark-timeout-ms', String(TIMEOUT_MS)] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('every write answers with its bookmark', { todo }, async () => {
    const r1 = await c.sql('a', 'INSERT INTO t (id, v) VALUES (1, ?)', ['one']);
    assert.ok(r1.ok, JSON.stringify(r1.error));
    assert.match(r1.bookmark ?? '', /^a:\d+$/);
    const r2 = await c.sql('a', 'INSERT INTO t (id, v) VALUES (2, ?)', ['two']);
    assert.ok(Number(r2.bookmark.split(':')[1]) > Number(r1.bookmark.split(':')[1]), 'bookmarks do not increase');
  });

  test('a read with the bookmark sees the write in another region', { todo }, async () => {
    // Slow the links into c so the write cannot have arrived by the time the read starts.
    await c.proxies.c.latency(150);
    try {
      for (let i = 10; i < 13; i++) {
        const w = await c.sql('a', 'INSERT INTO t (id, v) VALUES (?, ?)', [i, `v${i}`]);
        assert.ok(w.ok && w.bookmark, `write: ${JSON.stringify(w.error)}`);
        const r = await c.sql('c', 'SELECT v FROM t WHERE id = ?', [i], { 'X-Edge-Bookmark': w.bookmark });
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.rows, [[`v${i}`]], `read with bookmark ${w.bookmark} in c missed the write`);
      }
    } finally {
      await c.proxies.c.reset();
    }
  });

  test('with c cut off, a bookmarked read in c fails with 504 BOOKMARK_TIMEOUT', { todo }, async () => {
    await c.proxies.c.cut();
    try {
      const w = await c.sql('a', 'INSERT INTO t (id, v) VALUES (20, ?)', ['cut']);
      assert.ok(w.ok && w.bookmark);
      const r = await c.sql('c', 'SELECT v FROM t WHERE id = 20', [], { 'X-Edge-Bookmark': w.bookmark });
      assert.equal(r.status, 504, `expected 504, got ${r.status} ${r.text}`);
      assert.equal(r.error?.code, 'BOOKMARK_TIMEOUT');
      // c still serves reads without a bookmark, and has not seen the write.
      const plain = await c.sql('c', 'SELECT count(*) FROM t WHERE id = 20');
      assert.ok(plain.ok);
      assert.equal(plain.rows[0][0], 0);
    } finally {
      await c.proxies.c.reset();
    }
    const conv = await c.waitConverged(['t'], 10000);
    assert.ok(conv.ok, 'c did not catch up after the link healed');
  });

  test('a bookmark already applied locally is served at once', { todo }, async () => {
    const w = await c.sql('b', 'INSERT INTO t (id, v) VALUES (30, ?)', ['b30']);
    assert.ok(w.ok);
    const r = await c.sql('b', 'SELECT v FROM t WHERE id = 30', [], { 'X-Edge-Bookmark': w.bookmark });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.rows, [['b30']]);
  });
});
