// SPDX-License-Identifier: MIT
// clients/js/realtime.mjs against a real 3-region cluster: it reconnects by itself, moves to the next
// region when its own is SIGKILLed, resumes from the last bookmark, and delivers every change once;
// broadcast through the client.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';

import { edgeliteRealtime } from '../../clients/js/realtime.mjs';
import { sleep, startCluster } from './lib/cluster.mjs';

describe('clients/js/realtime.mjs', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3 });
    await c.createTable('orders', 'CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('a region SIGKILLed under load: the client moves on and every change arrives once', { timeout: 60000 }, async () => {
    const got = [];
    const closes = [];
    const feed = edgeliteRealtime([c.url('b'), c.url('c')], { WebSocket, minDelayMs: 50, maxDelayMs: 500 });
    feed.on('close', (e) => closes.push(e));
    let ready = false;
    feed.on('ready', () => { ready = true; });
    const sub = feed.subscribe('orders', { from: 'now' }, (ev) => got.push(ev));
    for (let i = 0; i < 100 && !ready; i++) await sleep(20);
    assert.ok(ready, 'never ready');
    const acked = [];
    let stop = false;
    const load = (async () => {
      for (let i = 0; i < 300 && !stop; i++) {
        const r = await c.sql(i % 2 ? 'a' : 'c', 'INSERT INTO orders VALUES (?, ?)', [i, `v${i}`]);
        if (r.ok) acked.push(i);
        await sleep(2);
      }
    })();
    for (let i = 0; i < 200 && got.length < 40; i++) await sleep(10);
    await c.kill('b', 'SIGKILL');
    await sleep(500);
    stop = true;
    await load;
    const end = Date.now() + 20000;
    while (got.length < acked.length && Date.now() < end) await sleep(50);
    await sleep(300);
    feed.close();
    assert.ok(closes.length >= 1, 'the client never saw its region go');
    const ids = got.map((e) => e.pk);
    assert.equal(new Set(ids).size, ids.length, 'an event came twice');
    assert.deepEqual(ids.slice().sort((x, y) => x - y), acked.slice().sort((x, y) => x - y));
    assert.ok(sub.bookmark && /a:\d+/.test(sub.bookmark), sub.bookmark);
    await c.restart('b');
  });

  test('broadcast through the client reaches another region\'s client', { timeout: 30000 }, async () => {
    const f1 = edgeliteRealtime(c.url('a'), { WebSocket });
    const f2 = edgeliteRealtime(c.url('c'), { WebSocket });
    const got = [];
    f2.join('lobby', (p) => got.push(p));
    for (let i = 0; i < 100 && !(f1.connected && f2.connected); i++) await sleep(20);
    await sleep(100);
    f1.broadcast('lobby', { n: 1 });
    for (let i = 0; i < 200 && got.length < 1; i++) await sleep(20);
    assert.deepEqual(got, [{ n: 1 }]);
    f1.close();
    f2.close();
  });
});
