// SPDX-License-Identifier: MIT
// TLS for clients (issue 9 item 3): `serve --tls-cert --tls-key` (or regions[].tls_cert/tls_key in the
// config) serves https:// and wss:// on its one port. The real @libsql/client connects over both with
// a CA made at test time and given by NODE_EXTRA_CA_CERTS (read by node at start-up, so the client
// runs in a child process); a client that does not trust the CA is refused. Bad TLS input (plain HTTP,
// garbage, a truncated or never-finished handshake) closes that connection, counted in
// edgelite_tls_failures_total, and the node keeps serving.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';

import { runEdge, startNode, tmpDir } from './lib/node.mjs';
import { httpsRequest, makeCa, makeServerCert, runClientChild } from './lib/tls.mjs';

let dir;
let ca;
let cert;
let node;

async function tlsFailures() {
  const r = await httpsRequest(`${node.url}/metrics`, { ca: ca.cert });
  assert.equal(r.status, 200);
  const m = /^edgelite_tls_failures_total (\d+)$/m.exec(r.text);
  assert.ok(m, 'edgelite_tls_failures_total is on /metrics');
  return Number(m[1]);
}

/** Open a TCP connection, send `bytes` (may be empty), and resolve how it ended: { closed, ms, data }. */
function rawExchange(port, bytes, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = net.connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ closed, ms: Date.now() - t0, data });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    s.on('connect', () => { if (bytes.length > 0) s.write(bytes); });
    s.on('data', (d) => { data = Buffer.concat([data, d]); });
    s.on('close', () => finish(true));
    s.on('error', () => finish(true));
  });
}

/** The first bytes node's TLS client sends (its ClientHello), caught by a local TCP server. */
function captureClientHello() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer((sock) => {
      sock.once('data', (d) => { resolve(d); sock.destroy(); srv.close(); });
    });
    srv.listen(0, '127.0.0.1', () => {
      const c = tls.connect({ port: srv.address().port, host: '127.0.0.1', rejectUnauthorized: false });
      c.on('error', () => { /* the capture server hangs up */ });
    });
    srv.on('error', reject);
  });
}

