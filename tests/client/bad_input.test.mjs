// SPDX-License-Identifier: MIT
// Bad input never crashes a node and never changes data: malformed HTTP and JSON, wrong types, oversized
// bodies, stored-SQL limits, bad batons, malformed WebSocket frames, half-sent requests, idle floods.
// After every case the node must still answer /health and the canary table must be unchanged.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { healthy, httpRequest, pipeline, rawHttp, sleep, startNode, stmt, V } from './lib/node.mjs';
import { openHranaWs } from './lib/ws.mjs';

const T = { timeout: 30000 };
const CANARY_ROWS = 10;

/** Open a raw WebSocket on a net.Socket (so we can send frames the ws package would refuse to build). */
function rawWs(port, protocol = 'hrana2', timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString('base64');
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const after101 = [];
    let closed = false;
    const closeWaiters = [];
    const t = setTimeout(() => { sock.destroy(); reject(new Error('ws handshake timed out')); }, timeoutMs);
    sock.on('error', () => { /* reported as close */ });
    sock.on('close', () => {
      closed = true;
      for (const w of closeWaiters.splice(0)) w();
      if (!upgraded) { clearTimeout(t); reject(new Error(`closed during handshake: ${buf.toString('latin1')}`)); }
    });
    sock.on('data', (d) => {
      if (upgraded) { after101.push(d); return; }
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      clearTimeout(t);
      if (!/^HTTP\/1\.1 101/.test(head)) { sock.destroy(); reject(new Error(`no upgrade: ${head}`)); return; }
      const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      if (!head.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
        sock.destroy(); reject(new Error(`bad Sec-WebSocket-Accept in: ${head}`)); return;
      }
      upgraded = true;
      if (buf.length > end + 4) after101.push(buf.subarray(end + 4));
      resolve({
        sock,
        write: (b) => new Promise((res) => sock.write(b, () => res())),
        received: () => Buffer.concat(after101),
        /** Resolves true once the server closed the TCP connection or sent a close frame (0x88). */
        waitClosed(ms = 5000) {
          const sawClose = () => closed || Buffer.concat(after101).includes(0x88);
          if (sawClose()) return Promise.resolve(true);
          return new Promise((res) => {
            const iv = setInterval(() => { if (sawClose()) { clearInterval(iv); clearTimeout(to); res(true); } }, 20);
            const to = setTimeout(() => { clearInterval(iv); res(sawClose()); }, ms);
            closeWaiters.push(() => { clearInterval(iv); clearTimeout(to); res(true); });
          });
        },
        destroy: () => sock.destroy(),
      });
    });
    sock.on('connect', () => {
      sock.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`);
    });
  });
}

/** A masked client frame. */
function frame(opcode, payload, { fin = true, mask = true, rsv = 0 } = {}) {
  const p = Buffer.from(payload);
  const b0 = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  let head;
  if (p.length < 126) head = Buffer.from([b0, (mask ? 0x80 : 0) | p.length]);
  else if (p.length < 65536) { head = Buffer.from([b0, (mask ? 0x80 : 0) | 126, 0, 0]); head.writeUInt16BE(p.length, 2); }
  else { head = Buffer.alloc(10); head[0] = b0; head[1] = (mask ? 0x80 : 0) | 127; head.writeBigUInt64BE(BigInt(p.length), 2); }
  if (!mask) return Buffer.concat([head, p]);
  const m = crypto.randomBytes(4);
  const body = Buffer.from(p.map((x, i) => x ^ m[i % 4]));
  return Buffer.concat([head, m, body]);
}

describe('bad input', { timeout: 280000 }, () => {
  let node;
  let client;
  let v2;
  let canary;

  async function canaryState() {
    const rs = await client.execute('SELECT count(*) AS n, group_concat(v, \',\') AS vs FROM canary');
    const t = await client.execute("SELECT group_concat(name, ',') AS names FROM (SELECT name FROM sqlite_schema ORDER BY name)");
    return { n: Number(rs.rows[0].n), vs: rs.rows[0].vs, tables: t.rows[0].names };
  }

  /** The node is alive and no data changed. */
  async function assertIntact() {
    assert.ok(await healthy(node), `node is not healthy; stderr:\n${node.stderr().slice(-3000)}`);
    assert.equal(node.proc.exitCode, null, 'node exited');
    assert.deepEqual(await canaryState(), canary, 'data changed');
  }

  /** The request was refused as a whole (400 + JSON message), or every result slot is an error. */
  function assertRefused(r, what) {
    if (r.status === 400) {
      const body = r.json;
      assert.ok(body && typeof body.message === 'string', `${what}: 400 without a JSON message: ${r.text}`);
      return;
    }
    assert.equal(r.status, 200, `${what}: status ${r.status} ${r.text}`);
    assert.ok(Array.isArray(r.json.results), `${what}: ${r.text}`);
    for (const res of r.json.results) assert.equal(res.type, 'error', `${what}: ${r.text}`);
  }

  async function post(body, extraHeaders = {}, path = '/v2/pipeline', opts = {}) {
    return rawHttp(node.port, httpRequest('POST', path, { headers: { 'Content-Type': 'application/json', ...extraHeaders }, body }),
      { timeoutMs: 10000, ...opts });
  }

  before(async () => {
    node = await startNode();
    v2 = `${node.url}/v2/pipeline`;
    client = createClient({ url: node.url });
    await client.execute('CREATE TABLE canary (id INTEGER PRIMARY KEY, v TEXT)');
    await client.batch(Array.from({ length: CANARY_ROWS }, (_, i) => ({ sql: 'INSERT INTO canary VALUES (?, ?)', args: [i, `c${i}`] })), 'write');
    canary = await canaryState();
    assert.equal(canary.n, CANARY_ROWS);
  });
  // Compare against the state at the start of each test, so one failure does not cascade into the next.
  beforeEach(async () => {
    if (node && node.proc.exitCode === null && await healthy(node)) canary = await canaryState();
  });
  after(async () => {
    if (client) client.close();
    if (node) await node.destroy();
  });

  const INSERT = "INSERT INTO canary VALUES (1000, 'evil')";

  test('malformed JSON is 400 with a JSON message', T, async () => {
    for (const body of ['{"requests":[', 'not json at all', '{"requests":[{"type":"execute",}]}', '', '\u0000\u0001',
      '{"requests":[]}garbage', "{'requests':[]}"]) {
      const r = await post(body);
      assert.equal(r.status, 400, `body ${JSON.stringify(body)}: ${r.status} ${r.text}`);
      assert.equal(typeof r.json?.message, 'string', `body ${JSON.stringify(body)}: ${r.text}`);
    }
    await assertIntact();
  });

  test('truncated JSON carrying a write is 400 and writes nothing', T, async () => {
    const full = JSON.stringify({ requests: [{ type: 'execute', stmt: stmt(INSERT) }, { type: 'close' }] });
    for (const cut of [full.length - 1, full.length - 10, Math.floor(full.length / 2), 1]) {
      const r = await post(full.slice(0, cut));
      assert.equal(r.status, 400, `cut at ${cut}: ${r.text}`);
    }
    await assertIntact();
  });

  test('invalid UTF-8 and deeply nested JSON are refused', T, async () => {
    const bad = Buffer.concat([Buffer.from('{"requests":[{"type":"execute","stmt":{"sql":"SELECT \''), Buffer.from([0xff, 0xfe, 0xc0]), Buffer.from('\'"}}]}')]);
    let r = await post(bad);
    assertRefused(r, 'invalid utf-8');
    r = await post('['.repeat(100000));
    assert.equal(r.status, 400, r.text);
    r = await post('{"requests":' + '['.repeat(5000) + ']'.repeat(5000) + '}');
    assert.equal(r.status, 400, r.text);
    await assertIntact();
  });

  test('wrong JSON types are 400', T, async () => {
    for (const body of [{ requests: 5 }, { requests: 'x' }, { requests: null }, {}, [], 5, 'str', { requests: {} },
      { baton: 5, requests: [] }, { requests: [5] }, { requests: [null] }, { requests: [{ type: 5 }] }]) {
      const r = await post(JSON.stringify(body));
      assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status} ${r.text}`);
      assert.equal(typeof r.json?.message, 'string');
    }
    await assertIntact();
  });

  test('wrong types inside a request are refused and write nothing', T, async () => {
    const cases = {
      stmtNumber: { type: 'execute', stmt: 5 },
      sqlNumber: { type: 'execute', stmt: { sql: 5 } },
      noSql: { type: 'execute', stmt: { args: [] } },
      argsObject: { type: 'execute', stmt: { sql: 'INSERT INTO canary VALUES (?, ?)', args: { a: 1 } } },
      intOverflow: { type: 'execute', stmt: stmt('INSERT INTO canary VALUES (?, ?)', [V.int('99999999999999999999'), V.text('x')]) },
      intGarbage: { type: 'execute', stmt: stmt('INSERT INTO canary VALUES (?, ?)', [V.int('12abc'), V.text('x')]) },
      badValueType: { type: 'execute', stmt: stmt('INSERT INTO canary VALUES (?, ?)', [{ type: 'bignum', value: '1' }, V.text('x')]) },
      badBase64: { type: 'execute', stmt: stmt('INSERT INTO canary VALUES (?, ?)', [V.int(3000), { type: 'blob', base64: '!!!not base64' }]) },
      floatString: { type: 'execute', stmt: stmt('INSERT INTO canary VALUES (?, ?)', [{ type: 'float', value: 'x' }, V.text('x')]) },
      namedNotArray: { type: 'execute', stmt: { sql: 'INSERT INTO canary VALUES (:a, :b)', named_args: 5 } },
      bothKinds: { type: 'execute', stmt: { sql: 'INSERT INTO canary VALUES (:a, ?)', sql_id: 1 } },
      batchSteps: { type: 'batch', batch: { steps: 5 } },
      badCond: { type: 'batch', batch: { steps: [{ condition: { type: 'ok', step: 7 }, stmt: stmt(INSERT) }] } },
      condFwd: { type: 'batch', batch: { steps: [{ condition: { type: 'ok', step: 0 }, stmt: stmt(INSERT) }] } },
      condWeird: { type: 'batch', batch: { steps: [{ condition: { type: 'maybe' }, stmt: stmt(INSERT) }] } },
      storeNoId: { type: 'store_sql', sql: INSERT },
      seqNumber: { type: 'sequence', sql: 42 },
    };
    for (const [name, req] of Object.entries(cases)) {
      const r = await post(JSON.stringify({ requests: [req] }));
      assertRefused(r, name);
    }
    await assertIntact();
  });

  test('an unknown request type is refused', T, async () => {
    const r = await post(JSON.stringify({ requests: [{ type: 'frobnicate' }, { type: 'close' }] }));
    if (r.status === 200) assert.equal(r.json.results[0].type, 'error', r.text);
    else assert.equal(r.status, 400, r.text);
    await assertIntact();
  });

  test('a 20 MiB body is 413', T, async () => {
    const filler = 'x'.repeat(20 * 1024 * 1024);
    const body = JSON.stringify({ requests: [{ type: 'execute', stmt: stmt(`INSERT INTO canary VALUES (5000, '${filler}')`) }] });
    const r = await post(body, {}, '/v2/pipeline', { timeoutMs: 20000 });
    assert.equal(r.status, 413, `status ${r.status} error ${r.error?.code} ${r.text.slice(0, 200)}`);
    await assertIntact();
  });

  test('a declared 100 MiB Content-Length is 413 without waiting for the body', T, async () => {
    const req = Buffer.from(`POST /v2/pipeline HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n{"requests":[`);
    const r = await rawHttp(node.port, req, { timeoutMs: 5000 });
    assert.equal(r.status, 413, `status ${r.status} timedOut ${r.timedOut}`);
    await assertIntact();
  });

  test('malformed HTTP is refused', T, async () => {
    for (const bytes of [
      'GARBAGE\r\n\r\n',
      '\u0000\u0001\u0002\u0003\r\n\r\n',
      'POST /v2/pipeline HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}',
      'POST /v2/pipeline HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
      'POST /v2/pipeline HTTP/9.9\r\nHost: x\r\n\r\n',
      `GET /${'a'.repeat(100000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(200000)}\r\n\r\n`,
    ]) {
      const r = await rawHttp(node.port, Buffer.from(bytes, 'latin1'), { timeoutMs: 5000 });
      assert.ok(r.closed || (r.status >= 400 && r.status < 500), `${JSON.stringify(bytes.slice(0, 60))}: status ${r.status}`);
      assert.ok(!(r.status >= 200 && r.status < 300), `${JSON.stringify(bytes.slice(0, 60))} must not succeed`);
    }
    const r = await rawHttp(node.port, httpRequest('DELETE', '/v2/pipeline'), { timeoutMs: 5000 });
    assert.ok((r.status >= 400 && r.status < 500) || r.status === 501, `DELETE /v2/pipeline: ${r.status}`);
    await assertIntact();
  });

  test('51 stored SQL texts: the 51st is SQL_STORE_TOO_MANY', T, async () => {
    const requests = Array.from({ length: 51 }, (_, i) => ({ type: 'store_sql', sql_id: i, sql: INSERT }));
    requests.push({ type: 'close' });
    const r = await pipeline(v2, { requests });
    assert.equal(r.status, 200);
    assert.equal(r.json.results[49].type, 'ok');
    assert.equal(r.json.results[50].type, 'error');
    assert.equal(r.json.results[50].error.code, 'SQL_STORE_TOO_MANY');
    await assertIntact();
  });

  test('more than one statement in execute is SQL_MANY_STATEMENTS and runs nothing', T, async () => {
    const r = await pipeline(v2, { requests: [
      { type: 'execute', stmt: stmt(`${INSERT}; DELETE FROM canary`) },
      { type: 'execute', stmt: stmt('SELECT 1; DROP TABLE canary') },
      { type: 'close' }] });
    assert.equal(r.status, 200);
    assert.equal(r.json.results[0].error?.code, 'SQL_MANY_STATEMENTS', r.text);
    assert.equal(r.json.results[1].error?.code, 'SQL_MANY_STATEMENTS', r.text);
    await assertIntact();
  });

  test('a reused baton is 400', T, async () => {
    const r1 = await pipeline(v2, { requests: [{ type: 'execute', stmt: stmt('BEGIN') }, { type: 'execute', stmt: stmt(INSERT) }] });
    assert.equal(r1.status, 200, r1.text);
    const b1 = r1.json.baton;
    assert.equal(typeof b1, 'string');
    const r2 = await pipeline(v2, { baton: b1, requests: [{ type: 'execute', stmt: stmt('SELECT 1') }] });
    assert.equal(r2.status, 200, r2.text);
    const b2 = r2.json.baton;
    const r3 = await pipeline(v2, { baton: b1, requests: [{ type: 'execute', stmt: stmt('COMMIT') }] });
    assert.equal(r3.status, 400, `reusing a baton: ${r3.status} ${r3.text}`);
    // End the stream (if it still exists) without committing.
    await pipeline(v2, { baton: b2, requests: [{ type: 'execute', stmt: stmt('ROLLBACK') }, { type: 'close' }] });
    await assertIntact();
  });

  test('forged batons are 400', T, async () => {
    const r1 = await pipeline(v2, { requests: [{ type: 'execute', stmt: stmt('SELECT 1') }] });
    const b = r1.json.baton;
    assert.equal(typeof b, 'string');
    const flip = (s, i) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const forged = ['forged', '', 'AAAA', crypto.randomBytes(48).toString('base64'), crypto.randomBytes(48).toString('base64url'),
      flip(b, b.length - 2), flip(b, 0), flip(b, Math.floor(b.length / 2)), b + 'AAAA', b.slice(0, -4), 'x'.repeat(10000)];
    for (const f of forged) {
      if (f === '') continue; // an empty baton may mean "new stream" to some servers; not a forgery
      const r = await pipeline(v2, { baton: f, requests: [{ type: 'execute', stmt: stmt(INSERT) }] });
      assert.equal(r.status, 400, `baton ${JSON.stringify(f.slice(0, 40))}: ${r.status} ${r.text}`);
    }
    // The genuine baton still works, and closing it ends the stream.
    const ok = await pipeline(v2, { baton: b, requests: [{ type: 'close' }] });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.baton, null);
    await assertIntact();
  });

  test('a baton after close is 400', T, async () => {
    const r1 = await pipeline(v2, { requests: [{ type: 'execute', stmt: stmt('SELECT 1') }] });
    const r2 = await pipeline(v2, { baton: r1.json.baton, requests: [{ type: 'close' }] });
    assert.equal(r2.json.baton, null);
    const r3 = await pipeline(v2, { baton: r1.json.baton, requests: [{ type: 'execute', stmt: stmt(INSERT) }] });
    assert.equal(r3.status, 400, r3.text);
    await assertIntact();
  });

  test('half-sent requests followed by a disconnect change nothing', T, async () => {
    const full = httpRequest('POST', '/v2/pipeline', { headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ requests: [{ type: 'execute', stmt: stmt(INSERT) }, { type: 'close' }] }) });
    for (const cut of [10, 40, full.indexOf('\r\n\r\n') + 4, full.length - 5]) {
      const sock = net.connect({ port: node.port, host: '127.0.0.1' });
      sock.on('error', () => {});
      await new Promise((res) => sock.once('connect', res));
      await new Promise((res) => sock.write(full.subarray(0, cut), res));
      await sleep(50);
      sock.destroy();
    }
    // A half-open one: the client shuts its write side down mid-body.
    const r = await rawHttp(node.port, full.subarray(0, full.length - 5), { timeoutMs: 3000, endAfterWrite: true });
    assert.ok(!(r.status >= 200 && r.status < 300), 'a half body must not be executed');
    await sleep(200);
    await assertIntact();
  });

  test('1000 idle TCP connections, then a normal query still works', { timeout: 60000 }, async () => {
    const socks = [];
    try {
      const connects = [];
      for (let i = 0; i < 1000; i++) {
        const s = net.connect({ port: node.port, host: '127.0.0.1' });
        s.on('error', () => {});
        socks.push(s);
        connects.push(new Promise((res) => { s.once('connect', () => res(true)); s.once('close', () => res(false)); }));
      }
      const ok = await Promise.race([Promise.all(connects), sleep(20000).then(() => null)]);
      assert.ok(ok, 'the 1000 connections did not settle within 20 s');
      assert.ok(ok.filter(Boolean).length >= 1000, `only ${ok.filter(Boolean).length} of 1000 connected`);
      const fresh = createClient({ url: node.url });
      try {
        const rs = await fresh.execute('SELECT count(*) AS n FROM canary');
        assert.equal(Number(rs.rows[0].n), CANARY_ROWS);
      } finally {
        fresh.close();
      }
      const ws = createClient({ url: node.wsUrl });
      try {
        const rs = await ws.execute('SELECT 1 AS one');
        assert.equal(rs.rows[0].one, 1);
      } finally {
        ws.close();
      }
    } finally {
      for (const s of socks) s.destroy();
    }
    await sleep(200);
    await assertIntact();
  });

  describe('malformed WebSocket frames close the socket', () => {
    const cases = {
      'unmasked client frame': frame(0x1, '{"type":"hello","jwt":null}', { mask: false }),
      'reserved opcode 0x3': frame(0x3, 'x'),
      'reserved opcode 0xB (control)': frame(0xb, ''),
      'RSV bits without an extension': frame(0x1, '{}', { rsv: 0x4 }),
      'fragmented control frame': frame(0x9, 'ping', { fin: false }),
      'control frame over 125 bytes': (() => { const f = frame(0x9, 'p'.repeat(200)); return f; })(),
      'continuation without a start': frame(0x0, 'xyz'),
      'invalid UTF-8 in a text frame': frame(0x1, Buffer.from([0x7b, 0xff, 0xfe, 0x7d])),
      '100 MiB length header': (() => {
        const h = Buffer.alloc(14);
        h[0] = 0x81; h[1] = 0x80 | 127; h.writeBigUInt64BE(BigInt(100 * 1024 * 1024), 2); crypto.randomBytes(4).copy(h, 10);
        return Buffer.concat([h, Buffer.from('{"type":"hello"')]);
      })(),
      '2^63 length header': (() => {
        const h = Buffer.alloc(14);
        h[0] = 0x81; h[1] = 0x80 | 127; h.writeBigUInt64BE(1n << 63n, 2);
        return h;
      })(),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      test(name, T, async () => {
        const s = await rawWs(node.port);
        try {
          await s.write(frame(0x1, '{"type":"hello","jwt":null}'));
          await s.write(bytes);
          assert.ok(await s.waitClosed(5000), `${name}: socket still open after 5 s`);
        } finally {
          s.destroy();
        }
        await assertIntact();
      });
    }

    test('an oversized (20 MiB) message closes the socket', T, async () => {
      const s = await openHranaWs(node.wsUrl, ['hrana2']);
      try {
        s.send({ type: 'hello', jwt: null });
        assert.equal((await s.next()).type, 'hello_ok');
        s.send(JSON.stringify({ type: 'request', request_id: 1, request: { type: 'store_sql', sql_id: 1, sql: `SELECT '${'x'.repeat(20 * 1024 * 1024)}'` } }));
        const closed = await Promise.race([s.closed, sleep(10000).then(() => null)]);
        assert.ok(closed, 'socket still open 10 s after a 20 MiB message');
      } finally {
        await s.close();
      }
      await assertIntact();
    });

    test('bad Hrana messages get an error or a close, never a crash', T, async () => {
      for (const msg of ['not json', '{"type":"bogus"}', '5', '[]', '{"type":"request","request_id":"x","request":{}}',
        '{"type":"request","request_id":1,"request":{"type":"execute","stream_id":99,"stmt":{"sql":"SELECT 1"}}}',
        `{"type":"request","request_id":2,"request":{"type":"execute","stream_id":0,"stmt":{"sql":"${INSERT}"}}}`]) {
        const s = await openHranaWs(node.wsUrl, ['hrana2']);
        try {
          s.send({ type: 'hello', jwt: null });
          assert.equal((await s.next()).type, 'hello_ok');
          s.send(msg);
          const reply = await Promise.race([s.next(3000).catch(() => null), s.closed]);
          const isError = reply && (reply.type === 'response_error' || reply.code !== undefined || reply.type === 'hello_error');
          assert.ok(isError || s.closeInfo, `${msg}: got ${JSON.stringify(reply)}`);
        } finally {
          await s.close();
        }
      }
      // A binary frame on a JSON subprotocol.
      const s = await openHranaWs(node.wsUrl, ['hrana2']);
      try {
        s.ws.send(Buffer.from([1, 2, 3]), { binary: true });
        const closed = await Promise.race([s.closed, sleep(5000).then(() => null)]);
        assert.ok(closed, 'a binary frame on hrana2 closes the socket');
      } finally {
        await s.close();
      }
      await assertIntact();
    });
  });
});

