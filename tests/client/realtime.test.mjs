// SPDX-License-Identifier: MIT
// The real-time feed (/v1/realtime, docs/realtime.md) on real 3-region clusters: every change from
// every region exactly once and in order under load; resuming from a bookmark after the subscriber's
// own disconnect and after a SIGKILL of its region (at another region); filters; batches; SSE with
// Last-Event-ID; broadcast across regions; publish with compare-and-set.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep, startCluster } from './lib/cluster.mjs';
import { openRt, parseBookmark } from './lib/rt.mjs';
import { openSse } from './lib/sse.mjs';

const T = { timeout: 60000 };

/** Key of one delivered op, to count each exactly once. */
const key = (e) => `${e.origin}:${e.seq}:${e.table}:${JSON.stringify(e.pk)}:${e.op}`;

/** Every event once, per origin in seq order (ops of one entry share a seq), bookmarks moving forward. */
function checkStream(events, what) {
  const seen = new Set();
  const last = {};
  let prev = {};
  for (const e of events) {
    const k = key(e);
    assert.ok(!seen.has(k), `${what}: ${k} delivered twice`);
    seen.add(k);
    assert.ok((last[e.origin] ?? 0) <= e.seq, `${what}: ${e.origin}:${e.seq} after ${e.origin}:${last[e.origin]}`);
    last[e.origin] = e.seq;
    const bm = parseBookmark(e.bookmark);
    assert.equal(bm[e.origin], e.seq, `${what}: the bookmark of ${k} is ${e.bookmark}`);
    for (const [o, s] of Object.entries(prev)) assert.ok((bm[o] ?? 0) >= s, `${what}: bookmark went back at ${k}`);
    prev = bm;
  }
  return seen;
}

async function waitEvents(s, n, ms = 20000) {
  const end = Date.now() + ms;
  while (s.events.length < n && Date.now() < end) await sleep(20);
  return s.events.length;
}

