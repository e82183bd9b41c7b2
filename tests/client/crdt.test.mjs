// SPDX-License-Identifier: MIT
// CRDTs through the real node: every type and operation over /v1/crdt, persistence across
// SIGTERM and SIGKILL restarts, two regions converging through /merge, refused input that
// changes nothing, and the /metrics counters. Node built-ins only, so this suite runs
// without `npm install`.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const EDGE_BIN = process.env.EDGE_BIN ? path.resolve(process.env.EDGE_BIN) : path.resolve(here, '..', '..', 'build', 'edgelite');
const READY_RE = /edgelite: listening on (http:\/\/127\.0\.0\.1:(\d+))/;
const T = { timeout: 20000 };

const procs = new Set();
const dirs = [];
process.on('exit', () => {
  for (const p of procs) {
    try { p.kill('SIGKILL'); } catch { /* gone */ }
  }
});

function freshDir() {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-crdt-'));
  dirs.push(d);
  return d;
}

function waitExit(proc, ms) {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode, timedOut: false });
  }
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve({ timedOut: true }), ms);
    proc.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, timedOut: false });
    });
  });
}

/** Start `edgelite serve` on an ephemeral port; resolves once it prints its address. */
function start(dataDir, region) {
  const proc = spawn(EDGE_BIN, ['serve', '--listen', '127.0.0.1:0', '--data', dataDir, '--region', region], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.add(proc);
  proc.once('exit', () => procs.delete(proc));
  let out = '';
  let err = '';
  proc.stderr.on('data', (d) => { err = (err + d).slice(-4000); });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`edgelite did not become ready in 10 s; stderr:\n${err}`));
    }, 10000);
    proc.once('error', (e) => { clearTimeout(t); reject(e); });
    proc.once('exit', (code, sig) => {
      clearTimeout(t);
      reject(new Error(`edgelite exited early (${code ?? sig}); stderr:\n${err}`));
    });
    proc.stdout.on('data', (d) => {
      out += d;
      const m = READY_RE.exec(out);
      if (m && !out.startsWith('READY')) {
        out = 'READY';
        clearTimeout(t);
        proc.removeAllListeners('exit');
        proc.once('exit', () => procs.delete(proc));
        resolve({
          proc, url: m[1], dataDir, region,
          stderr: () => err,
          async stop(sig = 'SIGTERM', ms = 10000) {
            proc.kill(sig);
            const r = await waitExit(proc, ms);
            if (r.timedOut) proc.kill('SIGKILL');
            return r;
          },
        });
      }
    });
  });
}

const running = [];
async function node(dataDir, region) {
  const n = await start(dataDir ?? freshDir(), region);
  running.push(n);
  return n;
}

