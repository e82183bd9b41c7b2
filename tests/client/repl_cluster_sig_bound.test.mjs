// SPDX-License-Identifier: MIT
// The bound of the replay cache of signed requests (docs/internals/peer-protocol.md, "Signed requests";
// docs/security.md): with cluster.sig_replay_max: 8, b remembers the nonces of the last 8 signed requests
// only. More signed broadcast relays than that (as region a, each with a later ts) are all accepted and
// delivered, the dropped nonces are counted (edgelite_cluster_sig_cache_evicted_total) and the cache holds
// 8; then a captured relay whose nonce was dropped, replayed as is, is 401 AUTH_CLUSTER (its ts is at or
// below the floor its drop raised) and is not delivered, as is one still in the cache; a refused replay
// pushes no live nonce out of the full cache. Without the floor a dropped nonce would open a second delivery.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { sleep, startCluster } from './lib/cluster.mjs';
import { send, sign } from './lib/cluster_auth.mjs';
import { openRt } from './lib/rt.mjs';

const BOUND = 8;
const CHANNEL = 'room-bound';
const PATH = `/v1/broadcast-relay/${CHANNEL}`;

describe('repl_cluster_sig_bound', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2, cluster: { sig_replay_max: BOUND } });
  });
  after(async () => { if (c) await c.destroy(); });

  test('more signed requests than the bound, then a dropped one replayed: 401, not delivered', async () => {
    const sub = await openRt(c.url('b'));
    sub.send({ type: 'join', id: 1, channel: CHANNEL });
    assert.equal((await sub.next()).type, 'joined');
    const metric = (name) => c.metric('b', `edgelite_cluster_sig_${name}`);
    const evicted0 = await metric('cache_evicted_total');
    const replayed0 = await metric('replayed_total');
    assert.match(await c.metrics('b'), new RegExp(`Nonces remembered by the replay cache \\(at most ${BOUND}\\)`));

    // 3 * BOUND relays as a would send them, each signed 1 ms after the one before (within the window)
    const t0 = Date.now();
    const sent = [];
    for (let i = 0; i < 3 * BOUND; i++) {
      const body = JSON.stringify({ i });
      const h = { 'x-edge-cluster-sig': sign({ secret: c.secret, cluster: c.name, from: 'a', to: 'b', method: 'POST',
        path: PATH, body: Buffer.from(body), ts: t0 + i }) };
      const r = await send(c.url('b'), 'POST', PATH, h, body);
      assert.equal(r.status, 200, `relay ${i}: ${r.status} ${r.text}`);
      assert.deepEqual((await sub.waitFor((x) => x.type === 'broadcast', 5000)).payload, { i }, `relay ${i}`);
      sent.push({ h, body });
    }
    assert.equal(await metric('cache_entries'), BOUND);
    const evicted1 = await metric('cache_evicted_total');
    assert.ok(evicted1 >= evicted0 + 2 * BOUND, `evicted ${evicted1}, was ${evicted0}`);

    // replayed as captured: the first (long dropped), one dropped last, one still in the cache
    const cases = [['the first relay', 0, /signed before the oldest signature/],
      ['the last relay dropped', 2 * BOUND - 1, /signed before the oldest signature/],
      ['a relay still in the cache', 3 * BOUND - 1, /used already/]];
    for (const [label, i, why] of cases) {
      const r = await send(c.url('b'), 'POST', PATH, sent[i].h, sent[i].body);
      assert.equal(r.status, 401, `${label}: ${r.status} ${r.text}`);
      assert.equal(r.json?.code, 'AUTH_CLUSTER', `${label}: ${r.text}`);
      assert.match(r.json?.message ?? '', why, `${label}: ${r.text}`);
    }
    await sleep(300); // a relay let in would be delivered by now
    await assert.rejects(sub.waitFor((x) => x.type === 'broadcast', 300), undefined, 'a replayed relay was delivered');
    assert.equal(await metric('replayed_total'), replayed0 + cases.length);
    // a refused replay makes no room: no live nonce pushed out, no floor raised
    assert.equal(await metric('cache_entries'), BOUND);
    assert.equal(await metric('cache_evicted_total'), evicted1, 'a refused replay evicted a live nonce');

    // a fresh signature is still let in once
    const body = JSON.stringify({ fresh: true });
    const h = { 'x-edge-cluster-sig': sign({ secret: c.secret, cluster: c.name, from: 'a', to: 'b', method: 'POST',
      path: PATH, body: Buffer.from(body), ts: Math.max(Date.now(), t0 + 3 * BOUND) }) };
    assert.equal((await send(c.url('b'), 'POST', PATH, h, body)).status, 200);
    assert.deepEqual((await sub.waitFor((x) => x.type === 'broadcast', 5000)).payload, { fresh: true });
    assert.equal((await send(c.url('b'), 'POST', PATH, h, body)).status, 401);
    await sub.close();
  });
});
