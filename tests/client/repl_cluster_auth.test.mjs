// SPDX-License-Identifier: MIT
// HTTP requests between regions without the secret on the wire (issue 9, item 3;
// docs/internals/peer-protocol.md, "HTTP requests between regions"):
// - a region seeding from a snapshot, and checking its peers' /v1/status at start-up, sends no
//   request that carries the cluster secret (every byte it sends to its peers is recorded);
// - GET /v1/cluster/challenge gives a single-use nonce with the node's proof; the request's
//   X-Edge-Cluster-Auth MAC is bound to nonce, region, method and path;
// - a replayed header, a wrong MAC, a MAC for another path, the node's own region, an unknown
//   nonce: 401 with a JSON body; X-Edge-Cluster-Secret opens /v1/snapshot no more;
// - the nonces are bounded: past 64 waiting, the oldest is replaced (and counted).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { startCluster } from './lib/cluster.mjs';
import { authHeader, challenge, hmac, z } from './lib/cluster_auth.mjs';
import { closeAll, peerUrlVia, recordingProxy } from './lib/proxy.mjs';

describe('repl_cluster_auth', { timeout: 180000 }, () => {
  let c;
  const recorders = {};
  before(async () => {
    c = await startCluster({
      regions: 3,
      extraArgs: ['--log-level', 'info'],
      // everything c sends to a and b is recorded
      peerUrl: peerUrlVia('c', recorders, recordingProxy),
    });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => {
    if (c) await c.destroy();
    await closeAll(recorders);
  });

  test('seeding and the start-up status check never send the secret', async () => {
    for (let i = 1; i <= 20; i++) assert.ok((await c.sql('a', 'INSERT INTO t VALUES (?, ?)', [i, `row ${i}`])).ok);
    assert.ok((await c.waitConverged(['t'], 15000, ['a', 'b'])).ok);
    await c.stop('c');
    fs.rmSync(c.regions.c.dataDir, { recursive: true, force: true });
    await c.restart('c'); // empty: seeds from a snapshot of a or b
    assert.match(c.stderr('c'), /seeded from a snapshot of [ab]/);
    assert.deepEqual(await c.rows('c', 'SELECT count(*) FROM t'), [[20]]);
    await c.restart('c'); // a database now: asks its peers' /v1/status whether it is behind
    assert.ok((await c.waitConverged(['t'], 15000)).ok);
    const sent = Buffer.concat([recorders.a.sent(), recorders.b.sent()]).toString('latin1');
    assert.match(sent, /GET \/v1\/snapshot HTTP\/1\.1/);
    assert.match(sent, /GET \/v1\/status HTTP\/1\.1/);
    assert.match(sent, /X-Edge-Cluster-Auth: region=c nonce=[0-9a-f]{64} cnonce=[0-9a-f]{64} mac=[0-9a-f]{64}/);
    assert.ok(!sent.includes(c.secret), 'the cluster secret crossed the wire');
    assert.ok(!/x-edge-cluster-secret/i.test(sent), 'a request carried X-Edge-Cluster-Secret');
  });

  test('the challenge proves the secret, and one header opens one request', async () => {
    const ch = await challenge(c.url('a'));
    assert.equal(ch.status, 200);
    assert.equal(ch.body.region, 'a');
    assert.match(ch.body.nonce, /^[0-9a-f]{64}$/);
    const proof = hmac(c.secret, ['edgelite-http1 challenge', z, ch.cnonce, Buffer.from(ch.body.nonce, 'hex'),
      c.name, z, 'a', z]);
    assert.equal(ch.body.proof, proof.toString('hex'), 'the proof');
    const h = authHeader({ secret: c.secret, cluster: c.name, region: 'b', nonceHex: ch.body.nonce, cnonce: ch.cnonce,
      method: 'GET', path: '/v1/snapshot' });
    const ok = await fetch(`${c.url('a')}/v1/snapshot`, { headers: { 'x-edge-cluster-auth': h } });
    assert.equal(ok.status, 200);
    assert.equal(Buffer.from(await ok.arrayBuffer()).subarray(0, 15).toString(), 'SQLite format 3');
    // the same header again: its nonce is used up
    const again = await fetch(`${c.url('a')}/v1/snapshot`, { headers: { 'x-edge-cluster-auth': h } });
    assert.equal(again.status, 401);
    const body = await again.json();
    assert.equal(body.code, 'AUTH_CLUSTER');
    assert.match(body.message, /unknown, used or expired nonce/);
  });

  test('wrong MACs, other paths, self and garbage are 401/400 with a JSON body', async () => {
    const cases = [
      ['another secret', { secret: 'not-the-secret', region: 'b', path: '/v1/snapshot' }, /wrong MAC/],
      ['a MAC for another path', { secret: c.secret, region: 'b', path: '/v1/status' }, /wrong MAC/],
      ['the node itself', { secret: c.secret, region: 'a', path: '/v1/snapshot' }, /not another region/],
      ['a region of no cluster', { secret: c.secret, region: 'zz', path: '/v1/snapshot' }, /not another region/],
    ];
    for (const [label, o, why] of cases) {
      const ch = await challenge(c.url('a'));
      const h = authHeader({ cluster: c.name, nonceHex: ch.body.nonce, cnonce: ch.cnonce, method: 'GET', ...o });
      const res = await fetch(`${c.url('a')}/v1/snapshot`, { headers: { 'x-edge-cluster-auth': h } });
      assert.equal(res.status, 401, label);
      const body = await res.json();
      assert.equal(body.code, 'AUTH_CLUSTER', label);
      assert.match(body.message, why, label);
      // a failed try used the nonce up: the right MAC on it is refused too
      const right = authHeader({ secret: c.secret, cluster: c.name, region: 'b', nonceHex: ch.body.nonce,
        cnonce: ch.cnonce, method: 'GET', path: '/v1/snapshot' });
      const late = await fetch(`${c.url('a')}/v1/snapshot`, { headers: { 'x-edge-cluster-auth': right } });
      assert.equal(late.status, 401, `${label}: the nonce could be tried twice`);
    }
    const bad = await fetch(`${c.url('a')}/v1/snapshot`, { headers: { 'x-edge-cluster-auth': 'region=b nonce=zz' } });
    assert.equal(bad.status, 401);
    assert.match((await bad.json()).message, /malformed/);
    const noCnonce = await fetch(`${c.url('a')}/v1/cluster/challenge`);
    assert.equal(noCnonce.status, 400);
    assert.equal((await noCnonce.json()).code, 'BAD_REQUEST');
    // /v1/status: a bad header is refused rather than ignored
    const st = await fetch(`${c.url('a')}/v1/status`, { headers: { 'x-edge-cluster-auth': 'garbage' } });
    assert.equal(st.status, 401);
    assert.ok((await c.metric('a', 'edgelite_cluster_auth_refused_total')) >= 10);
  });

  test('waiting nonces are bounded: the oldest is replaced', async () => {
    const first = await challenge(c.url('b'));
    const evictedBefore = await c.metric('b', 'edgelite_cluster_auth_evicted_total');
    for (let i = 0; i < 70; i++) assert.equal((await challenge(c.url('b'))).status, 200);
    assert.ok((await c.metric('b', 'edgelite_cluster_auth_evicted_total')) >= evictedBefore + 6);
    const h = authHeader({ secret: c.secret, cluster: c.name, region: 'a', nonceHex: first.body.nonce,
      cnonce: first.cnonce, method: 'GET', path: '/v1/snapshot' });
    const res = await fetch(`${c.url('b')}/v1/snapshot`, { headers: { 'x-edge-cluster-auth': h } });
    assert.equal(res.status, 401, 'an evicted nonce still opened a request');
  });
});
