// SPDX-License-Identifier: MIT
// The real-time feed's bounds and refusals (docs/realtime.md): a slow consumer is closed with
// SLOW_CONSUMER and a bookmark it resumes from without loss; connections per node and
// subscriptions per connection are bounded; malformed frames get an error frame and close
// nothing; tokens (none, read-only, read-write; header or first message); a bookmark the
// compacted log no longer covers answers resync_required.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { makeKeyPair, nowS, signJwt, writeKey } from './lib/jwt.mjs';
import { openRt } from './lib/rt.mjs';

const T = { timeout: 60000 };

describe('realtime bounds and auth', { timeout: 180000 }, () => {
  let c;
  let rw;
  let ro;
  before(async () => {
    const keys = makeKeyPair();
    const dir = fs.mkdtempSync('/tmp/edgelite-rtb-');
    const keyFile = writeKey(dir, 'jwt.pem', keys);
    rw = signJwt(keys.privateKey, { a: 'rw', exp: nowS() + 3600 });
    ro = signJwt(keys.privateKey, { a: 'ro', exp: nowS() + 3600 });
    c = await startCluster({ regions: 2, extraArgs: ['--log-level', 'warn', '--auth-jwt-key', keyFile],
      realtime: { queue_bytes: 16384, max_subscriptions: 3, max_connections: 6 } });
    c.tok = rw;
    const r = await c.sql('a', 'CREATE TABLE IF NOT EXISTS big (id INTEGER PRIMARY KEY, v TEXT)', [],
      { authorization: `Bearer ${rw}` });
    assert.ok(r.ok, JSON.stringify(r.error));
    await c.waitFor(async () => (await c.sql('b', 'SELECT count(*) FROM big', [], { authorization: `Bearer ${rw}` })).ok);
  });
  after(async () => { if (c) await c.destroy(); });
  const sql = (id, q, args = []) => c.sql(id, q, args, { authorization: `Bearer ${rw}` });

  test('no token: refused; a token in the header or the first message; read-only subscribes but cannot broadcast', T, async () => {
    const s0 = await openRt(c.url('a'));
    s0.send({ type: 'subscribe', id: 1, tables: ['big'] });
    const e0 = await s0.next();
    assert.equal(e0.type, 'error');
    assert.equal(e0.code, 'AUTH_REQUIRED');
    assert.equal((await s0.closed).code, 4001);
    await assert.rejects(openRt(c.url('a'), { token: 'not-a-jwt' }), (e) => e.status === 401);
    const s1 = await openRt(c.url('a'));
    s1.send({ type: 'subscribe', id: 1, tables: ['big'], jwt: ro });
    assert.equal((await s1.next()).type, 'subscribed');
    assert.equal((await s1.next()).type, 'ready');
    s1.send({ type: 'broadcast', id: 2, channel: 'x', payload: 1 });
    const e1 = await s1.next();
    assert.equal(e1.code, 'AUTH_READ_ONLY');
    await s1.close();
    const s2 = await openRt(c.url('b'), { token: ro });
    assert.equal((await s2.subscribe({ id: 1, tables: ['big'] })).type, 'ready');
    await s2.close();
    const pub = await fetch(`${c.url('a')}/v1/events`, { method: 'POST', headers: { authorization: `Bearer ${ro}` },
      body: JSON.stringify({ type: 'insert', table: 'big', recordId: 1, data: { v: 'x' } }) });
    assert.equal(pub.status, 403);
    const none = await fetch(`${c.url('a')}/v1/realtime/status`);
    assert.equal(none.status, 401);
  });

  test('malformed frames get an error frame; the connection and its subscriptions go on', T, async () => {
    const s = await openRt(c.url('a'), { token: rw });
    assert.equal((await s.subscribe({ id: 1, tables: ['big'] })).type, 'ready');
    const bad = ['not json', '[1,2]', '{"type":"nope"}', '{"type":"subscribe"}', '{"type":"subscribe","id":2,"tables":[]}',
      '{"type":"subscribe","id":2,"tables":["big"],"from":"garbage"}', '{"type":"subscribe","id":1,"tables":["big"]}',
      '{"type":"subscribe","id":3,"tables":["big"],"where":{"v":[1]}}', '{"type":"unsubscribe","id":99}',
      '{"type":"subscribe","id":4,"tables":["_edge_log"]}'];
    for (const b of bad) {
      s.send(b);
      const m = await s.next();
      assert.equal(m.type, 'error', `${b}: ${JSON.stringify(m)}`);
      assert.ok(m.code && m.message, b);
    }
    s.sendBinary(Buffer.from([1, 2, 3]));
    assert.equal((await s.next()).type, 'error');
    await sql('b', "INSERT INTO big VALUES (1, 'after the garbage')");
    const ev = await s.waitFor((m) => m.type === 'change');
    assert.equal(ev.pk, 1);
    s.send({ type: 'ping', id: 7 });
    assert.deepEqual(await s.waitFor((m) => m.type === 'pong'), { type: 'pong', id: 7 });
    assert.equal(s.closeInfo, null);
    await s.close();
  });

  test('subscriptions per connection and connections per node are bounded', T, async () => {
    const s = await openRt(c.url('a'), { token: rw });
    for (let i = 1; i <= 3; i++) assert.equal((await s.subscribe({ id: i, tables: ['big'] })).type, 'ready');
    s.send({ type: 'subscribe', id: 4, tables: ['big'] });
    assert.equal((await s.next()).code, 'TOO_MANY_SUBSCRIPTIONS');
    s.send({ type: 'unsubscribe', id: 1 });
    assert.equal((await s.next()).type, 'unsubscribed');
    assert.equal((await s.subscribe({ id: 4, tables: ['big'] })).type, 'ready');
    const more = [];
    let refused = null;
    for (let i = 0; i < 10 && refused === null; i++) {
      try {
        more.push(await openRt(c.url('a'), { token: rw }));
      } catch (e) {
        refused = e;
      }
    }
    assert.ok(refused, 'no connection was refused');
    assert.equal(refused.status, 503);
    assert.match(refused.body, /TOO_MANY_CONNECTIONS/);
    assert.equal(more.length + 1, 6);
    for (const m of more) await m.close();
    await sleep(200);
    const again = await openRt(c.url('a'), { token: rw }); // the slots came back
    await again.close();
    await s.close();
  });

  test('a subscriber that does not read is closed with SLOW_CONSUMER and resumes from its bookmark without loss', T, async () => {
    const s = await openRt(c.url('b'), { token: rw });
    assert.equal((await s.subscribe({ id: 9, tables: ['big'] })).type, 'ready');
    s.pause();
    const pad = 'x'.repeat(2000);
    const N = 600;
    for (let i = 0; i < N; i += 20) {
      const vals = Array.from({ length: 20 }, (_, k) => `(${10000 + i + k}, '${pad}')`).join(',');
      const r = await sql('a', `INSERT INTO big VALUES ${vals}`);
      assert.ok(r.ok, JSON.stringify(r.error));
    }
    await sleep(1000);
    s.resume();
    const err = await s.waitFor((m) => m.type === 'error', 20000);
    assert.equal(err.code, 'SLOW_CONSUMER');
    assert.equal(err.sub, 9);
    const closed = await s.closed;
    assert.equal(closed.code, 4008);
    assert.ok(s.events.length < N, 'everything arrived: the subscriber was never slow');
    const last = s.events.length ? s.events[s.events.length - 1].bookmark : null;
    assert.equal(err.bookmark, last ?? err.bookmark);
    const s2 = await openRt(c.url('b'), { token: rw });
    assert.equal((await s2.subscribe({ id: 9, tables: ['big'], from: err.bookmark }, 30000)).type, 'ready');
    const end = Date.now() + 20000;
    while (s.events.length + s2.events.length < N && Date.now() < end) await sleep(50);
    const ids = [...s.events, ...s2.events].map((e) => e.pk);
    assert.equal(new Set(ids).size, ids.length, 'an event came twice');
    assert.deepEqual(ids.sort((x, y) => x - y), Array.from({ length: N }, (_, i) => 10000 + i));
    const st = await (await fetch(`${c.url('b')}/v1/realtime/status`, { headers: { authorization: `Bearer ${rw}` } })).json();
    assert.ok(st.closes.slow_consumer >= 1);
    await s2.close();
  });
});

