// SPDX-License-Identifier: MIT
// Hostile or broken peers on /v1/peer (issue 4, test 8): a raw WebSocket speaking
// `edgelite-peer1` sends garbage, a truncated HELLO, a HELLO with a wrong secret or an unknown
// region, a second HELLO on an established link, and an oversized frame. Each time the node must
// close the link (ERROR message and/or close), keep serving SQL, keep its data, and keep
// replicating with its real peers.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import WebSocket from 'ws';

import { sleep, startCluster } from './lib/cluster.mjs';
import { uvarint, readUvarint, str } from './lib/peer_wire.mjs';

const MAX_BODY = 65536; // --max-body-bytes also caps WebSocket messages

// ---- the peer protocol by hand (src/repl/proto.h, docs/internals/peer-protocol.md) ----

// Protocol 3: HMAC-SHA256(SHA-256(secret), "edgelite-peer3 hello" 0 || server nonce || client nonce ||
// cluster 0 || region 0 || to_region 0 || vv); the vv sent here is empty (one 0 byte).
const CLIENT_NONCE = Buffer.alloc(32, 0x5a);
function helloMac(secret, nonce, cluster, region, toRegion = 'a') {
  const key = crypto.createHash('sha256').update(secret).digest();
  const z = Buffer.from([0]);
  return crypto.createHmac('sha256', key)
    .update(Buffer.concat([Buffer.from('edgelite-peer3 hello'), z, nonce, CLIENT_NONCE, Buffer.from(cluster), z,
      Buffer.from(region), z, Buffer.from(toRegion), z, uvarint(0)]))
    .digest();
}

function hello({ version = 3, cluster, region, toRegion = 'a', mac }) {
  return Buffer.concat([Buffer.from([2]), uvarint(version), str(cluster), str(region), str(toRegion), CLIENT_NONCE,
    uvarint(0), mac]);
}

// What a protocol 2 node sends: no target region, no client nonce, the MAC before the vv.
function helloV2({ cluster, region }) {
  return Buffer.concat([Buffer.from([2]), uvarint(2), str(cluster), str(region), Buffer.alloc(32, 1), uvarint(0)]);
}


function decodeError(buf) {
  if (buf[0] !== 8) return null;
  let [n, off] = readUvarint(buf, 1);
  const code = buf.subarray(off, off + n).toString();
  off += n;
  [n, off] = readUvarint(buf, off);
  return { code, message: buf.subarray(off, off + n).toString() };
}

/**
 * Open /v1/peer, wait for the CHALLENGE, then call `script(ws, nonce)` which sends frames. Resolves
 * with { challenge, messages, errors, closed, closeCode } once the server closes or after waitMs.
 */
