// SPDX-License-Identifier: MIT
// Session expiry (issue 11, item 4) on a real 3-region cluster whose clocks disagree: b runs 3 s behind,
// c 3 s ahead. Expiry follows the home's clock, so a session is alive and then gone in every region at
// the same moment of the home's time; reads slide the TTL (at the home and, through access reports,
// elsewhere); sessions.max_lifetime_s ends it whatever the reads.
// Times are only waited for (until the reported expires_at has passed), never asserted as speeds.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { sess, writeKeyFile } from './lib/sessions.mjs';

describe('sessions_expiry', { timeout: 120000 }, () => {
  let cluster;
  let keyDir;
  const ids = ['a', 'b', 'c'];
  const url = (id) => cluster.url(id);
  // The home's clock is this process's clock (a has no offset); expires_at is in it.
  const untilPast = async (t, margin = 250) => { const d = t + margin - Date.now(); if (d > 0) await sleep(d); };

  before(async () => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-sesskeys-'));
    const { file } = writeKeyFile(keyDir, [1]);
    cluster = await startCluster({
      regions: 3,
      sessions: { key_file: file, migrate_after: 0, max_lifetime_s: 4, touch_interval_ms: 50 },
      regionArgs: { b: ['--clock-offset-ms', '-3000'], c: ['--clock-offset-ms', '3000'] },
      replication: { max_clock_skew_ms: 10000 },
    });
    // Each region needs its measured offset to a (PING/PONG) before its verdicts are the home's.
    for (const id of ['b', 'c']) {
      const ok = await cluster.waitFor(async () =>
        Number.isFinite(await cluster.metric(id, 'edgelite_repl_peer_clock_offset_ms{peer="a"}')), 15000, 100);
      assert.ok(ok, `region ${id} never measured a's clock`);
    }
  });
  after(async () => {
    if (cluster) await cluster.destroy();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  });

  const everywhere = async (sid, want) => {
    for (const id of ids) {
      const r = await sess.get(url(id), sid);
      assert.equal(r.status, want, `region ${id}: ${r.text}`);
    }
  };
  const replicated = async (sid) => {
    for (const id of ids) {
      assert.ok(await cluster.waitFor(async () => (await sess.get(url(id), sid)).status === 200, 10000, 20),
        `region ${id} never saw ${sid}`);
    }
  };

  test('a session is gone in every region once the home\'s clock passes expires_at', async () => {
    const c = await sess.create(url('a'), { id: 'short', data: { x: 1 }, ttl_s: 2 });
    assert.equal(c.status, 201, c.text);
    await replicated('short'); // c, 3 s ahead, would call it expired at once by its own clock
    await untilPast(c.json.expires_at);
    await everywhere('short', 404); // b, 3 s behind, would still serve it by its own clock
    assert.equal((await sess.put(url('b'), 'short', { data: {} })).status, 404);
  });

  test('reads at the home slide the TTL in every region', async () => {
    const c = await sess.create(url('a'), { id: 'slide', data: {}, ttl_s: 2 });
    assert.equal(c.status, 201, c.text);
    await replicated('slide');
    let last;
    const seen = [];
    for (let i = 0; i < 5; i++) { // 3 s of reads, past the first expiry
      await sleep(600);
      last = await sess.get(url('a'), 'slide');
      seen.push([Date.now() - c.json.expires_at, last.status, last.json?.expires_at - c.json.expires_at]);
      assert.equal(last.status, 200, `${last.text} ${JSON.stringify(seen)}`);
    }
    assert.ok(last.json.expires_at > c.json.expires_at, 'the TTL did not slide');
    await untilPast(c.json.expires_at, 400);
    // Past the first expiry: alive everywhere (the touch replicated), until the slid expiry.
    let statuses;
    assert.ok(await cluster.waitFor(async () => {
      statuses = [];
      for (const id of ids) statuses.push((await sess.get(url(id), 'slide')).status);
      return statuses.every((x) => x === 200);
    }, 3000, 50), `the slid TTL did not reach every region: ${statuses} ${JSON.stringify(seen)} now ${Date.now() - c.json.expires_at}`);
  });

  test('reads in another region slide the TTL at the home', async () => {
    const c = await sess.create(url('a'), { id: 'remote-slide', data: {}, ttl_s: 2 });
    assert.equal(c.status, 201, c.text);
    await replicated('remote-slide');
    for (let i = 0; i < 5; i++) {
      await sleep(600);
      const r = await sess.get(url('c'), 'remote-slide');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.home, 'a'); // migrate_after: 0 keeps it at a
    }
    await untilPast(c.json.expires_at, 400);
    const r = await sess.get(url('a'), 'remote-slide');
    assert.equal(r.status, 200, 'the home did not slide the TTL on c\'s reads');
    assert.ok(r.json.expires_at > c.json.expires_at);
  });

  test('sessions.max_lifetime_s ends a session whatever the reads', async () => {
    const c = await sess.create(url('a'), { id: 'lifetime', data: {}, ttl_s: 3 });
    assert.equal(c.status, 201, c.text);
    const created = Date.now();
    await replicated('lifetime');
    let maxExp = 0;
    for (let guard = 0; guard < 200 && Date.now() < created + 4500; guard++) {
      const r = await sess.get(url('a'), 'lifetime');
      if (r.status !== 200) break;
      maxExp = Math.max(maxExp, r.json.expires_at);
      await sleep(300);
    }
    assert.ok(maxExp > 0);
    assert.ok(maxExp <= c.json.expires_at - 3000 + 4000 + 50, `expires_at ${maxExp} past the lifetime`);
    await untilPast(maxExp);
    await everywhere('lifetime', 404);
  });

  test('ttl_s beyond max_lifetime_s is refused', async () => {
    const r = await sess.create(url('a'), { data: {}, ttl_s: 5 });
    assert.equal(r.status, 400, r.text);
  });
});