describe('realtime on three regions', { timeout: 240000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3 });
    await c.createTable('orders', 'CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, status TEXT, n INTEGER)');
    await c.createTable('other', 'CREATE TABLE IF NOT EXISTS other (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('every change of every region reaches a subscriber in each region exactly once, in order, under load', T, async () => {
    const subs = {};
    for (const id of c.ids) {
      subs[id] = await openRt(c.url(id));
      const r = await subs[id].subscribe({ id: 1, tables: ['orders'], from: 'now' });
      assert.equal(r.type, 'ready', JSON.stringify(r));
    }
    // Writers in all three regions at once: inserts, then updates of the own rows, bounded.
    const N = 150;
    const writer = async (id, base) => {
      for (let i = 0; i < N; i++) {
        const r = await c.sql(id, 'INSERT INTO orders (id, status, n) VALUES (?, ?, ?)', [base + i, 'open', i]);
        assert.ok(r.ok, JSON.stringify(r.error));
        if (i % 3 === 0) {
          const u = await c.sql(id, "UPDATE orders SET status = 'paid' WHERE id = ?", [base + i]);
          assert.ok(u.ok, JSON.stringify(u.error));
        }
      }
    };
    await Promise.all(c.ids.map((id, k) => Promise.all([writer(id, 100000 * (k + 1)), writer(id, 100000 * (k + 1) + 50000)])));
    const expected = 3 * 2 * (N + N / 3);
    for (const id of c.ids) {
      const got = await waitEvents(subs[id], expected);
      assert.equal(got, expected, `region ${id} delivered ${got} of ${expected}`);
    }
    await sleep(300); // nothing more may come
    const sets = {};
    for (const id of c.ids) {
      assert.equal(subs[id].events.length, expected, `region ${id}: extra events`);
      sets[id] = checkStream(subs[id].events, `region ${id}`);
      // an update never comes before the insert of its row
      const firstOp = new Map();
      for (const e of subs[id].events) if (!firstOp.has(e.pk)) firstOp.set(e.pk, e.op);
      for (const [pk, op] of firstOp) assert.equal(op, 'insert', `region ${id}: first event of row ${pk} is ${op}`);
      assert.ok(subs[id].batches > 0, `region ${id}: never batched`);
    }
    assert.deepEqual([...sets.b].sort(), [...sets.a].sort());
    assert.deepEqual([...sets.c].sort(), [...sets.a].sort());
    for (const id of c.ids) await subs[id].close();
  });

  test('filters: where (equality on columns), keys (primary keys), tables', T, async () => {
    const s = await openRt(c.url('a'));
    assert.equal((await s.subscribe({ id: 1, tables: ['orders'], where: { status: 'vip' }, from: 'now' })).type, 'ready');
    assert.equal((await s.subscribe({ id: 2, tables: ['orders'], keys: [7001, 7003], from: 'now' })).type, 'ready');
    assert.equal((await s.subscribe({ id: 3, tables: ['other'], from: 'now' })).type, 'ready');
    await c.sql('b', "INSERT INTO orders VALUES (7001, 'vip', 1), (7002, 'vip', 2), (7003, 'plain', 3), (7004, 'plain', 4)");
    await c.sql('c', "INSERT INTO other VALUES (1, 'x')");
    // the delete runs at a once b's insert is there (else it deletes nothing)
    await c.waitFor(async () => (await c.rows('a', 'SELECT count(*) FROM orders WHERE id = 7003'))[0][0] === 1);
    const d = await c.sql('a', 'DELETE FROM orders WHERE id = 7003');
    assert.equal(d.affected, 1);
    await waitEvents(s, 7);
    await sleep(500);
    const by = (sub) => s.events.filter((e) => e.sub === sub).map((e) => `${e.op}:${e.table}:${e.pk}`);
    // a delete carries only its key: it reaches every subscription whose filter names other columns
    assert.deepEqual(by(1), ['insert:orders:7001', 'insert:orders:7002', 'delete:orders:7003']);
    assert.deepEqual(by(2), ['insert:orders:7001', 'insert:orders:7003', 'delete:orders:7003']);
    assert.deepEqual(by(3), ['insert:other:1']);
    const ins = s.events.find((e) => e.sub === 1 && e.pk === 7001);
    assert.deepEqual(ins.row, { id: 7001, status: 'vip', n: 1 });
    assert.equal(ins.origin, 'b');
    assert.equal(typeof ins.hlc, 'string');
    await s.close();
  });

  test('resume after the subscriber\'s own disconnect: exactly the rest, no gap, no duplicate', T, async () => {
    const s1 = await openRt(c.url('a'));
    await s1.subscribe({ id: 1, tables: ['orders'], from: 'now' });
    for (let i = 0; i < 20; i++) await c.sql(i % 2 ? 'b' : 'a', 'INSERT INTO orders VALUES (?, ?, ?)', [8000 + i, 'r', i]);
    await waitEvents(s1, 20);
    const cut = s1.events[9];
    await s1.close();
    for (let i = 20; i < 40; i++) await c.sql(i % 2 ? 'c' : 'a', 'INSERT INTO orders VALUES (?, ?, ?)', [8000 + i, 'r', i]);
    const s2 = await openRt(c.url('a'));
    const r = await s2.subscribe({ id: 1, tables: ['orders'], from: cut.bookmark });
    assert.equal(r.type, 'ready', JSON.stringify(r));
    await waitEvents(s2, 30);
    await sleep(300);
    const got = [...s1.events.slice(0, 10), ...s2.events].map((e) => e.pk).sort((x, y) => x - y);
    assert.deepEqual(got, Array.from({ length: 40 }, (_, i) => 8000 + i));
    checkStream([...s1.events.slice(0, 10), ...s2.events], 'resumed');
    await s2.close();
  });

  test('resume at another region after a SIGKILL of the subscriber\'s region', T, async () => {
    const s1 = await openRt(c.url('b'));
    await s1.subscribe({ id: 5, tables: ['orders'], from: 'now' });
    let stop = false;
    let n = 0;
    const acked = [];
    const load = (async () => {
      for (let i = 0; i < 400 && !stop; i++) {
        const id = 9000 + n++;
        const r = await c.sql(i % 2 ? 'a' : 'c', 'INSERT INTO orders VALUES (?, ?, ?)', [id, 'k', i]);
        if (r.ok) acked.push(id);
      }
    })();
    await waitEvents(s1, 30);
    await c.kill('b', 'SIGKILL');
    await s1.closed;
    const have = s1.events.slice();
    const last = have[have.length - 1];
    const s2 = await openRt(c.url('c'));
    const r = await s2.subscribe({ id: 5, tables: ['orders'], from: last.bookmark });
    assert.equal(r.type, 'ready', JSON.stringify(r));
    await sleep(300);
    stop = true;
    await load;
    await waitEvents(s2, acked.length - have.length, 20000);
    await sleep(500);
    const all = [...have, ...s2.events];
    checkStream(all, 'across the kill');
    assert.deepEqual(all.map((e) => e.pk).sort((x, y) => x - y), acked.slice().sort((x, y) => x - y));
    await s2.close();
    await c.restart('b');
  });

  test('SSE: the same events, id is the bookmark and Last-Event-ID resumes', T, async () => {
    const sse = (lastId) => openSse(c.url('a'), 'tables=other&from=now', lastId ? { 'Last-Event-ID': lastId } : {});
    const waitSse = async (s, pred, ms = 10000) => {
      const end = Date.now() + ms;
      while (!pred() && Date.now() < end) await sleep(20);
    };
    const s1 = await sse(null);
    assert.equal(s1.status, 200);
    assert.match(s1.type, /text\/event-stream/);
    await waitSse(s1, () => s1.events.some((e) => e.event === 'ready'));
    for (let i = 0; i < 6; i++) await c.sql(i % 2 ? 'b' : 'c', 'INSERT INTO other VALUES (?, ?)', [100 + i, 'sse']);
    await waitSse(s1, () => s1.events.filter((e) => e.event === 'message').length >= 6);
    const msgs = s1.events.filter((e) => e.event === 'message');
    assert.equal(msgs.length, 6);
    for (const m of msgs) assert.equal(m.id, m.json.bookmark);
    s1.res.destroy();
    for (let i = 6; i < 10; i++) await c.sql('a', 'INSERT INTO other VALUES (?, ?)', [100 + i, 'sse']);
    const s2 = await sse(msgs[2].id);
    await waitSse(s2, () => s2.events.filter((e) => e.event === 'message').length >= 7);
    await sleep(300);
    const got = [...msgs.slice(0, 3), ...s2.events.filter((e) => e.event === 'message')].map((e) => e.json.pk);
    assert.deepEqual(got.sort((x, y) => x - y), Array.from({ length: 10 }, (_, i) => 100 + i));
    s2.res.destroy();
  });

  test('broadcast reaches the channel\'s subscribers in every region, and is not stored', T, async () => {
    const subs = [];
    for (const id of c.ids) {
      const s = await openRt(c.url(id));
      s.send({ type: 'join', id: 1, channel: 'room1' });
      assert.equal((await s.next()).type, 'joined');
      subs.push(s);
    }
    const other = await openRt(c.url('b'));
    other.send({ type: 'join', channel: 'room2' });
    await other.next();
    const r = await fetch(`${c.url('a')}/v1/broadcast/room1`, { method: 'POST', body: JSON.stringify({ payload: { hi: 1 } }) });
    assert.equal(r.status, 200);
    subs[1].send({ type: 'broadcast', channel: 'room1', payload: 'from-b' });
    for (const s of subs) {
      const got = [];
      for (let i = 0; i < 2; i++) {
        const m = await s.waitFor((x) => x.type === 'broadcast', 10000);
        got.push(JSON.stringify(m.payload));
      }
      assert.deepEqual(got.sort(), ['"from-b"', '{"hi":1}']);
    }
    await sleep(300);
    await assert.rejects(other.waitFor((x) => x.type === 'broadcast', 300));
    for (const s of [...subs, other]) await s.close();
  });

  test('POST /v1/events: upsert and delete by key, compare-and-set on version (409 when the row moved on)', T, async () => {
    const s = await openRt(c.url('c'));
    await s.subscribe({ id: 1, tables: ['orders'], keys: [5001], from: 'now' });
    const post = async (id, body) => {
      const res = await fetch(`${c.url(id)}/v1/events`, { method: 'POST', body: JSON.stringify(body) });
      return { status: res.status, json: await res.json() };
    };
    const p1 = await post('a', { type: 'insert', table: 'orders', recordId: 5001, data: { status: 'new', n: 1 } });
    assert.equal(p1.status, 200, JSON.stringify(p1.json));
    assert.match(p1.json.bookmark, /^a:\d+$/);
    const ev = await s.waitFor((m) => m.type === 'change');
    assert.equal(ev.version, p1.json.version);
    assert.deepEqual(ev.row, { id: 5001, status: 'new', n: 1 });
    // c has the row at version p1: a CAS update from c succeeds, a second with the old version fails
    const p2 = await post('c', { type: 'update', table: 'orders', recordId: 5001, data: { n: 2 }, version: ev.version });
    assert.equal(p2.status, 200, JSON.stringify(p2.json));
    const p3 = await post('c', { type: 'update', table: 'orders', recordId: 5001, data: { n: 3 }, version: ev.version });
    assert.equal(p3.status, 409, JSON.stringify(p3.json));
    assert.equal(p3.json.code, 'VERSION_CONFLICT');
    const rows = await c.rows('c', 'SELECT status, n FROM orders WHERE id = 5001');
    assert.deepEqual(rows, [['new', 2]]);
    const p4 = await post('c', { type: 'delete', table: 'orders', recordId: 5001, version: p2.json.version });
    assert.equal(p4.status, 200, JSON.stringify(p4.json));
    const del = await s.waitFor((m) => m.type === 'change' && m.op === 'delete');
    assert.equal(del.pk, 5001);
    for (const bad of [{}, { type: 'upsert', table: 'orders', recordId: 1 }, { type: 'insert', table: 'nope', recordId: 1 },
      { type: 'insert', table: 'orders', recordId: { a: 1 } }, { type: 'insert', table: '_edge_log', recordId: 1 }]) {
      const r = await post('a', bad);
      assert.ok(r.status === 400 || r.status === 404, `${JSON.stringify(bad)}: ${r.status}`);
    }
    await s.close();
  });

  test('an event\'s bookmark (a vector) gates SQL reads as X-Edge-Bookmark at any region', T, async () => {
    const s = await openRt(c.url('a'));
    await s.subscribe({ id: 1, tables: ['other'], from: 'now' });
    await c.sql('a', "INSERT INTO other VALUES (500, 'va')");
    await c.sql('b', "INSERT INTO other VALUES (501, 'vb')");
    await waitEvents(s, 2);
    const bm = s.events[1].bookmark;
    assert.match(bm, /,/, 'a vector bookmark');
    const r = await c.sql('c', 'SELECT count(*) FROM other WHERE id IN (500, 501)', [], { 'x-edge-bookmark': bm });
    assert.ok(r.ok, JSON.stringify(r.error));
    assert.equal(r.rows[0][0], 2);
    const bad = await c.sql('c', 'SELECT 1', [], { 'x-edge-bookmark': 'a:1,,b:2' });
    assert.equal(bad.status, 400);
    // one origin not there yet: the read waits (and times out) rather than answering early
    const ahead = await c.sql('c', 'SELECT 1', [], { 'x-edge-bookmark': `${bm},zz:5` }, 15000);
    assert.equal(ahead.status, 504);
    await s.close();
  });

  test('interactive transactions and /v1/replicate are events too, once each, in order', T, async () => {
    const s = await openRt(c.url('c'));
    await s.subscribe({ id: 1, tables: ['other'], from: 'now' });
    const client = await c.client('a');
    try {
      const tx = await client.transaction('write');
      await tx.execute({ sql: 'INSERT INTO other VALUES (?, ?)', args: [700, 'tx'] });
      await tx.execute({ sql: 'INSERT INTO other VALUES (?, ?)', args: [701, 'tx'] });
      await tx.execute({ sql: "UPDATE other SET v = 'tx2' WHERE id = 700", args: [] });
      await tx.commit();
    } finally {
      client.close();
    }
    const r = await fetch(`${c.url('b')}/v1/replicate`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ op: 'insert', table: 'other', id: 702, data: { id: 702, v: 'rep' } }) });
    assert.equal(r.status, 200, await r.text());
    await waitEvents(s, 4);
    await sleep(300);
    const got = s.events.map((e) => `${e.origin}:${e.op}:${e.pk}`);
    // one transaction is one entry: its three operations in order, with the row's final image per op
    assert.deepEqual(got, ['a:insert:700', 'a:insert:701', 'a:update:700', 'b:insert:702']);
    assert.equal(s.events[0].seq, s.events[2].seq);
    checkStream(s.events, 'txn');
    await s.close();
  });

  test('a /v1/crdt object named like a table is no table event', T, async () => {
    const s = await openRt(c.url('a'));
    await s.subscribe({ id: 1, tables: ['other'], from: 'now' });
    const r = await fetch(`${c.url('b')}/v1/crdt/other`, { method: 'POST',
      body: JSON.stringify({ type: 'g-counter', op: 'increment', amount: 1 }) });
    assert.equal(r.status, 200, await r.text());
    await c.sql('b', "INSERT INTO other VALUES (600, 'after the crdt')");
    const ev = await s.waitFor((m) => m.type === 'change');
    assert.equal(ev.pk, 600);
    assert.equal(ev.op, 'insert');
    await s.close();
  });

  test('status and metrics count subscribers, tables and deliveries', T, async () => {
    const s = await openRt(c.url('a'));
    await s.subscribe({ id: 1, tables: ['orders', 'other'], from: 'now' });
    const st = await (await fetch(`${c.url('a')}/v1/realtime/status`)).json();
    assert.ok(st.subscribers >= 1);
    assert.ok(st.subscriptions_by_table.orders >= 1);
    assert.ok(st.deliveries_total > 0);
    assert.match(st.position, /a:\d+/);
    const m = await (await fetch(`${c.url('a')}/metrics`)).text();
    assert.match(m, /edgelite_realtime_subscribers \d+/);
    assert.match(m, /edgelite_realtime_deliveries_total \d+/);
    await s.close();
  });
});
