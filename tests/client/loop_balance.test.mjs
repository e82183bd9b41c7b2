// SPDX-License-Identifier: MIT
// The node's event loops share the work, and the writes of one loop iteration reach the writer together:
//  - connections opened in one burst (a pool of keep-alive clients starting) are spread over the loops; each
//    listens on the same socket and the first to wake would otherwise accept the whole burst and do all the
//    work while the others idle. A loop that accepts while it holds two more than another hands the socket
//    over; the handed connections serve requests like the others (plain HTTP, and TLS);
//  - session writes gathered in one iteration and queued as one group: a burst of PUTs to one session from
//    many connections commits each exactly once (every version from base+1 to base+N answered once, the
//    last one stored); beyond limits.writer_queue they are refused 503 WRITER_BUSY and change nothing.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';

import { createClient } from '@libsql/client';

import { get, sleep, startNode, tmpDir } from './lib/node.mjs';
import { sess, writeKeyFile } from './lib/sessions.mjs';
import { makeCa, makeServerCert, until } from './lib/tls.mjs';

function loopConns(text) {
  const out = [];
  for (const m of text.matchAll(/^edgelite_loop_connections\{loop="(\d+)"\} (-?\d+)$/gm)) out[Number(m[1])] = Number(m[2]);
  return out;
}

function metricOf(text, name) {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

// n requests at once through a keep-alive agent of n sockets: the first round opens n connections in one
// burst, later rounds reuse them. Resolves to the answers' { status, body }.
function burst(mod, agent, url, n, extra = {}) {
  return Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const req = mod.get(url, { agent, ...extra }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.setTimeout(15000, () => req.destroy(new Error('timed out')));
  })));
}

describe('loops: connections of a burst are spread', { timeout: 60000 }, () => {
  let node;
  before(async () => { node = await startNode({ args: ['--threads', '3', '--log-level', 'warn'] }); });
  after(async () => { if (node) await node.destroy(); });

  test('30 connections opened at once: 10 per loop, each serving requests', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 30 });
    try {
      const first = await burst(http, agent, `${node.url}/health`, 30);
      for (const r of first) assert.equal(r.status, 200, r.body);
      const m = await get(node, '/metrics'); // one more connection, closed after
      const per = loopConns(m.text);
      assert.equal(per.length, 3, m.text);
      assert.equal(per.reduce((a, b) => a + b, 0), 31, JSON.stringify(per));
      assert.ok(Math.max(...per) - Math.min(...per) <= 2, `connections per loop ${JSON.stringify(per)}`);
      // Every kept connection, handed over or not, serves its next requests.
      for (let round = 0; round < 3; round++) {
        const again = await burst(http, agent, `${node.url}/health`, 30);
        for (const r of again) assert.equal(r.status, 200, r.body);
      }
      const total = metricOf((await get(node, '/metrics')).text, 'edgelite_connections_total');
      assert.ok(total <= 33, `the kept connections were reopened (${total} in all)`);
    } finally {
      agent.destroy();
    }
    // Closed connections leave every loop's count (only the metrics request's own is left).
    await until('the loops to stop counting closed connections', async () => {
      const per = loopConns((await get(node, '/metrics')).text);
      return per.reduce((a, b) => a + b, 0) === 1;
    }, 5000);
  });
});