function peerSession(url, script, waitMs = 5000) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/peer`, 'edgelite-peer1', { maxPayload: 1 << 20 });
    const res = { challenge: null, messages: [], errors: [], closed: false, closeCode: null };
    let timer = null;
    const done = () => {
      clearTimeout(timer);
      ws.removeAllListeners();
      ws.on('error', () => {});
      ws.terminate();
      resolve(res);
    };
    ws.on('error', (e) => { res.wsError = e.message; });
    ws.on('unexpected-response', (_req, r) => reject(new Error(`upgrade refused: HTTP ${r.statusCode}`)));
    ws.on('message', async (data, isBinary) => {
      const buf = Buffer.from(data);
      if (res.challenge === null) {
        if (!isBinary || buf[0] !== 1 || buf.length !== 33) {
          reject(new Error(`first message is not a CHALLENGE: ${buf.toString('hex').slice(0, 80)}`));
          ws.terminate();
          return;
        }
        res.challenge = buf.subarray(1);
        timer = setTimeout(done, waitMs);
        try {
          await script(ws, res.challenge);
        } catch (e) {
          res.sendError = e.message;
        }
        return;
      }
      res.messages.push(buf);
      const err = decodeError(buf);
      if (err) res.errors.push(err);
    });
    ws.on('close', (code) => {
      res.closed = true;
      res.closeCode = code;
      done();
    });
  });
}

const send = (ws, buf) => new Promise((resolve) => ws.send(buf, { binary: true }, () => resolve()));

describe('repl_bad_peer', { timeout: 90000 }, () => {
  let c;
  let baseline;
  before(async () => {
    c = await startCluster({ regions: 3, extraArgs: ['--log-level', 'error', '--max-body-bytes', String(MAX_BODY)] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    for (let i = 1; i <= 5; i++) assert.ok((await c.sql('b', 'INSERT INTO t VALUES (?, ?)', [i, `v${i}`])).ok);
    assert.ok((await c.waitConverged(['t'], 10000)).ok);
    baseline = await c.checksum('a', 't');
  });
  after(async () => { if (c) await c.destroy(); });

  async function assertStillServing(label) {
    const h = await fetch(c.url('a') + '/health', { signal: AbortSignal.timeout(5000) });
    assert.equal(h.status, 200, `${label}: /health`);
    const now = await c.checksum('a', 't');
    assert.equal(now.hash, baseline.hash, `${label}: data changed`);
    const q = await c.sql('a', 'SELECT 1 + 1');
    assert.deepEqual(q.rows, [[2]], `${label}: query`);
  }

  function assertRefused(res, label, code) {
    assert.ok(res.closed, `${label}: the link was not closed (${res.messages.length} messages)`);
    assert.ok(!res.messages.some((m) => m[0] === 3), `${label}: got HELLO_OK`);
    if (code) assert.ok(res.errors.some((e) => e.code === code), `${label}: errors ${JSON.stringify(res.errors)}`);
  }

  test('garbage binary frame', async () => {
    const res = await peerSession(c.url('a'), (ws) => send(ws, Buffer.from([0xff, 0x00, 0x13, 0x37, 0x42])));
    assertRefused(res, 'garbage');
    await assertStillServing('garbage');
  });

  test('text frame instead of binary', async () => {
    const res = await peerSession(c.url('a'), (ws) => new Promise((r) => ws.send('hello', () => r())));
    assertRefused(res, 'text');
    await assertStillServing('text');
  });

  test('truncated HELLO', async () => {
    const res = await peerSession(c.url('a'), (ws, nonce) => {
      const full = hello({ cluster: c.name, region: 'c', mac: helloMac(c.secret, nonce, c.name, 'c') });
      return send(ws, full.subarray(0, full.length - 20));
    });
    assertRefused(res, 'truncated HELLO', 'PROTOCOL');
    await assertStillServing('truncated HELLO');
  });

  test('HELLO with a wrong secret', async () => {
    const res = await peerSession(c.url('a'), (ws, nonce) =>
      send(ws, hello({ cluster: c.name, region: 'c', mac: helloMac('not-the-secret', nonce, c.name, 'c') })));
    assertRefused(res, 'wrong secret', 'AUTH');
    await assertStillServing('wrong secret');
  });

  test('HELLO with a MAC for another nonce (replay)', async () => {
    const res = await peerSession(c.url('a'), (ws) =>
      send(ws, hello({ cluster: c.name, region: 'c', mac: helloMac(c.secret, Buffer.alloc(32, 7), c.name, 'c') })));
    assertRefused(res, 'replayed MAC', 'AUTH');
    await assertStillServing('replayed MAC');
  });

  test('a protocol 2 HELLO gets ERROR VERSION', async () => {
    const res = await peerSession(c.url('a'), (ws) => send(ws, helloV2({ cluster: c.name, region: 'c' })));
    assertRefused(res, 'v2 HELLO', 'VERSION');
    assert.match(res.errors.find((e) => e.code === 'VERSION').message, /version 2 .*speaks 3/);
    await assertStillServing('v2 HELLO');
  });

  test('a HELLO meant for another region', async () => {
    const res = await peerSession(c.url('a'), (ws, nonce) =>
      send(ws, hello({ cluster: c.name, region: 'c', toRegion: 'b', mac: helloMac(c.secret, nonce, c.name, 'c', 'b') })));
    assertRefused(res, 'other target', 'WRONG_REGION');
    await assertStillServing('other target');
  });

  test('a valid HELLO gets a HELLO_OK that proves the secret', async () => {
    const res = await peerSession(c.url('a'), (ws, nonce) =>
      send(ws, hello({ cluster: c.name, region: 'c', mac: helloMac(c.secret, nonce, c.name, 'c') })), 1500);
    const ok = res.messages.find((m) => m[0] === 3);
    assert.ok(ok, `no HELLO_OK: ${JSON.stringify(res.errors)}`);
    // region str, vv, then mac[32] = HMAC(K, "edgelite-peer3 hello-ok" 0 || ns || nc || cluster 0 || c 0 || a 0 || vv)
    const body = ok.subarray(1, ok.length - 32);
    const [rlen, off] = readUvarint(body, 0);
    assert.equal(body.subarray(off, off + rlen).toString(), 'a');
    const vv = body.subarray(off + rlen);
    const key = crypto.createHash('sha256').update(c.secret).digest();
    const z = Buffer.from([0]);
    const want = crypto.createHmac('sha256', key).update(Buffer.concat([Buffer.from('edgelite-peer3 hello-ok'), z,
      res.challenge, CLIENT_NONCE, Buffer.from(c.name), z, Buffer.from('c'), z, Buffer.from('a'), z, vv])).digest();
    assert.deepEqual(ok.subarray(ok.length - 32), want, 'HELLO_OK MAC');
  });

  test('an unsealed frame after the handshake', async () => {
    const res = await peerSession(c.url('a'), async (ws, nonce) => {
      await send(ws, hello({ cluster: c.name, region: 'c', mac: helloMac(c.secret, nonce, c.name, 'c') }));
      await sleep(200);
      await send(ws, Buffer.from([6, 1])); // a PING without its tag: what an injector without the key can send
    });
    assert.ok(res.closed, 'the link stayed open after an unsealed frame');
    assert.ok(res.errors.some((e) => e.code === 'MAC'), JSON.stringify(res.errors));
    assert.ok(!res.messages.some((m) => m[0] === 7), 'the unsealed PING was answered');
    await assertStillServing('unsealed frame');
  });

  test('HELLO from a region that is not in the cluster', async () => {
    const res = await peerSession(c.url('a'), (ws, nonce) =>
      send(ws, hello({ cluster: c.name, region: 'zz', mac: helloMac(c.secret, nonce, c.name, 'zz') })));
    assertRefused(res, 'unknown region', 'UNKNOWN_REGION');
    await assertStillServing('unknown region');
  });

  test('HELLO claiming to be the node itself', async () => {
    const res = await peerSession(c.url('a'), (ws, nonce) =>
      send(ws, hello({ cluster: c.name, region: 'a', mac: helloMac(c.secret, nonce, c.name, 'a') })));
    assertRefused(res, 'self', 'UNKNOWN_REGION');
    await assertStillServing('self');
  });

  test('ENTRIES before HELLO', async () => {
    const res = await peerSession(c.url('a'), (ws) => send(ws, Buffer.from([4, 0])));
    assertRefused(res, 'entries first', 'NO_HELLO');
    await assertStillServing('entries first');
  });

  test('a second HELLO after a valid one', async () => {
    const res = await peerSession(c.url('a'), async (ws, nonce) => {
      const h = hello({ cluster: c.name, region: 'c', mac: helloMac(c.secret, nonce, c.name, 'c') });
      await send(ws, h);
      await sleep(200); // let HELLO_OK arrive first
      await send(ws, h);
    });
    assert.ok(res.messages.length >= 1 && res.messages[0][0] === 3,
      `a valid HELLO was not answered with HELLO_OK: ${res.messages.map((m) => m[0])} ${JSON.stringify(res.errors)}`);
    assert.ok(res.closed, 'the link stayed open after a second HELLO');
    // after HELLO_OK every frame must carry its seal: a replayed HELLO has none
    assert.ok(res.errors.some((e) => e.code === 'MAC' || e.code === 'HELLO_REPLAYED'), JSON.stringify(res.errors));
    await assertStillServing('second HELLO');
  });

  test('an oversized frame', async () => {
    const res = await peerSession(c.url('a'), (ws) => {
      const big = Buffer.alloc(MAX_BODY * 2, 0x41);
      big[0] = 4;
      return send(ws, big);
    });
    assertRefused(res, 'oversized');
    assert.notEqual(res.closeCode, 1000, 'an oversized frame was closed as normal');
    await assertStillServing('oversized');
  });

  test('an oversized frame after a valid HELLO', async () => {
    const res = await peerSession(c.url('a'), async (ws, nonce) => {
      await send(ws, hello({ cluster: c.name, region: 'b', mac: helloMac(c.secret, nonce, c.name, 'b') }));
      await sleep(100);
      const big = Buffer.alloc(MAX_BODY * 2, 0x41);
      big[0] = 4;
      await send(ws, big);
    });
    assert.ok(res.closed, 'the link stayed open after an oversized frame');
    await assertStillServing('oversized after HELLO');
  });

  test('the real peer links still replicate afterwards', async () => {
    assert.ok((await c.sql('b', 'INSERT INTO t VALUES (100, ?)', ['after'])).ok);
    assert.ok((await c.sql('a', 'INSERT INTO t VALUES (101, ?)', ['after'])).ok);
    const conv = await c.waitConverged(['t'], 10000);
    assert.ok(conv.ok, 'replication broke after the bad peers');
    assert.equal(conv.sums.t.c.count, 7);
  });
});
