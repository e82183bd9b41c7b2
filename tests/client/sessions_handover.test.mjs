// SPDX-License-Identifier: MIT
// Sessions: a replica never shows a session mixed from two origins during a handover. The home moves
// from a to b while the a<->c link is slow (chaos proxies), so c hears b's writes as the new home
// before, or around, a's handover entry. An observer polls c throughout; every answer it gets must
// be a state some writer actually produced: (version, epoch, home, data) exactly as answered to the
// writer (or as created / handed over), never b's data under a's epoch, nor a's home with b's version.
// c's own reads would draw the session to c: c is at its capacity, so those migrations are refused.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { sess, writeKeyFile } from './lib/sessions.mjs';

describe('sessions: handover seen whole', { timeout: 180000 }, () => {
  let cluster;
  let keyDir;
  const url = (id) => cluster.url(id);
  const metric = (id, name) => cluster.metric(id, name);

  before(async () => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-sesskeys-'));
    const { file } = writeKeyFile(keyDir, [1]);
    cluster = await startCluster({
      regions: 3,
      proxies: 'pair',
      sessions: { key_file: file, migrate_after: 3, touch_interval_ms: 50 },
      capacity: { c: { max_sessions: 1 } },
    });
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
  const readAt = async (id, sid) => {
    const r = await cluster.waitFor(async () => {
      const x = await sess.get(url(id), sid);
      return x.status === 200 ? x : undefined;
    }, 10000, 30);
    assert.ok(r, `${sid} never readable at ${id}`);
    return r.json;
  };
  // One read at a region that is not the home, counted by the home before this returns.
  const remote = async (id, sid) => {
    const n0 = await answered(id);
    const r = await readAt(id, sid);
    assert.ok(await cluster.waitFor(async () => (await answered(id)) === n0 + 1, 10000, 20),
      `the home never answered ${id}'s report`);
    return r;
  };

  test('every read at a replica during a migration is a state a writer produced', async () => {
    const own = await sess.create(url('c'), { id: 'c-own', data: {} });
    assert.equal(own.status, 201, own.text);
    const c = await sess.create(url('a'), { id: 'ho', data: { v: 0 } });
    assert.equal(c.status, 201, c.text);
    await remote('c', 'ho');
    await remote('b', 'c-own'); // c is full in b's eyes too before b becomes a home c reads from
    const outA = await metric('a', 'edgelite_sessions_migrations_out_total');
    await remote('b', 'ho');
    await remote('b', 'ho');
    // The a<->c link turns slow just before the access that moves the home.
    const slow = [cluster.proxies['a>c'], cluster.proxies['c>a']];
    for (const px of slow) await px.latency(700);
    // Each state a writer produced: version -> allowed { epoch, home, data }.
    const allowed = new Map([[1, [{ epoch: 1, home: 'a', data: { v: 0 } }, { epoch: 2, home: 'b', data: { v: 0 } }]]]);
    const seen = [];
    let stop = false;
    let finalVersion = Infinity;
    const observer = (async () => {
      for (let i = 0; i < 3000 && !stop; i++) {
        const r = await sess.get(url('c'), 'ho');
        if (r.status === 200) {
          const { version, epoch, home, data } = r.json;
          seen.push({ version, epoch, home, data });
          if (version === finalVersion && home === 'b') break;
        }
        await sleep(5);
      }
    })();
    const deferred0 = await metric('c', 'edgelite_repl_deferred_total');
    await remote('b', 'ho'); // the third: a hands the session over to b
    assert.ok(await cluster.waitFor(async () =>
      (await metric('a', 'edgelite_sessions_migrations_out_total')) === outA + 1, 10000, 20), 'it did not move');
    // b writes as the new home, at once: c may hear these before a's handover.
    const N = 6;
    let top = 0;
    for (let i = 1; i <= N; i++) {
      const w = await sess.put(url('b'), 'ho', { data: { n: i } });
      assert.equal(w.status, 200, w.text);
      assert.equal(w.json.home, 'b');
      allowed.set(w.json.version, [{ epoch: w.json.epoch, home: 'b', data: { n: i } }]);
      top = Math.max(top, w.json.version);
    }
    finalVersion = top; // the observer stops once it saw it (with home b)
    const done = await Promise.race([observer.then(() => true), sleep(30000).then(() => false)]);
    stop = true;
    await observer;
    for (const px of slow) await px.reset();
    assert.ok(done, 'the observer never saw the final state at c');
    console.log(`# c: ${seen.length} reads, deferred entries ${await metric('c', 'edgelite_repl_deferred_total') - deferred0}`);
    const last = seen[seen.length - 1];
    assert.equal(last.version, finalVersion);
    assert.equal(last.home, 'b');
    for (const s of seen) {
      const ok = (allowed.get(s.version) ?? []).some((x) =>
        x.epoch === s.epoch && x.home === s.home && JSON.stringify(x.data) === JSON.stringify(s.data));
      assert.ok(ok, `c showed a state no writer produced: ${JSON.stringify(s)}; ` +
        `produced: ${JSON.stringify([...allowed])}`);
    }
    // Versions never go back at c.
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i].version >= seen[i - 1].version, 'version went back');
  });
});
