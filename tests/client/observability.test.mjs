// SPDX-License-Identifier: MIT
// GET /metrics (Prometheus text) and GET /v1/status.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { get, pipeline, sleep, startNode, stmt } from './lib/node.mjs';

const T = { timeout: 30000 };

/** Parse Prometheus text exposition into [{name, labels, value}]. */
function parseProm(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)(\s+\d+)?$/.exec(line.trim());
    assert.ok(m, `not a Prometheus sample line: ${JSON.stringify(line)}`);
    const labels = {};
    if (m[3]) {
      for (const lm of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1]] = lm[2];
    }
    const v = m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    assert.ok(!Number.isNaN(v) || m[4] === 'NaN', `bad value in ${line}`);
    out.push({ name: m[1], labels, value: v });
  }
  return out;
}

const sum = (samples, name, pred = () => true) =>
  samples.filter((s) => s.name === name && pred(s.labels)).reduce((a, s) => a + s.value, 0);

async function metrics(node) {
  const r = await get(node, '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') || '', /text\/plain/);
  return { text: r.text, samples: parseProm(r.text) };
}

describe('observability', { timeout: 120000 }, () => {
  let node;
  let client;
  before(async () => {
    node = await startNode();
    client = createClient({ url: node.url });
  });
  after(async () => {
    if (client) client.close();
    if (node) await node.destroy();
  });

  test('/metrics exposes the documented families with TYPE lines', T, async () => {
    const { text, samples } = await metrics(node);
    for (const name of ['edgelite_http_requests_total', 'edgelite_http_request_duration_seconds_bucket',
      'edgelite_open_streams', 'edgelite_connections']) {
      assert.ok(samples.some((s) => s.name === name), `missing ${name} in:\n${text}`);
    }
    assert.match(text, /^# TYPE edgelite_http_requests_total counter$/m);
    assert.match(text, /^# TYPE edgelite_http_request_duration_seconds histogram$/m);
    assert.match(text, /^# TYPE edgelite_open_streams gauge$/m);
    assert.match(text, /^# TYPE edgelite_connections gauge$/m);
    const inf = samples.filter((s) => s.name === 'edgelite_http_request_duration_seconds_bucket' && s.labels.le === '+Inf');
    assert.ok(inf.length >= 1, 'histogram has a +Inf bucket');
  });

  test('request counters and the latency histogram move after requests', T, async () => {
    const before = (await metrics(node)).samples;
    const n = 25;
    for (let i = 0; i < n; i++) await client.execute('SELECT 1');
    const afterS = (await metrics(node)).samples;
    const d = sum(afterS, 'edgelite_http_requests_total') - sum(before, 'edgelite_http_requests_total');
    assert.ok(d >= n, `edgelite_http_requests_total grew by ${d}, expected >= ${n}`);
    const inf = (s) => sum(s, 'edgelite_http_request_duration_seconds_bucket', (l) => l.le === '+Inf');
    assert.ok(inf(afterS) - inf(before) >= n, 'histogram +Inf bucket grew');
    const cnt = (s) => sum(s, 'edgelite_http_request_duration_seconds_count');
    if (afterS.some((s) => s.name === 'edgelite_http_request_duration_seconds_count')) {
      assert.ok(cnt(afterS) - cnt(before) >= n);
    }
    // Buckets are cumulative: a bucket never holds more than the next larger one.
    const buckets = afterS.filter((s) => s.name === 'edgelite_http_request_duration_seconds_bucket' && Object.keys(s.labels).length === 1)
      .map((s) => [s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), s.value]).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i][1] >= buckets[i - 1][1], 'histogram buckets are cumulative');
  });

  test('edgelite_open_streams follows an open baton', T, async () => {
    const gauge = async () => sum((await metrics(node)).samples, 'edgelite_open_streams');
    const base = await gauge();
    const r = await pipeline(`${node.url}/v2/pipeline`, { requests: [{ type: 'execute', stmt: stmt('SELECT 1') }] });
    assert.equal(typeof r.json.baton, 'string');
    assert.equal(await gauge(), base + 1, 'one more open stream');
    await pipeline(`${node.url}/v2/pipeline`, { baton: r.json.baton, requests: [{ type: 'close' }] });
    assert.equal(await gauge(), base, 'back after close');
  });

  test('edgelite_connections counts open connections', T, async () => {
    const gauge = async () => sum((await metrics(node)).samples, 'edgelite_connections');
    const base = await gauge();
    const ws = createClient({ url: node.wsUrl });
    try {
      await ws.execute('SELECT 1');
      assert.ok(await gauge() >= base + 1, 'an open WebSocket is a connection');
    } finally {
      ws.close();
    }
    let now = base + 1;
    for (let i = 0; i < 50 && now > base; i++) {
      await sleep(100);
      now = await gauge();
    }
    assert.ok(now <= base, `edgelite_connections went back down (${now} > ${base})`);
  });

  test('/v1/status has region, version, uptime_s, role, db_size_bytes', T, async () => {
    const r = await get(node, '/v1/status');
    assert.equal(r.status, 200);
    const s = JSON.parse(r.text);
    assert.equal(typeof s.region, 'string');
    assert.ok(s.region.length > 0);
    assert.equal(typeof s.version, 'string');
    assert.ok(s.version.length > 0);
    const ver = await get(node, '/version');
    assert.ok(ver.text.includes(s.version), `/version (${ver.text}) mentions ${s.version}`);
    assert.equal(typeof s.uptime_s, 'number');
    assert.ok(s.uptime_s >= 0 && s.uptime_s < 3600);
    assert.equal(typeof s.role, 'string');
    assert.ok(s.role.length > 0);
    assert.equal(typeof s.db_size_bytes, 'number');
    assert.ok(s.db_size_bytes >= 0);

    // uptime moves and the database grows when data is written.
    await client.execute('CREATE TABLE IF NOT EXISTS big (b BLOB)');
    for (let i = 0; i < 6; i++) await client.execute({ sql: 'INSERT INTO big VALUES (randomblob(1048576))' });
    await sleep(1100);
    const s2 = JSON.parse((await get(node, '/v1/status')).text);
    assert.ok(s2.uptime_s > s.uptime_s, `uptime ${s.uptime_s} -> ${s2.uptime_s}`);
    assert.ok(s2.db_size_bytes > 1024 * 1024, `db_size_bytes ${s2.db_size_bytes} after writing 6 MiB`);
  });

  test('/v1/status reports the --region flag', T, async () => {
    const n2 = await startNode({ args: ['--region', 'test-region-1'] });
    try {
      const s = JSON.parse((await get(n2, '/v1/status')).text);
      assert.equal(s.region, 'test-region-1');
    } finally {
      await n2.destroy();
    }
  });
});
