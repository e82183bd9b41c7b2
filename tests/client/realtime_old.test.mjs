// SPDX-License-Identifier: MIT
// The `old` row image of change events (docs/realtime.md, "Events"): an insert has none, an update carries
// the row before it, a delete the deleted row, a key-moving update the old key's row on its delete; the
// image is the origin's, so every region delivers the same one, live (WebSocket and SSE) and from the
// backlog when a subscriber resumes from a bookmark; POST /v1/events updates carry it too.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep, startCluster } from './lib/cluster.mjs';
import { openRt } from './lib/rt.mjs';
import { openSse } from './lib/sse.mjs';

const T = { timeout: 60000 };

async function waitEvents(s, n, ms = 20000) {
  const end = Date.now() + ms;
  while (s.events.length < n && Date.now() < end) await sleep(20);
  return s.events.length;
}

/** The events' op, pk, row and old, the fields this file is about. */
const shape = (evs) => evs.map((e) => ({ op: e.op, pk: e.pk, row: e.row, old: e.old ?? null, origin: e.origin }));

describe('realtime: the old row image', { timeout: 180000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3 });
    await c.createTable('acct', 'CREATE TABLE IF NOT EXISTS acct (id INTEGER PRIMARY KEY, status TEXT, n INTEGER)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('insert: no old; update: the row before; delete: the deleted row; in every region, live and from the backlog', T, async () => {
    const subs = {};
    let from = null;
    for (const id of c.ids) {
      subs[id] = await openRt(c.url(id));
      const r = await subs[id].subscribe({ id: 1, tables: ['acct'], from: 'now' });
      assert.equal(r.type, 'ready', JSON.stringify(r));
      if (id === 'a') from = r.bookmark;
    }
    const sse = await openSse(c.url('c'), 'tables=acct&from=now');
    assert.equal(sse.status, 200);
    for (let i = 0; i < 250 && !sse.ready; i++) await sleep(20);
    assert.ok(sse.ready, 'the SSE stream did not get ready');

    const w = async (id, sql, args = []) => {
      const r = await c.sql(id, sql, args);
      assert.ok(r.ok, JSON.stringify(r.error));
    };
    await w('a', "INSERT INTO acct (id, status, n) VALUES (1, 'open', 10)");
    await w('a', "UPDATE acct SET status = 'paid' WHERE id = 1");
    // Wait until b has the row, so b's own update is causally after a's writes.
    for (let i = 0; i < 500; i++) {
      const r = await c.sql('b', 'SELECT status FROM acct WHERE id = 1');
      if (r.ok && r.rows?.[0]?.[0] === 'paid') break;
      await sleep(20);
    }
    await w('b', 'UPDATE acct SET n = n + 1 WHERE id = 1');
    await waitEvents(subs.a, 3);
    await w('a', 'UPDATE acct SET id = 2 WHERE id = 1'); // the key moves: delete of 1, insert of 2
    await w('a', 'DELETE FROM acct WHERE id = 2');
    const want = [
      { op: 'insert', pk: 1, row: { id: 1, status: 'open', n: 10 }, old: null, origin: 'a' },
      { op: 'update', pk: 1, row: { id: 1, status: 'paid', n: 10 }, old: { id: 1, status: 'open', n: 10 }, origin: 'a' },
      { op: 'update', pk: 1, row: { id: 1, status: 'paid', n: 11 }, old: { id: 1, status: 'paid', n: 10 }, origin: 'b' },
      { op: 'delete', pk: 1, row: null, old: { id: 1, status: 'paid', n: 11 }, origin: 'a' },
      { op: 'insert', pk: 2, row: { id: 2, status: 'paid', n: 11 }, old: null, origin: 'a' },
      { op: 'delete', pk: 2, row: null, old: { id: 2, status: 'paid', n: 11 }, origin: 'a' },
    ];
    for (const id of c.ids) {
      const got = await waitEvents(subs[id], want.length);
      assert.equal(got, want.length, `region ${id}: ${JSON.stringify(shape(subs[id].events))}`);
      assert.deepEqual(shape(subs[id].events), want, `region ${id}`);
      await subs[id].close();
    }
    for (let i = 0; i < 500 && sse.messages.length < want.length; i++) await sleep(20);
    assert.deepEqual(shape(sse.messages), want, 'SSE at c');
    sse.res.destroy();

    // Resumed from the bookmark before the writes, at a region that is not the origin: the backlog
    // read from the log carries the same images.
    for (const id of ['b', 'c']) {
      const s = await openRt(c.url(id));
      const r = await s.subscribe({ id: 2, tables: ['acct'], from });
      assert.equal(r.type, 'ready', JSON.stringify(r));
      assert.deepEqual(shape(s.events), want, `backlog at ${id}`);
      await s.close();
    }
  });

  test('POST /v1/events: an update of an existing record carries the row before it', T, async () => {
    assert.ok((await c.sql('a', "INSERT INTO acct (id, status, n) VALUES (7, 'open', 1)")).ok);
    for (let i = 0; i < 500; i++) { // b publishes over the row it has
      const r = await c.sql('b', 'SELECT n FROM acct WHERE id = 7');
      if (r.ok && r.rows?.length === 1) break;
      await sleep(20);
    }
    const s = await openRt(c.url('c'));
    assert.equal((await s.subscribe({ id: 1, tables: ['acct'], keys: [7], from: 'now' })).type, 'ready');
    const res = await fetch(`${c.url('b')}/v1/events`, {
      method: 'POST',
      body: JSON.stringify({ type: 'update', table: 'acct', recordId: 7, data: { status: 'closed', n: 2 } }),
    });
    assert.equal(res.status, 200, await res.text());
    const e = await s.waitFor((m) => m.type === 'change', 20000);
    assert.deepEqual(shape([e]), [{ op: 'update', pk: 7, row: { id: 7, status: 'closed', n: 2 }, old: { id: 7, status: 'open', n: 1 }, origin: 'b' }]);
    await s.close();
  });
});
