// SPDX-License-Identifier: MIT
// Resource bounds (issue 9, item 6), each against a real node and a real client:
//  - limits.writer_queue: with the writer stalled behind an interactive write transaction, writes beyond the
//    queue bound are refused (HTTP 503 + Retry-After + WRITER_BUSY; over WebSocket a Hrana error WRITER_BUSY) and
//    change nothing, while the accepted ones commit once the lock is released;
//  - limits.ws_output_bytes: a WebSocket client that asks for large results and does not read is closed with
//    1009 "output limit" (and dropped if it never reads), the node stays healthy;
//  - replication.conflicts_keep: _edge_conflicts keeps only the newest rows, the rest counted as dropped.
// Waits are generous bounds, not speed targets.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { createClient } from '@libsql/client';
import WebSocket from 'ws';

import { startCluster } from './lib/cluster.mjs';
import { get, healthy, pipeline, sleep, startNode, stmt, tmpDir, V } from './lib/node.mjs';

function configFile(limits) {
  const dir = tmpDir('edgelite-bounds-conf-');
  const file = path.join(dir, 'edge-config.yaml');
  const l = Object.entries(limits).map(([k, v]) => `${k}: ${v}`).join(', ');
  fs.writeFileSync(file, `cluster: { name: bounds }\nregions:\n  - { id: solo }\nlimits: { ${l} }\n`);
  return { dir, file };
}

async function metric(node, name) {
  const r = await get(node, '/metrics');
  for (const line of r.text.split('\n')) {
    if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  }
  return NaN;
}

async function waitFor(fn, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn()) return true;
    await sleep(50);
  }
  return false;
}

const insert = (url, v) => pipeline(`${url}/v2/pipeline`, {
  requests: [{ type: 'execute', stmt: stmt('INSERT INTO q (v) VALUES (?)', [V.text(v)]) }, { type: 'close' }],
});

describe('bounds: limits.writer_queue', { timeout: 60000 }, () => {
  let node, conf;
  before(async () => {
    conf = configFile({ writer_queue: 2 });
    node = await startNode({ args: ['--config', conf.file, '--log-level', 'warn'] });
    const c = await pipeline(`${node.url}/v2/pipeline`, {
      requests: [{ type: 'execute', stmt: stmt('CREATE TABLE q (id INTEGER PRIMARY KEY, v TEXT UNIQUE)') },
        { type: 'close' }],
    });
    assert.equal(c.status, 200, c.text);
  });
  after(async () => {
    if (node) await node.destroy();
    if (conf) fs.rmSync(conf.dir, { recursive: true, force: true });
  });

  test('beyond the bound: 503 + Retry-After + WRITER_BUSY, nothing applied; the rest commits', async () => {
    assert.equal(await metric(node, 'edgelite_writer_queue_limit'), 2);
    const holder = createClient({ url: node.url });
    const wsClient = createClient({ url: node.wsUrl });
    try {
      // The writer's BEGIN IMMEDIATE waits (busy timeout) behind this transaction's write lock.
      const tx = await holder.transaction('write');
      await tx.execute({ sql: 'INSERT INTO q (v) VALUES (?)', args: ['held'] });
      // One job (or group) blocked in the writer, then two queued behind it fill the bound. The writer takes
      // whatever is queued as one group, so send one at a time until two wait.
      const waiting = [];
      const accepted = [];
      for (let i = 0; i < 20 && (await metric(node, 'edgelite_writer_queue')) < 2; i++) {
        waiting.push(insert(node.url, `w${i}`));
        await sleep(100);
      }
      assert.equal(await metric(node, 'edgelite_writer_queue'), 2, 'the writer queue never filled');
      const refused = await insert(node.url, 'refused-http');
      assert.equal(refused.status, 503, refused.text);
      assert.equal(refused.headers.get('retry-after'), '1');
      assert.equal(refused.json?.code, 'WRITER_BUSY', refused.text);
      await assert.rejects(wsClient.execute({ sql: 'INSERT INTO q (v) VALUES (?)', args: ['refused-ws'] }),
        (e) => e.code === 'WRITER_BUSY' || /WRITER_BUSY/.test(String(e.message)));
      // CRDT operations go through the same bounded queue: refused, and no object is created.
      const crdt = await fetch(`${node.url}/v1/crdt/refused`, { method: 'POST',
        body: JSON.stringify({ type: 'g-counter', op: 'increment', amount: 1 }) });
      const crdtText = await crdt.text();
      assert.equal(crdt.status, 503, crdtText);
      assert.equal(crdt.headers.get('retry-after'), '1');
      assert.equal(JSON.parse(crdtText).code, 'WRITER_BUSY', crdtText);
      assert.ok((await metric(node, 'edgelite_writer_refused_total')) >= 3);
      await tx.rollback();
      for (const w of waiting) accepted.push(await w);
      for (const a of accepted) assert.equal(a.status, 200, a.text);
      const rows = await holder.execute('SELECT v FROM q ORDER BY v');
      const vs = rows.rows.map((r) => r.v);
      for (let i = 0; i < waiting.length; i++) assert.ok(vs.includes(`w${i}`), JSON.stringify(vs));
      assert.ok(!vs.includes('refused-http') && !vs.includes('refused-ws') && !vs.includes('held'), JSON.stringify(vs));
      assert.match(node.stderr(), /writer queue full/);
      const none = await fetch(`${node.url}/v1/crdt/refused`);
      assert.equal(none.status, 404, await none.text());
      // Once the writer has caught up, writes are accepted again.
      const again = await insert(node.url, 'after');
      assert.equal(again.status, 200, again.text);
    } finally {
      holder.close();
      wsClient.close();
    }
  });
});