describe('loops: TLS connections handed to another loop', { timeout: 60000 }, () => {
  let node, dir, ca;
  before(async () => {
    dir = tmpDir('edgelite-loops-tls-');
    ca = makeCa(dir);
    const cert = makeServerCert(dir, ca);
    const conf = path.join(dir, 'edge-config.yaml');
    fs.writeFileSync(conf, `regions:\n  - { id: solo, tls_cert: "${cert.cert}", tls_key: "${cert.key}" }\n`);
    node = await startNode({ args: ['--config', conf, '--threads', '2', '--log-level', 'warn'] });
  });
  after(async () => {
    if (node) await node.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('20 TLS connections at once: spread, and every one completes its handshake and requests', async () => {
    assert.match(node.url, /^https:/);
    const caPem = fs.readFileSync(ca.cert);
    const agent = new https.Agent({ keepAlive: true, maxSockets: 20, ca: caPem });
    const scrape = () => new Promise((resolve, reject) => {
      https.get(`${node.url}/metrics`, { ca: caPem }, (res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    const handedBefore = metricOf(await scrape(), 'edgelite_connections_handed_off_total');
    try {
      for (let round = 0; round < 2; round++) {
        const rs = await burst(https, agent, `${node.url}/health`, 20);
        for (const r of rs) assert.equal(r.status, 200, r.body);
      }
      const m = await scrape();
      const per = loopConns(m);
      assert.equal(per.reduce((a, b) => a + b, 0), 21, JSON.stringify(per));
      assert.ok(Math.min(...per) >= 9, JSON.stringify(per));
      // The first loop to wake accepts what is pending: of 20 connections at once some went through the other
      // loop's adopt (4 to 10 in every run seen), and they made their TLS handshake and requests above.
      const handed = metricOf(m, 'edgelite_connections_handed_off_total') - handedBefore;
      assert.ok(handed >= 1 && handed <= 20, `${handed} handed off`);
      assert.ok(Math.max(...per) - Math.min(...per) <= 2, `connections per loop ${JSON.stringify(per)}`);
    } finally {
      agent.destroy();
    }
  });
});

function putter(url, agent) {
  return (id, i) => new Promise((resolve, reject) => {
    const body = JSON.stringify({ data: { n: i, pad: 'x'.repeat(200) } });
    const req = http.request(`${url}/v1/sessions/${id}`, { method: 'PUT', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, text, i }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function sessionNode(dir, extra = '') {
  const keys = writeKeyFile(dir);
  const conf = path.join(dir, `edge-config-${Math.random().toString(16).slice(2)}.yaml`);
  fs.writeFileSync(conf, `regions:\n  - { id: solo }\nsessions: { key_file: "${keys.file}" }\n${extra}`);
  return startNode({ args: ['--config', conf, '--threads', '2', '--log-level', 'warn'] });
}

describe('loops: session writes of one iteration go to the writer together', { timeout: 60000 }, () => {
  let node, bounded, dir;
  const N = 64;
  before(async () => {
    dir = tmpDir('edgelite-loops-sess-');
    node = await sessionNode(dir);
    bounded = await sessionNode(dir, 'limits: { writer_queue: 4 }\n');
  });
  after(async () => {
    if (node) await node.destroy();
    if (bounded) await bounded.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test(`${N} PUTs to one session at once: each commits exactly once, the last version is stored`, async () => {
    const c = await sess.create(node.url, { id: 'burst', data: { n: -1 } });
    assert.equal(c.status, 201, c.text);
    const base = (await sess.get(node.url, 'burst')).json.version;
    const agent = new http.Agent({ keepAlive: true, maxSockets: N });
    const put = putter(node.url, agent);
    try {
      const groupsBefore = metricOf((await get(node, '/metrics')).text, 'edgelite_writer_groups_total');
      for (let round = 0; round < 3; round++) {
        const from = base + round * N;
        const answers = await Promise.all(Array.from({ length: N }, (_, i) => put('burst', round * N + i)));
        for (const a of answers) assert.equal(a.status, 200, a.text);
        const versions = answers.map((a) => JSON.parse(a.text).version).sort((x, y) => x - y);
        assert.deepEqual(versions, Array.from({ length: N }, (_, k) => from + 1 + k),
          'every write has its own version, none skipped or repeated');
        const now = await sess.get(node.url, 'burst');
        assert.equal(now.json.version, from + N);
        const last = answers.find((a) => JSON.parse(a.text).version === from + N);
        assert.equal(now.json.data.n, last.i, 'the stored data is that of the write with the last version');
      }
      // A sanity check, not the change's (queued one by one they were grouped too): fewer transactions than writes.
      const groups = metricOf((await get(node, '/metrics')).text, 'edgelite_writer_groups_total') - groupsBefore;
      assert.ok(groups < 3 * N, `${groups} writer groups for ${3 * N} writes`);
    } finally {
      agent.destroy();
    }
  });

  test('beyond limits.writer_queue: 503 WRITER_BUSY, and what was refused changed nothing', async () => {
    const c = await sess.create(bounded.url, { id: 'held', data: { n: -1 } });
    assert.equal(c.status, 201, c.text);
    const base = (await sess.get(bounded.url, 'held')).json.version;
    const agent = new http.Agent({ keepAlive: true, maxSockets: N });
    const put = putter(bounded.url, agent);
    const holder = createClient({ url: bounded.url });
    try {
      // The writer's BEGIN IMMEDIATE waits behind this transaction's write lock.
      const tx = await holder.transaction('write');
      await tx.execute('CREATE TABLE hold (x)');
      const pending = Array.from({ length: N }, (_, i) => put('held', i));
      const settled = new Array(N).fill(false);
      pending.forEach((p, i) => p.then(() => { settled[i] = true; }));
      // The refusals come at once; the accepted writes wait for the lock.
      await until(`${N - 16} of ${N} answers with the writer held`, () => settled.filter(Boolean).length >= N - 16, 10000);
      await sleep(200);
      const early = settled.filter(Boolean).length;
      await tx.rollback();
      const all = await Promise.all(pending);
      const refused = all.filter((a) => a.status === 503);
      const ok = all.filter((a) => a.status === 200);
      assert.equal(refused.length, early, 'a write answered before the writer was free other than refused');
      for (const r of refused) assert.equal(JSON.parse(r.text).code, 'WRITER_BUSY', r.text);
      assert.equal(ok.length + refused.length, N, JSON.stringify(all.filter((a) => a.status !== 200 && a.status !== 503)));
      // Each loop gathers at most the bound before it queues, without seeing the other's: 2 x 4 in the group the
      // writer holds (both loops queued before it woke), 2 x 4 more waiting behind it.
      assert.ok(ok.length >= 1 && ok.length <= 16, `${ok.length} writes accepted with limits.writer_queue: 4`);
      const versions = ok.map((a) => JSON.parse(a.text).version).sort((x, y) => x - y);
      assert.deepEqual(versions, Array.from({ length: ok.length }, (_, k) => base + 1 + k));
      const now = await sess.get(bounded.url, 'held');
      assert.equal(now.json.version, base + ok.length, 'a refused write changed the session');
      const m = (await get(bounded, '/metrics')).text;
      assert.ok(metricOf(m, 'edgelite_writer_refused_total') >= refused.length);
    } finally {
      holder.close();
      agent.destroy();
    }
  });
});
