// SPDX-License-Identifier: MIT
// "Read, then subscribe from that read's bookmark" (docs/realtime.md, "Bookmarks and resuming") under
// concurrent writes, for the tests that read over HTTP (realtime_read_bookmark) and over Hrana
// WebSocket (hrana_ws_bookmark): the writers every region runs on table kv (id INTEGER PRIMARY KEY,
// v INTEGER), and the check that a read's rows plus the events after its bookmark are the final table.

import assert from 'node:assert/strict';

import { sleep } from './cluster.mjs';

/**
 * Table kv with rowsPerRegion rows written at each region of cluster c (region k's ids from
 * (k + 1) * 1000, v 0), converged everywhere.
 */
export async function createKv(c, rowsPerRegion) {
  await c.createTable('kv', 'CREATE TABLE IF NOT EXISTS kv (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)');
  for (const [k, id] of c.ids.entries()) {
    for (let i = 0; i < rowsPerRegion; i++) {
      assert.ok((await c.sql(id, 'INSERT INTO kv VALUES (?, 0)', [(k + 1) * 1000 + i])).ok);
    }
  }
  assert.ok((await c.waitConverged(['kv'], 30000)).ok);
}

/**
 * Writers at every region of cluster c, each at most `max` statements: region k (0-based) adds 1 to
 * one of its rows (k + 1) * 1000 + (i % rowsPerRegion), and every tenth statement inserts a new row
 * (k + 1) * 1000 + 100 + i. w.writes counts the statements done; w.waitWrites(n) waits (30 s at
 * most) until n are; w.stop() ends them and waits, ignoring failures; w.done() ends them and waits,
 * throwing the first failure.
 */
export function kvWriters(c, { rowsPerRegion, max }) {
  const w = { writing: true, writes: 0 };
  const writer = async (id, k) => {
    for (let i = 0; i < max && w.writing; i++) {
      const key = (k + 1) * 1000 + (i % rowsPerRegion);
      const r = i % 10 === 9
        ? await c.sql(id, 'INSERT INTO kv VALUES (?, 1)', [(k + 1) * 1000 + 100 + i])
        : await c.sql(id, 'UPDATE kv SET v = v + 1 WHERE id = ?', [key]);
      assert.ok(r.ok, JSON.stringify(r.error));
      w.writes++;
    }
  };
  const all = c.ids.map((id, k) => writer(id, k));
  w.waitWrites = async (n) => {
    const until = Date.now() + 30000;
    while (w.writes < n && w.writing && Date.now() < until) await sleep(10);
  };
  w.stop = async () => { w.writing = false; await Promise.allSettled(all); };
  w.done = async () => { w.writing = false; await Promise.all(all); };
  return w;
}

/**
 * readers: { what, rt, bm, rows }, rt a real-time subscription to kv from the read's bookmark, bm
 * that bookmark parsed, rows the read's rows as a Map id -> v. Once c converged, every reader's rows
 * with its events applied must become kv's final content (60 s at most), with no event twice and
 * none the read already held (seq at or below bm of its origin). Closes every rt.
 */
export async function checkReadThenSubscribe(c, readers) {
  assert.ok((await c.waitConverged(['kv'], 60000)).ok);
  const final = new Map((await c.rows('a', 'SELECT id, v FROM kv ORDER BY id')).map((x) => [Number(x[0]), Number(x[1])]));
  const want = JSON.stringify([...final.entries()]);
  const apply = (r) => {
    const state = new Map(r.rows);
    for (const e of r.rt.events) {
      if (e.op === 'delete') state.delete(e.pk);
      else state.set(e.pk, e.row.v);
    }
    return JSON.stringify([...state.entries()].sort((x, y) => x[0] - y[0]));
  };
  for (const r of readers) {
    // Wait until the subscriber's view is the final table (bounded), then check what it took to get there.
    const end = Date.now() + 60000;
    while (apply(r) !== want && Date.now() < end) await sleep(50);
    const seen = new Set();
    for (const e of r.rt.events) {
      const k = `${e.origin}:${e.seq}:${e.pk}`;
      assert.ok(!seen.has(k), `${r.what}: ${k} twice`);
      seen.add(k);
      assert.ok(e.seq > (r.bm[e.origin] ?? 0), `${r.what}: ${e.origin}:${e.seq} is already in the read`);
    }
    assert.equal(apply(r), want, `${r.what}: the read plus its ${r.rt.events.length} events is not the final table`);
    await r.rt.close();
  }
}