describe('bounds: limits.ws_output_bytes', { timeout: 90000 }, () => {
  let node, conf;
  const LIMIT = 1024 * 1024;
  before(async () => {
    conf = configFile({ ws_output_bytes: LIMIT });
    node = await startNode({ args: ['--config', conf.file, '--log-level', 'warn'] });
  });
  after(async () => {
    if (node) await node.destroy();
    if (conf) fs.rmSync(conf.dir, { recursive: true, force: true });
  });

  // Open a hrana2 socket, pause reading, and ask for `n` results of about 1 MiB each.
  async function flood(n) {
    const ws = new WebSocket(node.wsUrl, ['hrana2'], { perMessageDeflate: false });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
    ws.on('error', () => {});
    ws.send(JSON.stringify({ type: 'hello', jwt: null }));
    ws.send(JSON.stringify({ type: 'request', request_id: 1, request: { type: 'open_stream', stream_id: 1 } }));
    ws.pause();
    for (let i = 0; i < n; i++) {
      ws.send(JSON.stringify({ type: 'request', request_id: 2 + i, request: { type: 'execute', stream_id: 1,
        stmt: { sql: 'SELECT hex(zeroblob(524288))', want_rows: true } } }));
    }
    return { ws, closed };
  }

  test('a client that does not read is closed with 1009 "output limit"; the node stays healthy', async () => {
    const before = await metric(node, 'edgelite_ws_output_closed_total');
    assert.equal(before, 0);
    // Far more than the kernel's socket buffers hold, so output piles up in the node.
    const a = await flood(64);
    const hit = await waitFor(async () => (await metric(node, 'edgelite_ws_output_closed_total')) >= 1, 30000);
    assert.ok(hit, 'the output limit was never applied');
    a.ws.resume();
    const info = await Promise.race([a.closed, sleep(20000).then(() => null)]);
    assert.ok(info, 'the paused client was never closed');
    assert.equal(info.code, 1009);
    assert.equal(info.reason, 'output limit');
    assert.match(node.stderr(), /closed with 1009/);

    // A client that never reads again is dropped after the grace period, not kept forever.
    const conns0 = await metric(node, 'edgelite_connections');
    const b = await flood(64);
    assert.ok(await waitFor(async () => (await metric(node, 'edgelite_ws_output_closed_total')) === 2, 30000));
    const dropped = await waitFor(async () => (await metric(node, 'edgelite_connections')) <= conns0, 40000);
    b.ws.terminate();
    assert.ok(dropped, 'a client that never reads was kept open');

    assert.ok(await healthy(node));
    const c = createClient({ url: node.wsUrl });
    try {
      const r = await c.execute('SELECT length(hex(zeroblob(1000))) AS n');
      assert.equal(Number(r.rows[0].n), 2000);
    } finally {
      c.close();
    }
  });
});

// N concurrent update pairs on rows 1..N of t between a and b, cut off from each other: N conflicts in each region.
async function makeConflicts(c, N) {
  for (let k = 1; k <= N; k++) assert.ok((await c.sql('a', 'INSERT INTO t (id, v) VALUES (?, ?)', [k, 'init'])).ok);
  assert.ok((await c.waitConverged(['t'], 30000)).ok);
  assert.ok(await c.cutApart(['a', 'b']), 'a and b still connected after the cut');
  for (let k = 1; k <= N; k++) {
    assert.ok((await c.sql('a', 'UPDATE t SET v = ? WHERE id = ?', [`a${k}`, k])).ok);
    assert.ok((await c.sql('b', 'UPDATE t SET v = ? WHERE id = ?', [`b${k}`, k])).ok);
  }
  await c.proxies.a.reset();
  await c.proxies.b.reset();
  assert.ok((await c.waitConverged(['t'], 30000)).ok, 'no convergence after healing');
  for (const id of c.ids) {
    const seen = await c.waitFor(async () => (await c.metric(id, 'edgelite_repl_conflicts_total')) === N, 30000);
    assert.ok(seen, `region ${id} did not record ${N} conflicts`);
  }
}

describe('bounds: replication.conflicts_keep', { timeout: 180000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2, proxies: 'front', replication: { conflicts_keep: 3 },
      extraArgs: ['--log-level', 'info', '--compact-interval-ms', '200'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('only the newest conflicts_keep rows stay; the rest are counted as dropped', async () => {
    const N = 10;
    await makeConflicts(c, N);
    for (const id of c.ids) {
      const trimmed = await c.waitFor(async () => (await c.conflicts(id)).total === 3, 30000);
      assert.ok(trimmed, `region ${id} kept ${(await c.conflicts(id)).total} conflicts`);
      assert.equal(await c.metric(id, 'edgelite_repl_conflicts_dropped_total'), N - 3);
      assert.equal((await c.conflicts(id)).conflicts.filter((e) => e.table === 't').length, 3);
    }
    assert.match(c.stderr('a'), /retention dropped/);
  });
});

describe('bounds: replication.conflicts_max_age', { timeout: 180000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2, proxies: 'front', replication: { conflicts_max_age: '2s' },
      extraArgs: ['--log-level', 'warn', '--compact-interval-ms', '200'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('conflicts older than conflicts_max_age are dropped', async () => {
    const N = 5;
    await makeConflicts(c, N);
    for (const id of c.ids) {
      const gone = await c.waitFor(async () => (await c.conflicts(id)).total === 0, 30000);
      assert.ok(gone, `region ${id} still lists ${(await c.conflicts(id)).total} conflicts`);
      assert.equal(await c.metric(id, 'edgelite_repl_conflicts_dropped_total'), N);
    }
  });
});
