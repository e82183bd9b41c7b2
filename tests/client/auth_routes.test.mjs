// SPDX-License-Identifier: MIT
// Auth on every route (issue 9, item 1): walks each row of the route table (tests/client/routes.json,
// checked against src/api/routes.c by unit/test_api_routes) without a token, with a read-only token and
// with a read-write token, on a node started with --auth-jwt-key. Only /health and /version answer
// without a token; a read-only token reaches no route that writes; /metrics is public only with
// auth.public_metrics: true.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { makeKeyPair, nowS, signJwt, writeKey } from './lib/jwt.mjs';
import { get, httpRequest, pipeline, rawHttp, startNode, stmt, tmpDir } from './lib/node.mjs';
import { openHranaWs } from './lib/ws.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUTES = JSON.parse(fs.readFileSync(path.join(here, 'routes.json'), 'utf8')).routes;
const T = { timeout: 30000 };

async function probeHttp(node, probe, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  if (probe.upgrade) {
    Object.assign(headers, {
      Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    });
  }
  const body = probe.body === undefined ? '' : JSON.stringify(probe.body);
  const req = httpRequest(probe.method, probe.path, { headers, body });
  return rawHttp(node.port, req, { timeoutMs: 5000 });
}

async function hello(node, token) {
  const ws = await openHranaWs(node.wsUrl, ['hrana2']);
  try {
    ws.send({ type: 'hello', jwt: token });
    const m = await ws.next(5000).catch((e) => ({ type: `closed: ${e.message}` }));
    return m.type;
  } finally {
    await ws.close();
  }
}

async function crdtValue(node, rw) {
  const r = await get(node, '/v1/crdt/routes_c', { authorization: `Bearer ${rw}` });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text).value;
}

