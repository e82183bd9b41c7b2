// SPDX-License-Identifier: MIT
// Group apply, frame by frame answers (src/repl/session.c): a hand-made peer "c" sends a burst
// of sealed ENTRIES frames to a while a is stopped, so they queue and are applied in one job:
// a frame past a gap, then a frame that does not decode, then one more. Each frame before the
// bad one gets its own ACK with the VV after it, the bad one gets ERROR BAD_ENTRIES and the link
// closes, and the frame after it is not applied.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import WebSocket from 'ws';

import { sleep, startCluster } from './lib/cluster.mjs';
import { uvarint, readUvarint, str } from './lib/peer_wire.mjs';

// ---- keyed BLAKE2b (RFC 7693), the frame tag's hash ----
const M64 = (1n << 64n) - 1n;
const IV = [0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
  0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n];
const SIGMA = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4], [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13], [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11], [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5], [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]];
const rotr = (x, n) => ((x >> BigInt(n)) | (x << BigInt(64 - n))) & M64;
function compress(h, block, t, last) {
  const m = [];
  for (let i = 0; i < 16; i++) m.push(block.readBigUInt64LE(i * 8));
  const v = [...h, ...IV];
  v[12] ^= t & M64;
  v[13] ^= t >> 64n;
  if (last) v[14] ^= M64;
  const G = (a, b, c, d, x, y) => {
    v[a] = (v[a] + v[b] + x) & M64; v[d] = rotr(v[d] ^ v[a], 32);
    v[c] = (v[c] + v[d]) & M64; v[b] = rotr(v[b] ^ v[c], 24);
    v[a] = (v[a] + v[b] + y) & M64; v[d] = rotr(v[d] ^ v[a], 16);
    v[c] = (v[c] + v[d]) & M64; v[b] = rotr(v[b] ^ v[c], 63);
  };
  for (let r = 0; r < 12; r++) {
    const s = SIGMA[r % 10];
    G(0, 4, 8, 12, m[s[0]], m[s[1]]); G(1, 5, 9, 13, m[s[2]], m[s[3]]);
    G(2, 6, 10, 14, m[s[4]], m[s[5]]); G(3, 7, 11, 15, m[s[6]], m[s[7]]);
    G(0, 5, 10, 15, m[s[8]], m[s[9]]); G(1, 6, 11, 12, m[s[10]], m[s[11]]);
    G(2, 7, 8, 13, m[s[12]], m[s[13]]); G(3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}
function blake2b(data, key, outLen = 32) {
  const h = [...IV];
  h[0] ^= 0x01010000n ^ (BigInt(key.length) << 8n) ^ BigInt(outLen);
  let input = data;
  if (key.length > 0) input = Buffer.concat([Buffer.concat([key, Buffer.alloc(128 - key.length)]), data]);
  let t = 0n;
  let off = 0;
  while (input.length - off > 128) {
    t += 128n;
    compress(h, input.subarray(off, off + 128), t, false);
    off += 128;
  }
  const rest = input.subarray(off);
  t += BigInt(rest.length);
  compress(h, Buffer.concat([rest, Buffer.alloc(128 - rest.length)]), t, true);
  const out = Buffer.alloc(64);
  h.forEach((x, i) => out.writeBigUInt64LE(x, i * 8));
  return out.subarray(0, outLen);
}

// ---- the peer protocol by hand (docs/internals/peer-protocol.md) ----
const Z = Buffer.from([0]);
const NC = Buffer.alloc(32, 0x6b);
const hmacKey = (secret) => crypto.createHash('sha256').update(secret).digest();
const hmac = (secret, parts) => crypto.createHmac('sha256', hmacKey(secret)).update(Buffer.concat(parts)).digest();

function helloFrame(secret, ns, cluster, region, to) {
  const mac = hmac(secret, [Buffer.from('edgelite-peer3 hello'), Z, ns, NC, Buffer.from(cluster), Z, Buffer.from(region),
    Z, Buffer.from(to), Z, uvarint(0)]);
  return Buffer.concat([Buffer.from([2]), uvarint(3), str(cluster), str(region), str(to), NC, uvarint(0), mac]);
}
const sessionKey = (secret, ns, cluster, region, to) => hmac(secret, [Buffer.from('edgelite-peer3 session'), Z, ns, NC,
  Buffer.from(cluster), Z, Buffer.from(region), Z, Buffer.from(to), Z]);
function tag(key, dir, seq, body) {
  const hdr = Buffer.alloc(9);
  hdr[0] = dir;
  hdr.writeBigUInt64BE(BigInt(seq), 1);
  return blake2b(Buffer.concat([hdr, body]), key, 32);
}
// ENTRIES: count, then origin, seq, hlc, consistency, deps (empty), payload (version 3, no ops)
function entries(origin, seqs, hlc0) {
  const parts = [Buffer.from([4]), uvarint(seqs.length)];
  for (const s of seqs) parts.push(str(origin), uvarint(s), uvarint(hlc0 + s), Buffer.from([0]), uvarint(0), uvarint(2), Buffer.from([3, 0]));
  return Buffer.concat(parts);
}
function decodeVv(buf, off) {
  let n;
  [n, off] = readUvarint(buf, off);
  const vv = {};
  for (let i = 0; i < n; i++) {
    let l;
    [l, off] = readUvarint(buf, off);
    const r = buf.subarray(off, off + l).toString();
    off += l;
    let v;
    [v, off] = readUvarint(buf, off);
    vv[r] = v;
  }
  return vv;
}

describe('repl_group_frames', { timeout: 90000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, extraArgs: ['--log-level', 'error'] });
  });
  after(async () => { if (c) await c.destroy(); });

  test('queued frames: an ACK each with its VV, a gap answered below it, BAD_ENTRIES, nothing after it', async () => {
    const ws = new WebSocket(`${c.url('a').replace(/^http/, 'ws')}/v1/peer`, 'edgelite-peer1');
    const got = [];
    let key = null;
    let rxSeq = 0;
    let closed = false;
    const ready = new Promise((resolve, reject) => {
      ws.on('error', reject);
      ws.on('close', () => { closed = true; });
      ws.on('message', (data) => {
        const buf = Buffer.from(data);
        if (buf[0] === 1 && key === null && got.length === 0) {
          ws.nonce = buf.subarray(1);
          ws.send(helloFrame(c.secret, ws.nonce, c.name, 'c', 'a'));
          return;
        }
        if (buf[0] === 3 && key === null) {
          key = sessionKey(c.secret, ws.nonce, c.name, 'c', 'a');
          resolve();
          return;
        }
        const body = buf.subarray(0, buf.length - 32);
        assert.deepEqual(buf.subarray(buf.length - 32), tag(key, 2, rxSeq++, body), 'frame tag from a');
        got.push(body);
      });
    });
    await ready;
    let txSeq = 0;
    const seal = (body) => Buffer.concat([body, tag(key, 1, txSeq++, body)]);
    const origin = 'zz';
    const hlc0 = Date.now() * 65536;
    const frames = [
      entries(origin, [1, 2], hlc0), // applied: zz=2
      entries(origin, [4], hlc0), // a gap (3 missing): nothing applied, the ACK stays at 2
      entries(origin, [3], hlc0), // zz=3
      entries(origin, [4], hlc0), // zz=4
      Buffer.from([4, 5, 1, 2]), // does not decode
      entries(origin, [5], hlc0), // after it: never applied
    ];
    c.pause('a');
    try {
      for (const f of frames) ws.send(seal(f));
      await sleep(300);
    } finally {
      c.resume('a');
    }
    for (let i = 0; i < 100 && !closed; i++) await sleep(50);
    assert.ok(closed, 'the link stayed open after a frame that does not decode');
    const acks = got.filter((m) => m[0] === 5).map((m) => decodeVv(m, 1)[origin] ?? 0);
    console.log(`# ACKs of a for zz: ${acks.join(', ')}`);
    assert.deepEqual(acks, [2, 2, 3, 4]);
    const err = got.find((m) => m[0] === 8);
    assert.ok(err, 'no ERROR');
    const [n, off] = readUvarint(err, 1);
    assert.equal(err.subarray(off, off + n).toString(), 'BAD_ENTRIES');
    const st = await c.status('a');
    const vv = st.vv ?? st.version_vector ?? {};
    assert.equal(vv[origin], 4, `a's VV ${JSON.stringify(st)}`);
    const frames0 = await c.metric('a', 'edgelite_repl_apply_frames_total');
    const txns0 = await c.metric('a', 'edgelite_repl_apply_transactions_total');
    console.log(`# a applied ${frames0} frames in ${txns0} transactions`);
    assert.ok(frames0 > txns0, `the queued frames were not applied together (${frames0} in ${txns0})`);
  });
});