describe('TLS for clients', () => {
  before(async () => {
    dir = tmpDir('edgelite-tls-');
    ca = makeCa(dir);
    cert = makeServerCert(dir, ca);
    node = await startNode({ args: ['--tls-cert', cert.cert, '--tls-key', cert.key, '--log-level', 'warn'] });
  });
  after(async () => {
    if (node) await node.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the node announces https:// and answers over TLS only', async () => {
    assert.match(node.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(node.wsUrl, /^wss:\/\//);
    const r = await httpsRequest(`${node.url}/health`, { ca: ca.cert });
    assert.equal(r.status, 200);
  });

  test('@libsql/client over https:// and wss:// with the test CA in NODE_EXTRA_CA_CERTS', async () => {
    const env = { NODE_EXTRA_CA_CERTS: ca.cert };
    const h = await runClientChild([node.url, 't_tls'], env);
    assert.equal(h.ok, true, `https client failed: ${JSON.stringify(h)}`);
    assert.deepEqual(h.rows, [[1, 'via https']]);
    const w = await runClientChild([node.wsUrl, 't_tls'], env);
    assert.equal(w.ok, true, `wss client failed: ${JSON.stringify(w)}`);
    assert.deepEqual(w.rows, [[1, 'via https'], [2, 'via wss']]);
  });

  test('a client that does not trust the CA cannot connect, and writes nothing', async () => {
    for (const url of [node.url, node.wsUrl]) {
      const r = await runClientChild([url, 't_untrusted'], {});
      assert.equal(r.ok, false, `${url}: an untrusting client connected: ${JSON.stringify(r)}`);
      assert.match(r.cause, /certificate|issuer|self.signed/i, `${url}: ${r.cause}`);
    }
    const tables = await httpsRequest(`${node.url}/v2/pipeline`, {
      ca: ca.cert, method: 'POST',
      body: { requests: [{ type: 'execute', stmt: { sql: "SELECT count(*) FROM sqlite_master WHERE name = 't_untrusted'" } }] },
    });
    assert.equal(tables.status, 200);
    assert.equal(tables.json.results[0].response.result.rows[0][0].value, '0');
  });

  test('bad TLS input closes that connection, is counted, and the node keeps serving', async () => {
    const before0 = await tlsFailures();
    // Plain HTTP sent to the TLS port: no HTTP answer, just a close.
    const plain = await rawExchange(node.port, Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\n\r\n'), 20000);
    assert.equal(plain.closed, true, 'plain HTTP: the connection is closed');
    assert.ok(!plain.data.toString('latin1').includes('HTTP/1.1 200'), 'plain HTTP gets no plain answer');
    // Garbage that is not a TLS record.
    const junk = await rawExchange(node.port, Buffer.from('\x16\x03\x01\xff\xff' + 'x'.repeat(300), 'latin1'), 20000);
    assert.equal(junk.closed, true, 'garbage: the connection is closed');
    // A truncated ClientHello that never completes, and a client that sends nothing: both are
    // closed by the handshake deadline (10 s), not left open.
    const hello = await captureClientHello();
    assert.ok(hello.length > 40 && hello[0] === 0x16, 'captured a ClientHello');
    const [trunc, silent] = await Promise.all([
      rawExchange(node.port, hello.subarray(0, Math.floor(hello.length / 2)), 40000),
      rawExchange(node.port, Buffer.alloc(0), 40000),
    ]);
    assert.equal(trunc.closed, true, 'truncated handshake: closed by the server');
    assert.equal(silent.closed, true, 'silent client: closed by the server');
    // Counted (the deadline closes come after the handshake timeout; wait for the counter, bounded).
    let now = 0;
    for (let i = 0; i < 100; i++) {
      now = await tlsFailures();
      if (now - before0 >= 4) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(now - before0 >= 4, `edgelite_tls_failures_total rose by ${now - before0}, expected >= 4`);
    assert.match(node.stderr(), /tls: connection closed: /);
    // Still serving, and still alive.
    const ok = await httpsRequest(`${node.url}/health`, { ca: ca.cert });
    assert.equal(ok.status, 200);
    assert.equal(node.proc.exitCode, null);
  });
});

describe('TLS from the config file', () => {
  test('regions[].tls_cert and tls_key, relative to the config file', async () => {
    const d = tmpDir('edgelite-tlsconf-');
    let n;
    try {
      const c = makeCa(d);
      makeServerCert(d, c, 'region');
      const conf = path.join(d, 'edge-config.yaml');
      fs.writeFileSync(conf, 'cluster: { name: tlsconf }\nregions:\n' +
        '  - { id: solo, tls_cert: region.crt, tls_key: region.key }\n');
      // Run from elsewhere: the relative names must resolve against the config's directory.
      n = await startNode({ args: ['--config', conf, '--log-level', 'warn'] });
      assert.match(n.url, /^https:/);
      const r = await httpsRequest(`${n.url}/v1/status`, { ca: c.cert });
      assert.equal(r.status, 200);
      assert.equal(r.json.region, 'solo');
    } finally {
      if (n) await n.destroy();
      fs.rmSync(d, { recursive: true, force: true });
    }
  });

  test('a key that does not match the certificate stops start-up with a message', async () => {
    const d = tmpDir('edgelite-tlsbad-');
    try {
      const c = makeCa(d);
      const a = makeServerCert(d, c, 'a');
      const b = makeServerCert(d, c, 'b');
      const r = await runEdge(['serve', '--listen', '127.0.0.1:0', '--data', path.join(d, 'data'),
        '--tls-cert', a.cert, '--tls-key', b.key]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /TLS key .*b\.key.*(mismatch|does not match)/);
      const r2 = await runEdge(['serve', '--listen', '127.0.0.1:0', '--data', path.join(d, 'data'),
        '--tls-cert', a.cert]);
      assert.notEqual(r2.code, 0);
      assert.match(r2.stderr, /--tls-key/);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});
