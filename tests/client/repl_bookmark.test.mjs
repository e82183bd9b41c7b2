// SPDX-License-Identifier: MIT
// Read-your-writes across regions with bookmarks (issue 4, test 6): every write answers with
// `X-Edge-Bookmark: <region>:<seq>`; a read carrying it waits until the region it is sent to has
// applied that write, and gives up with 504 BOOKMARK_TIMEOUT (after --bookmark-timeout-ms) when the
// write cannot arrive.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';

// How long c's server waits for a bookmark, and the delay the proxy in front of c adds to
// every chunk into and out of c. The delay keeps a's write from reaching c for at least
// LATENCY_MS, so a plain read right after the write provably misses it; the timeout leaves
// LATENCY_MS plus several seconds of slack for a loaded machine.
const TIMEOUT_MS = 5000;
const LATENCY_MS = 1000;

describe('repl_bookmark', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    // router.bookmark_wait_ms beyond the timeout: this file is about waiting and its 504. With
    // only the links into c cut, c still hears a's version vector over its own link to a, and
    // the router (issue 12) would rightly send the read there instead (router_node tests that).
    c = await startCluster({ regions: 3, proxies: 'front', router: `{ bookmark_wait_ms: ${TIMEOUT_MS * 10} }`,
      extraArgs: ['--log-level', 'warn', '--bookmark-timeout-ms', String(TIMEOUT_MS)] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('every write answers with its bookmark', async () => {
    const r1 = await c.sql('a', 'INSERT INTO t (id, v) VALUES (1, ?)', ['one']);
    assert.ok(r1.ok, JSON.stringify(r1.error));
    assert.match(r1.bookmark ?? '', /^a:\d+$/);
    const r2 = await c.sql('a', 'INSERT INTO t (id, v) VALUES (2, ?)', ['two']);
    assert.ok(Number(r2.bookmark.split(':')[1]) > Number(r1.bookmark.split(':')[1]), 'bookmarks do not increase');
  });

  test('a read with the bookmark waits for the write in another region', async () => {
    // Slow every chunk into c so a's write cannot arrive for LATENCY_MS. For each write: a
    // plain read in c shows it has not arrived, then the same read with the bookmark must
    // return it, which it can only do by waiting. If this thread was itself held up for
    // LATENCY_MS (the plain read already sees the row), that round proves nothing and the
    // next id is tried; three proven rounds are required, out of at most eight.
    await c.proxies.c.latency(LATENCY_MS);
    let proven = 0;
    try {
      for (let i = 10; i < 18 && proven < 3; i++) {
        const w = await c.sql('a', 'INSERT INTO t (id, v) VALUES (?, ?)', [i, `v${i}`]);
        assert.ok(w.ok && w.bookmark, `write: ${JSON.stringify(w.error)}`);
        const plain = await c.sql('c', 'SELECT v FROM t WHERE id = ?', [i]);
        assert.ok(plain.ok, plain.text);
        if (plain.rows.length !== 0) continue;
        const r = await c.sql('c', 'SELECT v FROM t WHERE id = ?', [i], { 'X-Edge-Bookmark': w.bookmark });
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(r.rows, [[`v${i}`]], `read with bookmark ${w.bookmark} in c missed the write`);
        proven++;
      }
    } finally {
      await c.proxies.c.reset();
    }
    assert.equal(proven, 3, 'the plain read kept seeing the write: the latency into c was not applied');
  });

  test('with c cut off, a bookmarked read in c fails with 504 BOOKMARK_TIMEOUT', async () => {
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
    // The cut lasted the whole timeout, so the links into c may be deep in their back-off (<= 5 s).
    const conv = await c.waitConverged(['t'], 30000);
    assert.ok(conv.ok, 'c did not catch up after the link healed');
  });

  test('a bookmark already applied locally is served at once', async () => {
    const w = await c.sql('b', 'INSERT INTO t (id, v) VALUES (30, ?)', ['b30']);
    assert.ok(w.ok);
    const r = await c.sql('b', 'SELECT v FROM t WHERE id = 30', [], { 'X-Edge-Bookmark': w.bookmark });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.rows, [['b30']]);
  });
});
