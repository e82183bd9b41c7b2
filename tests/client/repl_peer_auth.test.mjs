// SPDX-License-Identifier: MIT
// The peer link against a network attacker (issue 9, item 3; docs/internals/peer-protocol.md):
// - a server that does not know the cluster secret (it accepts any HELLO and answers HELLO_OK) is
//   refused by the connecting region with AUTH, and nothing is pushed to it;
// - an ENTRIES frame altered in transit (the chaos proxy replaces a value inside it) is refused by
//   the receiver (ERROR MAC, a counter), no forged row appears anywhere, and once the proxy stops
//   tampering every acknowledged row arrives;
// - an ACK altered in transit (the proxy raises a counter of its version vector) is refused by the
//   sender: it is never counted as an acknowledgement, and the regions converge afterwards.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';

import { startCluster } from './lib/cluster.mjs';

// ---- a fake region that speaks the framing and the message layout, but has no secret ----
function uvarint(n) {
  const out = [];
  let v = n;
  do {
    let b = v & 0x7f;
    v = Math.floor(v / 128);
    if (v > 0) b |= 0x80;
    out.push(b);
  } while (v > 0);
  return Buffer.from(out);
}
const str = (s) => Buffer.concat([uvarint(Buffer.byteLength(s)), Buffer.from(s)]);

function wsFrame(payload) {
  const n = payload.length;
  const hdr = n < 126 ? Buffer.from([0x82, n])
    : n < 65536 ? Buffer.from([0x82, 126, n >> 8, n & 0xff])
      : (() => { const b = Buffer.alloc(10); b[0] = 0x82; b[1] = 127; b.writeBigUInt64BE(BigInt(n), 2); return b; })();
  return Buffer.concat([hdr, payload]);
}

/** Parse masked client frames out of buf; returns [messages, rest]. */
function wsParse(buf) {
  const msgs = [];
  for (let i = 0; i < 10000; i++) {
    if (buf.length < 2) break;
    let len = buf[1] & 0x7f;
    let at = 2;
    if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); at = 4; }
    else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); at = 10; }
    const masked = (buf[1] & 0x80) !== 0;
    const mask = masked ? buf.subarray(at, at + 4) : null;
    if (masked) at += 4;
    if (buf.length < at + len) break;
    const p = Buffer.from(buf.subarray(at, at + len));
    if (masked) for (let k = 0; k < p.length; k++) p[k] ^= mask[k & 3];
    if ((buf[0] & 0x0f) === 2) msgs.push(p);
    buf = buf.subarray(at + len);
  }
  return [msgs, buf];
}