describe('realtime after compaction', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2, extraArgs: ['--log-level', 'warn', '--log-keep', '0', '--compact-interval-ms', '200'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('a bookmark the log no longer covers answers resync_required; from the new bookmark it goes on', T, async () => {
    const s = await openRt(c.url('a'));
    await s.subscribe({ id: 1, tables: ['t'] });
    await c.sql('a', "INSERT INTO t VALUES (1, 'one')");
    const first = await s.waitFor((m) => m.type === 'change');
    await s.close();
    for (let i = 2; i <= 20; i++) await c.sql(i % 2 ? 'a' : 'b', 'INSERT INTO t VALUES (?, ?)', [i, 'more']);
    // acknowledged by the other region, then compacted away
    const ok = await c.waitFor(async () => {
      const st = await (await fetch(`${c.url('a')}/v1/realtime/status`)).json();
      return /a:(\d+)/.exec(st.oldest_resumable)?.[1] > first.seq;
    }, 15000);
    assert.ok(ok !== false, 'the log was never compacted');
    const s2 = await openRt(c.url('a'));
    const r = await s2.subscribe({ id: 1, tables: ['t'], from: first.bookmark });
    assert.equal(r.type, 'resync_required', JSON.stringify(r));
    assert.ok(r.bookmark);
    const r2 = await s2.subscribe({ id: 2, tables: ['t'], from: r.bookmark });
    assert.equal(r2.type, 'ready', JSON.stringify(r2));
    await c.sql('b', "INSERT INTO t VALUES (100, 'new')");
    const ev = await s2.waitFor((m) => m.type === 'change');
    assert.equal(ev.pk, 100);
    const st = await (await fetch(`${c.url('a')}/v1/realtime/status`)).json();
    assert.ok(st.closes.resync_required >= 1);
    await s2.close();
  });
});
