// SPDX-License-Identifier: MIT
// The front door speaks Hrana 3 over protobuf (issue 12, item 2): the real @libsql/hrana-client on
// protocol 3 through `edgelite router` picks /v3-protobuf (GET /v3-protobuf answers 200) and every
// POST goes there as protobuf and comes back as protobuf; queries, a transaction across requests
// (the baton, prefixed with its region, pins it), a batch through /v3-protobuf/cursor; the door
// reads the SQL with the node's decoder: its statistics name the statements, and a protobuf read
// gets the client's last write's bookmark attached (read-your-writes) as a JSON read does.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as hrana from '@libsql/hrana-client';

import { startCluster } from './lib/cluster.mjs';
import { startRouter } from './lib/router.mjs';

function recordingFetch(log) {
  return async (req) => {
    const res = await fetch(req);
    log.push({ url: new URL(req.url).pathname, method: req.method, reqType: req.headers.get('content-type'),
      status: res.status, resType: res.headers.get('content-type'), region: res.headers.get('x-edge-region') });
    return res;
  };
}

async function metric(url, name) {
  const text = await (await fetch(url + '/metrics')).text();
  for (const line of text.split('\n')) if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  return NaN;
}

describe('router_door_protobuf', { timeout: 180000 }, () => {
  let c;
  let r;
  let client;
  const log = [];
  before(async () => {
    c = await startCluster({ regions: 2, extraArgs: ['--log-level', 'warn'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    const cfg = path.join(c.root, 'router-pb.yaml');
    fs.writeFileSync(cfg, [
      `cluster: { name: ${c.name}, secret: "${c.secret}" }`,
      'regions:',
      ...c.ids.map((id) => `  - { id: ${id}, url: "${c.url(id)}", priority: ${c.regions[id].priority} }`),
      'router: { probe_interval_ms: 200, request_timeout_ms: 5000, rtt_slack_ms: 1000 }', ''].join('\n'));
    r = await startRouter(cfg);
    // a token: the door keeps read-your-writes per token (the regions here check none)
    client = hrana.openHttp(r.url, 'client-1', recordingFetch(log), undefined, 3);
  });
  after(async () => {
    if (client) client.close();
    if (r) r.proc.kill('SIGKILL');
    if (c) await c.destroy();
  });

  function assertAllProtobuf() {
    const posts = log.filter((e) => e.method === 'POST');
    assert.ok(posts.length > 0);
    for (const e of posts) {
      assert.ok(e.url === '/v3-protobuf/pipeline' || e.url === '/v3-protobuf/cursor', `${e.url} (fell back to JSON?)`);
      assert.equal(e.reqType, 'application/x-protobuf');
      assert.equal(e.status, 200);
      assert.equal(e.resType, 'application/x-protobuf');
    }
  }

  test('queries, a transaction across requests and a cursor batch, all in protobuf', async () => {
    const s = client.openStream();
    s.intMode = 'bigint';
    assert.equal((await s.query('SELECT 41 + 1 AS x')).rows[0].x, 42n);
    s.close();
    assert.equal(client._endpoint.encoding, 'protobuf');

    // one stream across several requests: BEGIN, two writes, COMMIT on the region of the baton
    await new Promise((res) => setTimeout(res, 200)); // the first stream's close has gone out
    const mark = log.length;
    const tx = client.openStream();
    await tx.run('BEGIN');
    await tx.run(["INSERT INTO t (id, v) VALUES (1, 'one')", []]);
    await tx.run(['INSERT INTO t (id, v) VALUES (?, ?)', [2, 'two']]);
    await tx.run('COMMIT');
    const txPosts = log.slice(mark).filter((e) => e.method === 'POST');
    tx.close();
    assert.ok(txPosts.length >= 2, `${txPosts.length} requests: the transaction was not spread over several`);
    const regions = new Set(txPosts.map((e) => e.region));
    assert.equal(regions.size, 1, `the transaction's requests went to ${[...regions]}`);

    const s2 = client.openStream();
    const b = s2.batch(true); // through /v3-protobuf/cursor
    const q1 = b.step().query('SELECT v FROM t ORDER BY id');
    const q2 = b.step().query('SELECT count(*) AS n FROM t');
    await b.execute();
    assert.deepEqual((await q1).rows.map((row) => row.v), ['one', 'two']);
    assert.equal(Number((await q2).rows[0].n), 2);
    s2.close();
    assert.ok(log.some((e) => e.url === '/v3-protobuf/cursor'), 'the batch did not use the cursor endpoint');
    assertAllProtobuf();
  });

  test('the door reads the SQL: statistics, and read-your-writes on protobuf reads', async () => {
    const before = await metric(r.url, 'edgelite_router_ryw_bookmarks_total');
    const s = client.openStream();
    await s.run(["INSERT INTO t (id, v) VALUES (3, 'three')", []]);
    s.close();
    const s2 = client.openStream();
    const got = await s2.query('SELECT v FROM t WHERE id = 3');
    s2.close();
    assert.equal(got.rows[0].v, 'three', 'read-your-writes: the read did not see the write');
    assert.ok((await metric(r.url, 'edgelite_router_ryw_bookmarks_total')) > before,
      'no bookmark was attached to the protobuf read');
    const st = (await (await fetch(r.url + '/v1/router/stats/statements?sort=calls&limit=100')).json()).statements;
    const names = st.map((x) => x.query);
    assert.ok(names.includes('select v from t where id = ?'), JSON.stringify(names));
    assert.ok(names.includes('insert into t(id, v) values(?, ?)'), JSON.stringify(names));
    assertAllProtobuf();
  });

  test('the door counts the rows of protobuf answers: pipeline, batch and cursor, exactly', async () => {
    const w = client.openStream();
    for (let i = 100; i < 107; i++) await w.run(['INSERT INTO t (id, v) VALUES (?, ?)', [i, `row ${i} "rows":[[1]]`]]);
    w.close();
    await new Promise((res) => setTimeout(res, 200)); // the stream's close has gone out
    assert.equal((await fetch(r.url + '/v1/router/stats/reset', { method: 'POST' })).status, 200);
    const s = client.openStream();
    assert.equal((await s.query('SELECT id FROM t WHERE id >= 100')).rows.length, 7);
    const pb = s.batch(false); // a batch of two steps, in the stream (its baton) as its second request
    const p1 = pb.step().query('SELECT v FROM t WHERE id >= 100 AND id < 103');
    const p2 = pb.step().query('SELECT id FROM t WHERE id >= 105');
    await pb.execute();
    assert.equal((await p1).rows.length + (await p2).rows.length, 5);
    s.close();
    const s2 = client.openStream();
    const cb = s2.batch(true); // through /v3-protobuf/cursor
    const c1 = cb.step().query('SELECT v FROM t WHERE id >= 104');
    const c2 = cb.step().query('SELECT count(*) FROM t WHERE id >= 100');
    await cb.execute();
    assert.equal((await c1).rows.length + (await c2).rows.length, 4);
    s2.close();
    const st = (await (await fetch(r.url + '/v1/router/stats/statements?sort=calls&limit=100')).json()).statements;
    const rowsOf = (q) => {
      const e = st.filter((x) => x.query === q);
      assert.equal(e.length, 1, `${q}: ${JSON.stringify(st)}`);
      return e[0].rows;
    };
    assert.equal(rowsOf('select id from t where id >= ?'), 7);
    assert.equal(rowsOf('select v from t where id >= ? and id < ?'), 5);
    assert.equal(rowsOf('select v from t where id >= ?'), 4);
    assertAllProtobuf();
  });

  test('a malformed protobuf body gets the region\'s clear error through the door', async () => {
    const res = await fetch(r.url + '/v3-protobuf/pipeline', { method: 'POST',
      headers: { 'content-type': 'application/x-protobuf' }, body: Buffer.from([0x12, 0x7f, 0x01]),
      signal: AbortSignal.timeout(10000) });
    assert.equal(res.status, 400);
    assert.equal((await res.json()).code, 'HRANA_PROTO_ERROR');
    const other = await fetch(r.url + '/v3-protobuf/nothing', { method: 'POST', body: 'x' });
    assert.equal(other.status, 404);
    assert.equal((await (await fetch(r.url + '/health')).text()), '');
  });
});
