// SPDX-License-Identifier: MIT
// Read-your-writes through the front door with version vectors (issue 12, item 2): the door keeps,
// per client, the highest bookmark of every region that answered one of its writes, and attaches
// the whole vector ("a:5,b:9") to the client's later reads, so a read sees every earlier write of
// the client, not only its latest. Set-up: the client's first write lands in a; entries into b are
// cut; a dies, so the second write is sent again to b (its connection was refused). The read then
// goes to b, which has the second write but not the first: with the vector it waits for a's entry
// and returns both rows once a is back; with only the latest bookmark it would answer at once
// without the first write.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { startRouter } from './lib/router.mjs';

async function run(url, sql, timeoutMs = 15000) {
  const res = await fetch(url + '/v2/pipeline', { method: 'POST', signal: AbortSignal.timeout(timeoutMs),
    headers: { 'content-type': 'application/json', authorization: 'Bearer client-1' },
    body: JSON.stringify({ baton: null, requests: [{ type: 'execute', stmt: { sql } }, { type: 'close' }] }) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text, region: res.headers.get('x-edge-region'),
    bookmark: res.headers.get('x-edge-bookmark') };
}

describe('router_door_vv', { timeout: 240000 }, () => {
  let c;
  let r;
  before(async () => {
    c = await startCluster({ regions: 2, proxies: 'front', router: '{ bookmark_wait_ms: 300 }',
      extraArgs: ['--log-level', 'warn', '--bookmark-timeout-ms', '60000'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    const cfg = path.join(c.root, 'router-vv.yaml');
    fs.writeFileSync(cfg, [
      `cluster: { name: ${c.name}, secret: "${c.secret}" }`,
      'regions:',
      ...c.ids.map((id) => `  - { id: ${id}, url: "${c.url(id)}", priority: ${c.regions[id].priority} }`),
      'router: { probe_interval_ms: 600000, request_timeout_ms: 90000, rtt_slack_ms: 0 }', ''].join('\n'));
    r = await startRouter(cfg, ['--client-region', 'a']);
    const probed = await c.waitFor(async () => (await (await fetch(r.url + '/v1/router/regions')).json()).regions
      .every((x) => x.up && x.rtt_ms > 0), 20000, 50);
    assert.ok(probed, 'the first probes did not come back');
  });
  after(async () => {
    if (r) r.proc.kill('SIGKILL');
    if (c) await c.destroy();
  });

  test('a read waits for every region that answered one of the client\'s writes', async () => {
    await c.proxies.b.cut(); // nothing of a's reaches b from here on
    const w1 = await run(r.url, "INSERT INTO t (id, v) VALUES (1, 'first')");
    assert.equal(w1.status, 200, w1.text);
    assert.equal(w1.region, 'a');
    assert.match(w1.bookmark, /^a:\d+$/);
    await c.kill('a');
    const w2 = await run(r.url, "INSERT INTO t (id, v) VALUES (2, 'second')");
    assert.equal(w2.status, 200, w2.text);
    assert.equal(w2.region, 'b', 'the write refused by a was not sent to b');
    assert.match(w2.bookmark, /^b:\d+$/);
    assert.deepEqual(await c.rows('b', 'SELECT id FROM t ORDER BY id'), [[2]], 'b must not have the first write yet');

    const read = run(r.url, 'SELECT id, v FROM t ORDER BY id', 90000);
    await sleep(1000);
    // the read is parked in b for a's entry: bring a back and let its entries in
    await c.restart('a');
    await c.proxies.b.reset();
    const res = await read;
    assert.equal(res.status, 200, res.text);
    assert.equal(res.region, 'b');
    const ids = res.json.results[0].response.result.rows.map((row) => Number(row[0].value));
    assert.deepEqual(ids, [1, 2], 'the read did not see the client\'s first write');
  });
});