describe('every route of the table needs the token its policy names', { timeout: 180000 }, () => {
  let node;
  let dir;
  let rw;
  let ro;
  before(async () => {
    dir = tmpDir('edgelite-routes-');
    const keys = makeKeyPair();
    node = await startNode({ args: ['--auth-jwt-key', writeKey(dir, 'jwt.pem', keys)] });
    rw = signJwt(keys.privateKey, { a: 'rw', exp: nowS() + 3600 });
    ro = signJwt(keys.privateKey, { a: 'ro', exp: nowS() + 3600 });
    const auth = { authorization: `Bearer ${rw}` };
    const r = await pipeline(`${node.url}/v2/pipeline`, {
      requests: [{ type: 'execute', stmt: stmt('CREATE TABLE routes_t (x)') }, { type: 'close' }],
    }, auth);
    assert.equal(r.status, 200, r.text);
    const c = await rawHttp(node.port, httpRequest('POST', '/v1/crdt/routes_c', {
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'g-counter', op: 'increment', amount: 1 }),
    }));
    assert.equal(c.status, 200, c.text);
  });
  after(async () => {
    if (node) await node.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the list covers the table (unit/test_api_routes checks the rows one by one)', () => {
    assert.ok(ROUTES.length >= 19);
    const pub = ROUTES.filter((r) => r.auth === 'none').map((r) => r.path).sort();
    assert.deepEqual(pub, ['/health', '/v2', '/v3', '/v3-protobuf', '/version']);
  });

  for (const [i, r] of ROUTES.entries()) {
    const name = `#${i} ${r.method} ${r.match} '${r.path}' (${r.auth}) via ${r.probe.method} ${r.probe.path}`;
    test(name, T, async () => {
      const before = await crdtValue(node, rw);
      const tokens = { none: null, ro: () => ro, rw: () => rw };
      for (const [who, tokf] of Object.entries(tokens)) {
        const tok = tokf === null ? null : tokf();
        if (r.auth === 'hello') {
          const t = await hello(node, tok);
          assert.equal(t, tok === null ? 'hello_error' : 'hello_ok', `${name} with ${who}`);
          continue;
        }
        const res = await probeHttp(node, r.probe, tok);
        const what = `${name} with ${who} token: ${res.status} ${res.text.slice(0, 200)}`;
        assert.ok(res.status >= 200, `no answer: ${what}`);
        switch (r.auth) {
          case 'none':
            assert.equal(res.status, 200, what);
            break;
          case 'read':
          case 'metrics':
          case 'status':
            if (who === 'none') assert.equal(res.status, 401, what);
            else assert.ok(res.status !== 401 && res.status !== 403, what);
            break;
          case 'write':
            if (who === 'none') assert.equal(res.status, 401, what);
            else if (who === 'ro') assert.equal(res.status, 403, what);
            else assert.ok(res.status !== 401 && res.status !== 403, what);
            break;
          case 'cluster':
          case 'peer':
            // Only the cluster secret (or the peer handshake) opens these; no JWT does. This node is no
            // cluster, so they answer 404; repl_bad_peer and repl_snapshot test the secret itself.
            assert.ok(res.status >= 400 && res.status !== 101, what);
            break;
          default:
            assert.fail(`unknown policy ${r.auth}`);
        }
        if (who !== 'rw') {
          assert.equal(await crdtValue(node, rw), before, `${what}: changed the CRDT`);
        }
      }
    });
  }

  test('a read-only token writes nothing through a pipeline, http and ws', T, async () => {
    const r = await pipeline(`${node.url}/v2/pipeline`, {
      requests: [{ type: 'execute', stmt: stmt('INSERT INTO routes_t VALUES (1)') }, { type: 'close' }],
    }, { authorization: `Bearer ${ro}` });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.results[0].type, 'error', r.text);
    const ws = await openHranaWs(node.wsUrl, ['hrana2']);
    try {
      ws.send({ type: 'hello', jwt: ro });
      assert.equal((await ws.next()).type, 'hello_ok');
      await ws.request({ type: 'open_stream', stream_id: 1 });
      const w = await ws.request({ type: 'execute', stream_id: 1, stmt: stmt('INSERT INTO routes_t VALUES (2)') });
      assert.equal(w.type, 'response_error', JSON.stringify(w));
    } finally {
      await ws.close();
    }
    const n = await pipeline(`${node.url}/v2/pipeline`, {
      requests: [{ type: 'execute', stmt: stmt('SELECT count(*) FROM routes_t') }, { type: 'close' }],
    }, { authorization: `Bearer ${rw}` });
    assert.equal(n.json.results[0].response.result.rows[0][0].value, '0');
  });
});

