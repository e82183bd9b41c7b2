// SPDX-License-Identifier: MIT
// Sessions migration by share of accesses in a window (sessions.migrate_share, migrate_window,
// migrate_min_accesses) on a real 3-region cluster, with exact counts: each access is driven from one
// region and the test waits until the home has answered that region's report (its decision made)
// before the next, so the order the home sees is the order here. migrate_after is 0: only the share
// rule moves. Then a target at its capacity refuses, counted with its reason, and the window restarts.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startCluster } from './lib/cluster.mjs';
import { sess, writeKeyFile } from './lib/sessions.mjs';

describe('sessions: migration by share of accesses', { timeout: 120000 }, () => {
  let cluster;
  let keyDir;
  const url = (id) => cluster.url(id);
  const metric = (id, name) => cluster.metric(id, name);

  before(async () => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-sesskeys-'));
    const { file } = writeKeyFile(keyDir, [1]);
    cluster = await startCluster({
      regions: 3,
      sessions: { key_file: file, migrate_after: 0, migrate_share: 0.6, migrate_window: 5, migrate_min_accesses: 4,
        touch_interval_ms: 50 },
      capacity: { c: { max_sessions: 1 } },
    });
    // Every link up before the first read (waiting on /v1/status is no session access).
    const linked = await cluster.waitFor(async () => {
      for (const id of ['a', 'b', 'c']) {
        const st = await cluster.status(id);
        const peers = st?.peers ?? st?.replication?.peers ?? [];
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

  const answered = async (id) => (await sess.stats(url(id))).reports.answered;
  // One access at a region that is not the home, counted at the home before this returns. The first
  // read of a replica may come before the row arrived (404, not reported): it is retried until 200.
  const remote = async (id, sid) => {
    const before0 = await answered(id);
    const r = await cluster.waitFor(async () => {
      const x = await sess.get(url(id), sid);
      return x.status === 200 ? x : undefined;
    }, 10000, 30);
    assert.ok(r, `${sid} never readable at ${id}`);
    assert.ok(await cluster.waitFor(async () => (await answered(id)) === before0 + 1, 10000, 20),
      `the home never answered ${id}'s report`);
    return r.json;
  };
  const home = async (sid) => {
    const r = await sess.get(url('a'), sid);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.home, 'a');
  };

  test('a session moves once one region has migrate_share of its last migrate_window accesses', async () => {
    const c = await sess.create(url('a'), { id: 'share', data: { v: 1 } });
    assert.equal(c.status, 201, c.text);
    const outA = await metric('a', 'edgelite_sessions_migrations_out_total');
    const recvA = await metric('a', 'edgelite_sessions_access_reports_received_total');
    const stay = async (step) =>
      assert.equal(await metric('a', 'edgelite_sessions_migrations_out_total'), outA, `moved at step ${step}`);
    // window (oldest first) after each step; the share needed is 3 of 5 (0.6), with at least 4 counted
    await remote('b', 'share'); await stay(1);   // [b]            too few
    await remote('b', 'share'); await stay(2);   // [b b]          too few
    await remote('c', 'share'); await stay(3);   // [b b c]        too few (b has 2/3)
    await home('share'); await stay(4);          // [b b c a]      b 2/4
    await remote('c', 'share'); await stay(5);   // [b b c a c]    b 2/5, c 2/5
    const last = await remote('c', 'share');     // [b c a c c]    c 3/5: moves (over all six, c would have 3/6)
    assert.equal(last.home, 'a', 'the read that moves it is still served by the old home');
    assert.equal(await metric('a', 'edgelite_sessions_migrations_out_total'), outA + 1, 'no move at step 6');
    assert.equal(await metric('a', 'edgelite_sessions_access_reports_received_total'), recvA + 5);
    for (const id of ['a', 'b', 'c']) {
      const r = await cluster.waitFor(async () => {
        const x = await sess.get(url(id), 'share');
        return x.status === 200 && x.json.home === 'c' ? x : undefined;
      }, 10000, 30);
      assert.ok(r, `region ${id} does not see home c`);
      assert.equal(r.json.epoch, 2);
      assert.deepEqual(r.json.data, { v: 1 });
    }
    const s = await sess.stats(url('c'));
    assert.equal(s.migrations.in, 1);
  });

  test('a target at capacity refuses the share migration, counted by reason, and the window restarts', async () => {
    // c is home of 'share' now, its one allowed session.
    const c = await sess.create(url('a'), { id: 'share-cap', data: { v: 2 } });
    assert.equal(c.status, 201, c.text);
    const name = 'edgelite_sessions_migrations_refused_total{reason="capacity"}';
    const r0 = await metric('a', name);
    await remote('c', 'share-cap');              // [c]
    await remote('c', 'share-cap');              // [c c]
    await remote('c', 'share-cap');              // [c c c]
    assert.equal(await metric('a', name), r0, 'refused before migrate_min_accesses');
    await remote('c', 'share-cap');              // [c c c c]: 4/4, c is full: refused, the window restarts
    assert.equal(await metric('a', name), r0 + 1, 'no refusal counted');
    await remote('c', 'share-cap');              // [c]
    await remote('c', 'share-cap');              // [c c]
    assert.equal(await metric('a', name), r0 + 1, 'the window did not restart after the refusal');
    const s = await sess.stats(url('a'));
    assert.equal(s.migrations.refused.capacity, r0 + 1);
    assert.equal((await sess.get(url('a'), 'share-cap')).json.home, 'a');
  });
});