async function call(n, method, p, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(n.url + p, init);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

async function op(n, name, body) {
  const r = await call(n, 'POST', `/v1/crdt/${name}`, body);
  assert.equal(r.status, 200, `${JSON.stringify(body)} -> ${r.status} ${r.text}`);
  assert.equal(r.json.name, name);
  assert.equal(r.json.type, body.type);
  assert.deepEqual(Object.keys(r.json).sort(), ['name', 'type', 'value']);
  return r.json.value;
}

async function get(n, name) {
  const r = await call(n, 'GET', `/v1/crdt/${name}`);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

async function metrics(n) {
  const text = await (await fetch(`${n.url}/metrics`)).text();
  const v = (k) => {
    const m = new RegExp(`^${k} (\\d+)$`, 'm').exec(text);
    assert.ok(m, `${k} missing from /metrics`);
    return Number(m[1]);
  };
  return { ops: v('edgelite_crdt_ops_total'), merges: v('edgelite_crdt_merges_total'), conflicts: v('edgelite_crdt_conflicts_total') };
}

const typeByte = { 'g-counter': 1, 'pn-counter': 2, 'or-set': 3, 'lww-register': 4 };

function checkFull(o, name, type) {
  assert.deepEqual(Object.keys(o).sort(), ['concurrent', 'conflicts', 'merges', 'name', 'regions', 'state', 'type', 'value', 'vclock']);
  assert.equal(o.name, name);
  assert.equal(o.type, type);
  assert.equal(typeof o.conflicts, 'number');
  const raw = Buffer.from(o.state, 'base64');
  assert.equal(raw.toString('base64'), o.state, 'state is canonical base64');
  assert.deepEqual([...raw.subarray(0, 3)], [0xec, 0x01, typeByte[type]], 'magic, version, type');
}

describe('crdt over HTTP', { timeout: 60000 }, () => {
  after(async () => {
    for (const n of running) await n.stop('SIGKILL', 5000);
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  test('every type and operation, GET, list, 404/405', T, async () => {
    const n = await node(undefined, 'us-west');
    const m0 = await metrics(n);

    assert.equal(await op(n, 'hits', { type: 'g-counter', op: 'increment', amount: 5 }), 5);
    assert.equal(await op(n, 'hits', { type: 'g-counter', op: 'increment', amount: 1 }), 6);

    assert.equal(await op(n, 'stock', { type: 'pn-counter', op: 'increment', amount: 3 }), 3);
    assert.equal(await op(n, 'stock', { type: 'pn-counter', op: 'decrement', amount: 10 }), -7);

    assert.deepEqual(await op(n, 'tags', { type: 'or-set', op: 'add', element: 'b' }), ['b']);
    assert.deepEqual(await op(n, 'tags', { type: 'or-set', op: 'add', element: { y: 1, x: [2, 3] } }), ['b', { x: [2, 3], y: 1 }]);
    // Canonical JSON: the same object with its keys in another order is the same element.
    assert.deepEqual(await op(n, 'tags', { type: 'or-set', op: 'add', element: { x: [2, 3], y: 1 } }), ['b', { x: [2, 3], y: 1 }]);
    // Bytewise order of the canonical text: '"b"' < '7' < '{...}'.
    assert.deepEqual(await op(n, 'tags', { type: 'or-set', op: 'add', element: 7 }), ['b', 7, { x: [2, 3], y: 1 }]);
    assert.deepEqual(await op(n, 'tags', { type: 'or-set', op: 'remove', element: 'b' }), [7, { x: [2, 3], y: 1 }]);
    assert.deepEqual(await op(n, 'tags', { type: 'or-set', op: 'remove', element: 'absent' }), [7, { x: [2, 3], y: 1 }]);

    assert.deepEqual(await op(n, 'cfg', { type: 'lww-register', op: 'set', value: { mode: 'a' } }), { mode: 'a' });
    assert.equal(await op(n, 'cfg', { type: 'lww-register', op: 'set', value: 'later wins' }), 'later wins');
    assert.equal(await op(n, 'nul', { type: 'lww-register', op: 'set', value: null }), null);

    const hits = await get(n, 'hits');
    checkFull(hits, 'hits', 'g-counter');
    assert.equal(hits.value, 6);
    assert.deepEqual(hits.vclock, { 'us-west': 2 });
    assert.equal(hits.conflicts, 0);
    const stock = await get(n, 'stock');
    checkFull(stock, 'stock', 'pn-counter');
    assert.equal(stock.value, -7);
    const tags = await get(n, 'tags');
    checkFull(tags, 'tags', 'or-set');
    assert.deepEqual(tags.value, [7, { x: [2, 3], y: 1 }]);
    assert.deepEqual(tags.vclock, { 'us-west': 6 });
    const cfg = await get(n, 'cfg');
    checkFull(cfg, 'cfg', 'lww-register');
    assert.equal(cfg.value, 'later wins');

    const list = await call(n, 'GET', '/v1/crdt');
    assert.equal(list.status, 200);
    assert.deepEqual(list.json, {
      objects: [
        { name: 'cfg', type: 'lww-register', value: 'later wins' },
        { name: 'hits', type: 'g-counter', value: 6 },
        { name: 'nul', type: 'lww-register', value: null },
        { name: 'stock', type: 'pn-counter', value: -7 },
        { name: 'tags', type: 'or-set', value: [7, { x: [2, 3], y: 1 }] },
      ],
    });

    const missing = await call(n, 'GET', '/v1/crdt/nope');
    assert.equal(missing.status, 404);
    assert.equal(missing.json.code, 'CRDT_NOT_FOUND');
    assert.equal(typeof missing.json.error, 'string');
    assert.equal((await call(n, 'GET', '/v1/crdt/hits/other')).status, 404);
    assert.equal((await call(n, 'DELETE', '/v1/crdt/hits')).status, 405);
    assert.equal((await call(n, 'GET', '/v1/crdt/bad%20name')).status, 400);

    const m1 = await metrics(n);
    assert.equal(m1.ops - m0.ops, 13, 'one op counted per acknowledged update');
    assert.equal(m1.merges, m0.merges);
  });

  test('refused input returns 400/409 and changes nothing', T, async () => {
    const n = await node(undefined, 'us-west');
    await op(n, 'g', { type: 'g-counter', op: 'increment', amount: 1 });
    await op(n, 'p', { type: 'pn-counter', op: 'decrement', amount: 1 });
    await op(n, 's', { type: 'or-set', op: 'add', element: 'a' });
    await op(n, 'r', { type: 'lww-register', op: 'set', value: 1 });
    // 2 + (2^63 - 1) = 2^63 + 1: one more 2^63 - 1 would pass UINT64_MAX. JSON numbers
    // beyond int64 are refused by the parser, so amounts are written as raw text.
    const maxI64 = '9223372036854775807';
    await op(n, 'big', { type: 'g-counter', op: 'increment', amount: 2 });
    let r = await call(n, 'POST', '/v1/crdt/big', `{"type":"g-counter","op":"increment","amount":${maxI64}}`);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '{"name":"big","type":"g-counter","value":9223372036854775809}');
    await op(n, 'pmin', { type: 'pn-counter', op: 'decrement', amount: 1 });
    r = await call(n, 'POST', '/v1/crdt/pmin', `{"type":"pn-counter","op":"decrement","amount":${maxI64}}`);
    assert.equal(r.status, 200, r.text);
    const gState = (await get(n, 'g')).state;
    const serverOrsetState = (await get(n, 's')).state;
    const gcounterStateB64 = gState;

    const cases = [
      ['g', { type: 'g-counter', op: 'decrement', amount: 1 }, 400, 'CRDT_WRONG_TYPE'],
      ['g', { type: 'g-counter', op: 'add', element: 1 }, 400, 'CRDT_WRONG_TYPE'],
      ['s', { type: 'or-set', op: 'set', value: 1 }, 400, 'CRDT_WRONG_TYPE'],
      ['r', { type: 'lww-register', op: 'increment', amount: 1 }, 400, 'CRDT_WRONG_TYPE'],
      ['g', { type: 'g-counter', op: 'explode', amount: 1 }, 400, 'CRDT_BAD_OP'],
      ['g', { type: 'h-counter', op: 'increment', amount: 1 }, 400, 'CRDT_UNKNOWN_TYPE'],
      ['new1', { type: 'h-counter', op: 'increment', amount: 1 }, 400, 'CRDT_UNKNOWN_TYPE'],
      ['g', { type: 'g-counter', op: 'increment', amount: -1 }, 400, 'CRDT_BAD_AMOUNT'],
      ['p', { type: 'pn-counter', op: 'decrement', amount: -5 }, 400, 'CRDT_BAD_AMOUNT'],
      ['g', { type: 'g-counter', op: 'increment', amount: 0 }, 400, 'CRDT_BAD_AMOUNT'],
      ['g', { type: 'g-counter', op: 'increment', amount: 1.5 }, 400, 'CRDT_BAD_AMOUNT'],
      ['g', { type: 'g-counter', op: 'increment', amount: '1' }, 400, 'CRDT_BAD_AMOUNT'],
      ['g', { type: 'g-counter', op: 'increment' }, 400, 'CRDT_MISSING_FIELD'],
      ['g', { op: 'increment', amount: 1 }, 400, 'CRDT_MISSING_FIELD'],
      ['g', { type: 'g-counter', amount: 1 }, 400, 'CRDT_MISSING_FIELD'],
      ['s', { type: 'or-set', op: 'add' }, 400, 'CRDT_MISSING_FIELD'],
      ['s', { type: 'or-set', op: 'remove' }, 400, 'CRDT_MISSING_FIELD'],
      ['r', { type: 'lww-register', op: 'set' }, 400, 'CRDT_MISSING_FIELD'],
      ['new2', { type: 'or-set', op: 'add' }, 400, 'CRDT_MISSING_FIELD'],
      ['g', { type: 'or-set', op: 'add', element: 1 }, 409, 'CRDT_TYPE_MISMATCH'],
      ['s', { type: 'g-counter', op: 'increment', amount: 1 }, 409, 'CRDT_TYPE_MISMATCH'],
      ['g/merge', { type: 'g-counter' }, 400, 'CRDT_MISSING_FIELD'],
      ['g/merge', { type: 'g-counter', state: '!!not base64!!' }, 400, 'CRDT_BAD_STATE'],
      ['g/merge', { type: 'g-counter', state: 'AAAA' }, 400, 'CRDT_BAD_STATE'],
      ['g/merge', { type: 'g-counter', state: Buffer.from([0xec, 0x01, 0x01, 0x05]).toString('base64') }, 400, 'CRDT_BAD_STATE'],
      ['g/merge', { type: 'g-counter', state: gcounterStateB64.slice(0, -4) }, 400, 'CRDT_BAD_STATE'],
      ['g/merge', { type: 'g-counter', state: Buffer.concat([Buffer.from(gcounterStateB64, 'base64'), Buffer.from([0])]).toString('base64') }, 400, 'CRDT_BAD_STATE'],
      ['g/merge', { type: 'g-counter', state: serverOrsetState }, 400, 'CRDT_BAD_STATE'],
      ['g/merge', { type: 'h-counter', state: gcounterStateB64 }, 400, 'CRDT_UNKNOWN_TYPE'],
      ['s/merge', { type: 'g-counter', state: gcounterStateB64 }, 409, 'CRDT_TYPE_MISMATCH'],
    ];
    const raws = [
      ['g', '{"type":"g-counter","op":"increment","amount":1', 400, 'CRDT_BAD_JSON'],
      ['g', 'not json at all', 400, 'CRDT_BAD_JSON'],
      ['g', '[1,2,3]', 400, 'CRDT_BAD_JSON'],
      ['g', '', 400, 'CRDT_BAD_JSON'],
      // Beyond int64: jansson refuses the number itself.
      ['big', '{"type":"g-counter","op":"increment","amount":18446744073709551615}', 400, 'CRDT_BAD_JSON'],
      ['g/merge', '{"type":"g-counter","state":', 400, 'CRDT_BAD_JSON'],
      ['big', `{"type":"g-counter","op":"increment","amount":${maxI64}}`, 409, 'CRDT_OVERFLOW'],
      ['pmin', '{"type":"pn-counter","op":"decrement","amount":1}', 409, 'CRDT_OVERFLOW'],
    ];
    const names = ['g', 'p', 's', 'r', 'big', 'pmin'];
    const snapshot = async () => Object.fromEntries(await Promise.all(names.map(async (k) => [k, await get(n, k)])));
    const before = await snapshot();
    const m0 = await metrics(n);
    for (const [name, body, status, code] of [...cases, ...raws]) {
      r = await call(n, 'POST', `/v1/crdt/${name}`, body);
      const what = `${name} ${typeof body === 'string' ? body : JSON.stringify(body)}`;
      assert.equal(r.status, status, `${what} -> ${r.status} ${r.text}`);
      assert.equal(r.json?.code, code, `${what} -> ${r.text}`);
      assert.equal(typeof r.json.error, 'string');
    }
    assert.deepEqual(await snapshot(), before, 'refused requests changed an object');
    for (const name of ['new1', 'new2']) {
      assert.equal((await call(n, 'GET', `/v1/crdt/${name}`)).status, 404, `${name} was created by a refused request`);
    }
    const m1 = await metrics(n);
    assert.deepEqual(m1, m0, 'refused requests moved the CRDT counters');
  });

  test("the seed's call shape {type, op, amount, node_id}: own region applies, another is a 400 that changes nothing", T, async () => {
    const n = await node(undefined, 'us-west');
    assert.equal(await op(n, 'views', { type: 'pn-counter', op: 'increment', amount: 5, node_id: 'us-west' }), 5);
    assert.equal(await op(n, 'views', { type: 'pn-counter', op: 'decrement', amount: 2 }), 3);
    assert.equal(await op(n, 'views', { type: 'pn-counter', op: 'increment', amount: 1, node_id: null }), 4);
    assert.deepEqual(await op(n, 'tags', { type: 'or-set', op: 'add', element: 'x', node_id: 'us-west' }), ['x']);
    const before = { views: await get(n, 'views'), tags: await get(n, 'tags') };
    assert.deepEqual(before.views.vclock, { 'us-west': 3 });
    const m0 = await metrics(n);
    const refused = [
      ['views', { type: 'pn-counter', op: 'increment', amount: 1, node_id: 'eu-central' }],
      ['views', { type: 'pn-counter', op: 'decrement', amount: 1, node_id: 'us-west ' }],
      ['views', { type: 'pn-counter', op: 'increment', amount: 1, node_id: 7 }],
      ['tags', { type: 'or-set', op: 'add', element: 'y', node_id: 'ap-south' }],
      ['fresh', { type: 'g-counter', op: 'increment', amount: 1, node_id: 'eu-central' }],
    ];
    for (const [name, body] of refused) {
      const r = await call(n, 'POST', `/v1/crdt/${name}`, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status} ${r.text}`);
      assert.equal(r.json?.code, 'CRDT_BAD_NODE_ID', r.text);
      assert.match(r.json.error, /node_id/);
      if (typeof body.node_id === 'string') {
        assert.match(r.json.error, /us-west/, 'the error names the region that would be accepted');
      }
    }
    assert.deepEqual({ views: await get(n, 'views'), tags: await get(n, 'tags') }, before, 'a refused node_id changed an object');
    assert.equal((await call(n, 'GET', '/v1/crdt/fresh')).status, 404, 'a refused node_id created an object');
    assert.deepEqual(await metrics(n), m0, 'a refused node_id moved the CRDT counters');
  });

  test('SIGTERM then restart on the same directory keeps values and vclocks', T, async () => {
    const dir = freshDir();
    let n = await node(dir, 'eu-central');
    await op(n, 'c', { type: 'g-counter', op: 'increment', amount: 40 });
    await op(n, 'c', { type: 'g-counter', op: 'increment', amount: 2 });
    await op(n, 'pn', { type: 'pn-counter', op: 'decrement', amount: 9 });
    await op(n, 'set', { type: 'or-set', op: 'add', element: 'x' });
    await op(n, 'set', { type: 'or-set', op: 'add', element: 'y' });
    await op(n, 'set', { type: 'or-set', op: 'remove', element: 'x' });
    await op(n, 'reg', { type: 'lww-register', op: 'set', value: { v: 1 } });
    const names = ['c', 'pn', 'set', 'reg'];
    const before = await Promise.all(names.map((k) => get(n, k)));
    const r = await n.stop('SIGTERM');
    assert.equal(r.timedOut, false);
    assert.equal(r.code, 0, n.stderr());
    n = await node(dir, 'eu-central');
    const afterRestart = await Promise.all(names.map((k) => get(n, k)));
    assert.deepEqual(afterRestart, before);
    assert.equal(afterRestart[0].value, 42);
    assert.deepEqual(afterRestart[0].vclock, { 'eu-central': 2 });
    assert.deepEqual(afterRestart[2].value, ['y']);
    // The restarted node keeps counting from the persisted clock.
    await op(n, 'c', { type: 'g-counter', op: 'increment', amount: 1 });
    assert.deepEqual((await get(n, 'c')).vclock, { 'eu-central': 3 });
  });

  test('SIGKILL loses no acknowledged update', T, async () => {
    const dir = freshDir();
    let n = await node(dir, 'ap-south');
    const N = 40;
    // Concurrent requests: each acknowledgement must be durable, whatever the batching.
    await Promise.all(Array.from({ length: N }, (_, i) => Promise.all([
      op(n, 'k', { type: 'g-counter', op: 'increment', amount: i + 1 }),
      op(n, 'ks', { type: 'or-set', op: 'add', element: `e${i}` }),
      op(n, 'kp', { type: 'pn-counter', op: i % 2 ? 'increment' : 'decrement', amount: 1 }),
    ])));
    await op(n, 'kr', { type: 'lww-register', op: 'set', value: 'last' });
    const r = await n.stop('SIGKILL');
    assert.equal(r.signal, 'SIGKILL');
    n = await node(dir, 'ap-south');
    const k = await get(n, 'k');
    assert.equal(k.value, (N * (N + 1)) / 2);
    assert.deepEqual(k.vclock, { 'ap-south': N });
    const ks = await get(n, 'ks');
    assert.deepEqual(new Set(ks.value), new Set(Array.from({ length: N }, (_, i) => `e${i}`)));
    assert.equal((await get(n, 'kp')).value, 0);
    assert.equal((await get(n, 'kr')).value, 'last');
  });

  test('concurrent requests, batched by the writer: each answers its own step, refusals change nothing', { timeout: 60000 }, async () => {
    const n = await node(undefined, 'eu-north');
    const N = 300;
    const inc = { type: 'g-counter', op: 'increment', amount: 1 };
    assert.equal(await op(n, 'b', inc), 1); // b exists (as a g-counter) before the burst
    const reqs = [];
    for (let i = 0; i < N; i++) {
      reqs.push(call(n, 'POST', '/v1/crdt/b', inc).then((r) => ({ kind: 'inc', r })));
      if (i % 10 === 5) {
        reqs.push(call(n, 'GET', '/v1/crdt/b').then((r) => ({ kind: 'get', r })));
        reqs.push(call(n, 'POST', '/v1/crdt/b', { type: 'pn-counter', op: 'increment', amount: 1 }).then((r) => ({ kind: 'clash', r })));
      }
      // the first of these to run creates 'mixed'; the other type is refused from then on
      if (i % 3 === 0) {
        const type = i % 2 ? 'pn-counter' : 'g-counter';
        reqs.push(call(n, 'POST', '/v1/crdt/mixed', { type, op: 'increment', amount: 1 }).then((r) => ({ kind: type, r })));
      }
    }
    const res = await Promise.all(reqs);
    const incs = res.filter((x) => x.kind === 'inc');
    for (const { r } of incs) assert.equal(r.status, 200, r.text);
    // one increment of 1 each: the answers are 2..N+1, each once
    assert.deepEqual(incs.map(({ r }) => r.json.value).sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i + 2));
    for (const { r } of res.filter((x) => x.kind === 'get')) {
      assert.equal(r.status, 200, r.text);
      assert.ok(r.json.value >= 1 && r.json.value <= N + 1, r.text);
    }
    for (const { r } of res.filter((x) => x.kind === 'clash')) {
      assert.equal(r.status, 409, r.text);
      assert.equal(r.json.code, 'CRDT_TYPE_MISMATCH');
    }
    const b = await get(n, 'b');
    assert.equal(b.value, N + 1);
    assert.deepEqual(b.vclock, { 'eu-north': N + 1 });
    const g = res.filter((x) => x.kind === 'g-counter'), p = res.filter((x) => x.kind === 'pn-counter');
    const won = (await get(n, 'mixed')).type === 'g-counter' ? g : p, lost = won === g ? p : g;
    for (const { r } of won) assert.equal(r.status, 200, r.text);
    for (const { r } of lost) assert.equal(r.status, 409, r.text);
    assert.deepEqual(won.map(({ r }) => r.json.value).sort((a, b) => a - b), Array.from({ length: won.length }, (_, i) => i + 1));
    assert.equal((await get(n, 'mixed')).value, won.length);
    assert.equal((await metrics(n)).ops, N + 1 + won.length);
  });

  test('two regions converge through /merge, conflicts counted', T, async () => {
    const a = await node(undefined, 'us-west');
    const b = await node(undefined, 'eu-central');
    await op(a, 'cnt', { type: 'g-counter', op: 'increment', amount: 5 });
    await op(b, 'cnt', { type: 'g-counter', op: 'increment', amount: 7 });
    await op(a, 'pn', { type: 'pn-counter', op: 'increment', amount: 10 });
    await op(b, 'pn', { type: 'pn-counter', op: 'decrement', amount: 4 });
    // Both add x; b then removes it; a's concurrent add must win.
    await op(a, 'set', { type: 'or-set', op: 'add', element: 'x' });
    await op(a, 'set', { type: 'or-set', op: 'add', element: 'onlyA' });
    await op(b, 'set', { type: 'or-set', op: 'add', element: 'x' });
    await op(b, 'set', { type: 'or-set', op: 'remove', element: 'x' });
    await op(b, 'set', { type: 'or-set', op: 'add', element: 'onlyB' });
    await op(a, 'reg', { type: 'lww-register', op: 'set', value: 'from a' });
    await op(b, 'reg', { type: 'lww-register', op: 'set', value: 'from b' });
    const names = ['cnt', 'pn', 'set', 'reg'];
    const types = { cnt: 'g-counter', pn: 'pn-counter', set: 'or-set', reg: 'lww-register' };
    const ma0 = await metrics(a);
    const mb0 = await metrics(b);
    for (const k of names) {
      const sa = await get(a, k);
      const r1 = await call(b, 'POST', `/v1/crdt/${k}/merge`, { type: types[k], state: sa.state });
      assert.equal(r1.status, 200, r1.text);
      checkFull(r1.json, k, types[k]);
      assert.equal(r1.json.conflicts, 1, `${k}: concurrent histories count one conflict on b`);
      const r2 = await call(a, 'POST', `/v1/crdt/${k}/merge`, { type: types[k], state: r1.json.state });
      assert.equal(r2.status, 200, r2.text);
      assert.equal(r2.json.conflicts, 0, `${k}: b's merged state dominates a's`);
      const fa = await get(a, k);
      const fb = await get(b, k);
      assert.deepEqual(fa.value, fb.value, `${k}: values differ`);
      assert.equal(fa.state, fb.state, `${k}: states differ`);
      assert.deepEqual(fa.vclock, fb.vclock);
      assert.deepEqual(Object.keys(fa.vclock).sort(), ['eu-central', 'us-west']);
      // Idempotent: merging the same state again changes nothing and is no conflict.
      const r3 = await call(b, 'POST', `/v1/crdt/${k}/merge`, { type: types[k], state: sa.state });
      assert.equal(r3.json.state, fb.state);
      assert.equal(r3.json.conflicts, 1);
    }
    assert.equal((await get(a, 'cnt')).value, 12);
    assert.equal((await get(a, 'pn')).value, 6);
    assert.deepEqual((await get(a, 'set')).value, ['onlyA', 'onlyB', 'x']);
    const reg = (await get(a, 'reg')).value;
    assert.ok(reg === 'from a' || reg === 'from b');
    // Merging into an object b does not have yet creates it.
    const sa = await get(a, 'cnt');
    const r4 = await call(b, 'POST', '/v1/crdt/copy/merge', { type: 'g-counter', state: sa.state });
    assert.equal(r4.status, 200, r4.text);
    assert.equal(r4.json.value, 12);
    const ma1 = await metrics(a);
    const mb1 = await metrics(b);
    assert.equal(ma1.merges - ma0.merges, 4);
    assert.equal(ma1.conflicts - ma0.conflicts, 0);
    assert.equal(mb1.merges - mb0.merges, 9);
    assert.equal(mb1.conflicts - mb0.conflicts, 4);
    assert.equal(mb1.ops, mb0.ops, 'merges are not counted as ops');
  });
});