describe('expired baton', { timeout: 60000 }, () => {
  let node;
  before(async () => { node = await startNode({ args: ['--stream-timeout-ms', '1000'] }); });
  after(async () => { if (node) await node.destroy(); });

  test('an expired baton is 400 STREAM_EXPIRED and its transaction is rolled back', { timeout: 20000 }, async () => {
    const v2 = `${node.url}/v2/pipeline`;
    let r = await pipeline(v2, { requests: [{ type: 'execute', stmt: stmt('CREATE TABLE e (a)') }, { type: 'close' }] });
    assert.equal(r.status, 200);
    r = await pipeline(v2, { requests: [{ type: 'execute', stmt: stmt('BEGIN') }, { type: 'execute', stmt: stmt('INSERT INTO e VALUES (1)') }] });
    const baton = r.json.baton;
    assert.equal(typeof baton, 'string');
    await sleep(2500);
    r = await pipeline(v2, { baton, requests: [{ type: 'execute', stmt: stmt('COMMIT') }, { type: 'close' }] });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json?.code, 'STREAM_EXPIRED', r.text);
    assert.equal(typeof r.json?.message, 'string');
    r = await pipeline(v2, { requests: [{ type: 'execute', stmt: stmt('SELECT count(*) FROM e') }, { type: 'execute', stmt: stmt('INSERT INTO e VALUES (2)') }, { type: 'close' }] });
    assert.equal(r.json.results[0].response.result.rows[0][0].value, '0');
    assert.equal(r.json.results[1].type, 'ok', 'the write lock was released');
    assert.ok(await healthy(node));
  });
});
