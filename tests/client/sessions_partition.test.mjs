// SPDX-License-Identifier: MIT
// sessions.partition_mode: available on a real 3-region cluster with a real partition (chaos proxies on
// every link of the home a): during it, the home a and the region b both take a write of the same
// session; when it heals, every region ends on the same record, the one whose write has the greater
// stamp (hlc, then origin), and each region counts exactly one merge (stats and /metrics) and records the
// loser in /v1/conflicts. Afterwards writes at b go to the home again and cover both sides.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { call, sess, writeKeyFile } from './lib/sessions.mjs';

describe('sessions: partition_mode available', { timeout: 180000 }, () => {
  let cluster;
  let keyDir;
  const ids = ['a', 'b', 'c'];
  const url = (id) => cluster.url(id);
  const metric = (id, name) => cluster.metric(id, name);
  const peersOf = async (id) => {
    const st = await cluster.status(id);
    return st?.peers ?? st?.replication?.peers ?? [];
  };

  before(async () => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-sesskeys-'));
    const { file } = writeKeyFile(keyDir, [1]);
    cluster = await startCluster({
      regions: 3,
      proxies: 'pair',
      sessions: { key_file: file, migrate_after: 0, partition_mode: 'available', touch_interval_ms: 50 },
    });
    const linked = await cluster.waitFor(async () => {
      for (const id of ids) {
        const peers = await peersOf(id);
        if (peers.length !== 2 || !peers.every((p) => p.connected === true)) return undefined;
      }
      return true;
    }, 20000, 50);
    assert.ok(linked, 'the peer links never all came up');
  });
  after(async () => {
    if (cluster) await cluster.destroy();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  });

  const waitGet = async (id, sid, pred, timeoutMs = 15000) => cluster.waitFor(async () => {
    const r = await sess.get(url(id), sid);
    return r.status === 200 && pred(r.json) ? r.json : undefined;
  }, timeoutMs, 30);

  test('writes on both sides of a partition merge to one record everywhere, the loser counted', async () => {
    const c = await sess.create(url('a'), { id: 'part', data: { w: 'a0' } });
    assert.equal(c.status, 201, c.text);
    for (const id of ids) assert.ok(await waitGet(id, 'part', (j) => j.version === 1), `not at ${id}`);
    const merges0 = {};
    for (const id of ids) merges0[id] = (await sess.stats(url(id))).partition.merges;
    assert.equal((await sess.stats(url('a'))).partition.mode, 'available');

    // Cut every link of a, both ways.
    const links = ['a>b', 'b>a', 'a>c', 'c>a'];
    for (const l of links) await cluster.proxies[l].cut();
    const apart = await cluster.waitFor(async () => {
      for (const id of ['b', 'c']) {
        if ((await peersOf(id)).find((p) => (p.region ?? p.id) === 'a')?.connected !== false) return undefined;
      }
      return true;
    }, 20000, 50);
    assert.ok(apart, 'b and c never saw a as down');

    // b cannot reach the home: the write is taken here, marked.
    const wb = await sess.put(url('b'), 'part', { data: { w: 'b1' } });
    assert.equal(wb.status, 200, wb.text);
    assert.equal(wb.json.partitioned, true);
    assert.equal(wb.json.home, 'a');
    assert.equal(wb.headers.get('x-edge-partitioned'), '1');
    assert.equal(wb.json.version, 2);
    assert.deepEqual((await sess.get(url('b'), 'part')).json.data, { w: 'b1' });
    // A DELETE still needs the home: refused, nothing changed.
    const d = await sess.del(url('b'), 'part');
    assert.equal(d.status, 503, d.text);
    assert.equal(d.json.code, 'SESSION_HOME_UNREACHABLE');
    // c still hears b: it holds b's write.
    assert.ok(await waitGet('c', 'part', (j) => j.data.w === 'b1'), 'c did not get b\'s write');
    // Later, the home writes too (its stamp is the greater one).
    await sleep(100);
    const wa = await sess.put(url('a'), 'part', { data: { w: 'a1' } });
    assert.equal(wa.status, 200, wa.text);
    assert.equal(wa.json.partitioned, undefined);
    assert.equal(wa.json.version, 2);
    assert.equal((await sess.stats(url('b'))).partition.writes, 1);

    for (const l of links) await cluster.proxies[l].reset();
    // Every region ends on the same record: a's write, which has the greater stamp.
    for (const id of ids) {
      const r = await waitGet(id, 'part', (j) => j.data.w === 'a1', 20000);
      assert.ok(r, `region ${id} did not end on a's write: ${JSON.stringify((await sess.get(url(id), 'part')).json)}`);
      assert.equal(r.version, 2);
      assert.equal(r.home, 'a');
      assert.equal(r.epoch, 1);
    }
    // One merge in each region (a merges b's, b merges a's, c merges a's into b's), visible in stats
    // and /metrics, and the loser (b's write) kept in /v1/conflicts.
    for (const id of ids) {
      assert.ok(await cluster.waitFor(async () =>
        (await sess.stats(url(id))).partition.merges === merges0[id] + 1, 10000, 50), `no merge counted at ${id}`);
      assert.equal(await metric(id, 'edgelite_sessions_partition_merges_total'), merges0[id] + 1);
      const cf = (await call(url(id), 'GET', '/v1/conflicts')).json;
      const list = cf?.conflicts ?? cf ?? [];
      const mine = list.filter((x) => x.kind === 'session');
      assert.equal(mine.length, 1, `${id}: ${JSON.stringify(cf)}`);
      assert.equal(mine[0].winner_origin ?? mine[0].winner?.origin, 'a', JSON.stringify(mine[0]));
      assert.equal(mine[0].loser_origin ?? mine[0].loser?.origin, 'b', JSON.stringify(mine[0]));
    }
    // Healed (b's link to a is up again): a write at b goes to the home again and covers both sides.
    assert.ok(await cluster.waitFor(async () =>
      (await peersOf('b')).find((p) => (p.region ?? p.id) === 'a')?.connected === true, 20000, 50), 'b never relinked');
    await sleep(300); // b looks at its link at most every 250 ms
    const after1 = await sess.patch(url('b'), 'part', { x: 1 });
    assert.equal(after1.status, 200, after1.text);
    assert.equal(after1.json.partitioned, undefined);
    assert.equal(after1.json.version, 3);
    for (const id of ids) {
      const r = await waitGet(id, 'part', (j) => j.version === 3);
      assert.ok(r, `region ${id} did not get version 3`);
      assert.deepEqual(r.data, { w: 'a1', x: 1 });
    }
    for (const id of ids) assert.equal((await sess.stats(url(id))).partition.merges, merges0[id] + 1);
  });
});