describe('auth.public_metrics: true opens /metrics only', { timeout: 60000 }, () => {
  let node;
  let dir;
  before(async () => {
    dir = tmpDir('edgelite-pubmetrics-');
    const keys = makeKeyPair();
    const keyFile = writeKey(dir, 'jwt.pem', keys);
    const cfg = path.join(dir, 'edge.yaml');
    fs.writeFileSync(cfg, `regions:\n  - id: solo\nauth:\n  jwt_public_key_file: ${keyFile}\n  public_metrics: true\n`);
    node = await startNode({ args: ['--config', cfg] });
  });
  after(async () => {
    if (node) await node.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('/metrics answers without a token, /v1/status and pipelines still need one', T, async () => {
    const m = await get(node, '/metrics');
    assert.equal(m.status, 200, m.text);
    assert.match(m.text, /edgelite_/);
    assert.equal((await get(node, '/v1/status')).status, 401);
    assert.equal((await get(node, '/v1/conflicts')).status, 401);
    const p = await pipeline(`${node.url}/v2/pipeline`, { requests: [{ type: 'close' }] });
    assert.equal(p.status, 401);
  });
});

describe('on a region of a cluster, the cluster routes open with the secret only', { timeout: 60000 }, () => {
  let node;
  let dir;
  let rw;
  const secret = 'routes-test-secret';
  before(async () => {
    dir = tmpDir('edgelite-routes-cluster-');
    const keys = makeKeyPair();
    const keyFile = writeKey(dir, 'jwt.pem', keys);
    const cfg = path.join(dir, 'edge.yaml');
    // Region b is never started: its port refuses, so a starts empty.
    fs.writeFileSync(cfg, `cluster: { name: routes, secret: ${secret} }\nregions:\n  - id: a\n    url: http://127.0.0.1:1\n`
      + `  - id: b\n    url: http://127.0.0.1:9\nauth:\n  jwt_public_key_file: ${keyFile}\n`);
    node = await startNode({ args: ['--config', cfg, '--region', 'a'] });
    rw = signJwt(keys.privateKey, { a: 'rw', exp: nowS() + 3600 });
  });
  after(async () => {
    if (node) await node.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  // Another region's challenge-response (repl/proto.h, "HTTP requests between regions"), as b would send it.
  async function clusterAuth(method, p, region = 'b') {
    const z = Buffer.from([0]);
    const key = crypto.createHash('sha256').update(secret).digest();
    const cnonce = crypto.randomBytes(32);
    const ch = await get(node, `/v1/cluster/challenge?cnonce=${cnonce.toString('hex')}`);
    assert.equal(ch.status, 200);
    const ns = Buffer.from(JSON.parse(ch.text).nonce, 'hex');
    const mac = crypto.createHmac('sha256', key).update(Buffer.concat([Buffer.from('edgelite-http1 request'), z, ns,
      cnonce, Buffer.from('routes'), z, Buffer.from(region), z, Buffer.from(method), z, Buffer.from(p), z])).digest();
    return `region=${region} nonce=${ns.toString('hex')} cnonce=${cnonce.toString('hex')} mac=${mac.toString('hex')}`;
  }

  test('/v1/snapshot: another region\'s MAC, not a JWT nor the secret; /v1/status: a JWT or the MAC, never the secret', T,
    async () => {
    const snap = (headers) => rawHttp(node.port, httpRequest('GET', '/v1/snapshot', { headers }), { timeoutMs: 10000 });
    assert.equal((await snap({})).status, 401);
    assert.equal((await snap({ Authorization: `Bearer ${rw}` })).status, 401);
    assert.equal((await snap({ 'X-Edge-Cluster-Secret': 'wrong' })).status, 401);
    // the secret itself no longer opens it: a client would have had to send it
    assert.equal((await snap({ 'X-Edge-Cluster-Secret': secret })).status, 401);
    const ok = await snap({ 'X-Edge-Cluster-Auth': await clusterAuth('GET', '/v1/snapshot') });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.subarray(0, 15).toString('latin1'), 'SQLite format 3');
    assert.equal((await get(node, '/v1/status', { 'x-edge-cluster-auth': await clusterAuth('GET', '/v1/status') }))
      .status, 200);
    assert.equal((await get(node, '/v1/status', { 'x-edge-cluster-auth': await clusterAuth('GET', '/v1/snapshot') }))
      .status, 401);
    assert.equal((await get(node, '/v1/conflicts', { 'x-edge-cluster-auth': await clusterAuth('GET', '/v1/conflicts') }))
      .status, 401);

    assert.equal((await get(node, '/v1/status')).status, 401);
    assert.equal((await get(node, '/v1/status', { 'x-edge-cluster-secret': 'wrong' })).status, 401);
    // the secret would have travelled: refused, even beside a valid token
    assert.equal((await get(node, '/v1/status', { 'x-edge-cluster-secret': secret })).status, 401);
    assert.equal((await get(node, '/v1/status', { 'x-edge-cluster-secret': secret, authorization: `Bearer ${rw}` }))
      .status, 401);
    assert.equal((await get(node, '/v1/status', { authorization: `Bearer ${rw}` })).status, 200);
    // The secret opens nothing else.
    assert.equal((await get(node, '/v1/conflicts', { 'x-edge-cluster-secret': secret })).status, 401);
    assert.equal((await get(node, '/metrics', { 'x-edge-cluster-secret': secret })).status, 401);
  });
});