/** An HTTP server on 127.0.0.1 whose /v1/peer plays region `region` without the secret. */
function startImpostor(region) {
  const seen = { connections: 0, hellos: [], types: [] };
  const server = http.createServer((req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"error":"impostor"}');
  });
  const socks = new Set();
  server.on('upgrade', (req, sock) => {
    seen.connections++;
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    const accept = crypto.createHash('sha1')
      .update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: edgelite-peer1\r\n\r\n`);
    sock.write(wsFrame(Buffer.concat([Buffer.from([1]), crypto.randomBytes(32)]))); // CHALLENGE
    let rest = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('data', (d) => {
      let msgs;
      [msgs, rest] = wsParse(Buffer.concat([rest, d]));
      for (const m of msgs) {
        seen.types.push(m[0]);
        if (m[0] !== 2) continue;
        const version = m[1];
        seen.hellos.push(version);
        // HELLO_OK in the layout of the client's version: region, empty vv (, a MAC it cannot compute)
        const body = [Buffer.from([3]), str(region), uvarint(0)];
        if (version >= 3) body.push(crypto.randomBytes(32));
        sock.write(wsFrame(Buffer.concat(body)));
      }
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    close: () => new Promise((r) => {
      for (const s of socks) s.destroy(); // upgraded sockets are no longer the server's to close
      server.closeAllConnections();
      server.close(() => r());
    }),
  })));
}

function peerOf(status, region) {
  return (status.peers || []).find((p) => p.region === region);
}

describe('repl_peer_auth: a server without the secret', { timeout: 120000 }, () => {
  let c;
  let fake;
  before(async () => {
    fake = await startImpostor('b');
    // a's link to b goes to the impostor; b's link to a is real
    c = await startCluster({ regions: 2, peerUrl: async (src, r) => (src === 'a' && r.id === 'b' ? fake.url : undefined) });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)',
      { regionsList: ['a'] }); // DDL runs at the primary a, and b never hears from a here
  });
  after(async () => {
    if (c) await c.destroy();
    if (fake) await fake.close();
  });

  test('is refused with AUTH and gets no entries', async () => {
    for (let i = 1; i <= 5; i++) assert.ok((await c.sql('a', 'INSERT INTO t VALUES (?, ?)', [i, `secret row ${i}`])).ok);
    let st = null;
    const refused = await c.waitFor(async () => {
      st = peerOf(await c.status('a'), 'b');
      return fake.seen.hellos.length >= 2 && st && /AUTH/.test(st.last_error) && st.auth_failures >= 2;
    }, 20000, 200);
    assert.ok(refused, `link a->b: ${JSON.stringify(st)}; impostor saw ${JSON.stringify(fake.seen)}`);
    assert.equal(st.connected, false);
    assert.equal(st.entries_sent, 0, 'entries were pushed to a server that did not prove the secret');
    assert.ok(!fake.seen.types.includes(4), `the impostor received ENTRIES: ${fake.seen.types}`);
    assert.ok((await c.metric('a', 'edgelite_repl_peer_auth_failures_total{peer="b"}')) >= 2);
  });
});

describe('repl_peer_auth: frames altered in transit', { timeout: 180000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2, proxies: 'pair' });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    for (let i = 1; i <= 3; i++) assert.ok((await c.sql('a', 'INSERT INTO t VALUES (?, ?)', [i, 'before'])).ok);
    assert.ok((await c.waitConverged(['t'], 15000)).ok, 'no convergence before the test');
  });
  after(async () => { if (c) await c.destroy(); });

  test('an ENTRIES frame with a replaced value is refused; nothing forged is applied', async () => {
    const px = c.proxies['a>b'];
    const acked = [];
    // same length, so the frame stays well-formed: only the integrity check can tell
    await px.control('/set?tamper_dir=1&tamper_type=4&tamper_find=genuine-value&tamper_replace=FORGED-value!');
    try {
      const macBefore = (await c.status('b')).peer_mac_errors_total ?? 0;
      for (let i = 10; i < 20; i++) {
        const r = await c.sql('a', 'INSERT INTO t VALUES (?, ?)', [i, `genuine-value ${i}`]);
        assert.ok(r.ok, `insert ${i}`);
        acked.push(i);
      }
      let pst = null;
      let bst = null;
      const seen = await c.waitFor(async () => {
        pst = await px.status();
        bst = await c.status('b');
        return pst.tampered >= 2 && bst.peer_mac_errors_total >= macBefore + 2;
      }, 20000, 200);
      assert.ok(seen, `proxy ${JSON.stringify(pst)}; b ${JSON.stringify({ mac: bst?.peer_mac_errors_total })}`);
      const link = peerOf(await c.status('a'), 'b');
      assert.match(link.last_error, /MAC/, `a->b last_error: ${link.last_error}`);
      assert.ok((await c.metric('b', 'edgelite_repl_inbound_mac_errors_total')) >= 2);
      for (const id of ['a', 'b']) {
        assert.deepEqual(await c.rows(id, "SELECT count(*) FROM t WHERE v LIKE 'FORGED%'"), [[0]], `forged row in ${id}`);
      }
      // b applied none of the altered batches
      assert.deepEqual(await c.rows('b', 'SELECT count(*) FROM t WHERE id >= 10'), [[0]]);
    } finally {
      await px.reset(); // a failure here must not leave the next test behind a tampering proxy
    }
    const conv = await c.waitConverged(['t'], 30000);
    assert.ok(conv.ok, 'no convergence after the proxy stopped tampering');
    const got = (await c.rows('b', 'SELECT id, v FROM t WHERE id >= 10 ORDER BY id'));
    assert.deepEqual(got, acked.map((i) => [i, `genuine-value ${i}`]));
  });

  test('an ACK with a raised counter is refused and never counts', async () => {
    // b's ACKs travel on the connection a opened, through a>b's proxy: upstream -> client.
    // ACK = type 5, count, then per origin: str (1 + 1 byte: "a") and a varint: offset 4 is a's counter
    // while it is below 64 (XOR 64 raises it by 64).
    const back = c.proxies['a>b'];
    const vvBefore = (await c.status('a')).version_vector.a;
    assert.ok(vvBefore < 64, `a's counter ${vvBefore} must stay one byte for this test`);
    let link = null;
    await back.control('/set?tamper_dir=2&tamper_type=5&tamper_at=4&tamper_xor=64');
    try {
      for (let i = 30; i < 35; i++) assert.ok((await c.sql('a', 'INSERT INTO t VALUES (?, ?)', [i, 'acked'])).ok);
      let pst = null;
      const refused = await c.waitFor(async () => {
        pst = await back.status();
        link = peerOf(await c.status('a'), 'b');
        return pst.tampered >= 2 && link.mac_errors >= 2;
      }, 20000, 200);
      assert.ok(refused, `proxy ${JSON.stringify(pst)}; link ${JSON.stringify(link)}`);
      assert.match(link.last_error, /MAC/);
      const own = (await c.status('a')).version_vector.a;
      assert.ok((link.acked.a ?? 0) <= own, `a forged ACK counted: acked ${link.acked.a} > own ${own}`);
      assert.ok((await c.metric('a', 'edgelite_repl_peer_mac_errors_total{peer="b"}')) >= 2);
    } finally {
      await back.reset();
    }
    const conv = await c.waitConverged(['t'], 30000);
    assert.ok(conv.ok, 'no convergence after the proxy stopped tampering');
    assert.deepEqual(await c.rows('b', 'SELECT count(*) FROM t WHERE id >= 30'), [[5]]);
    link = peerOf(await c.status('a'), 'b');
    assert.ok((link.acked.a ?? 0) <= (await c.status('a')).version_vector.a);
  });
});
