// SPDX-License-Identifier: MIT
// The latency trace (src/repl/trace.h, bench/realtime.sh --trace): with EDGE_TRACE_FILE set, a change's
// hops are recorded in causal order, a local write's (commit, feed, loop, written) and a peer's
// (commit, peer_queued, peer_sent at the origin; rx, apply, applied, feed, loop, written where the
// subscriber is), so the bench can give each hop's share of write-to-event latency.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startCluster } from './lib/cluster.mjs';
import { openRt } from './lib/rt.mjs';

const T = { timeout: 60000 };

describe('realtime latency trace', { timeout: 120000 }, () => {
  let c;
  let file;
  before(async () => {
    file = path.join(fs.mkdtempSync('/tmp/edgelite-rtt-'), 'trace.txt');
    process.env.EDGE_TRACE_FILE = file; // the nodes inherit it
    try {
      c = await startCluster({ regions: 2, extraArgs: ['--log-level', 'warn'] });
    } finally {
      delete process.env.EDGE_TRACE_FILE;
    }
    await c.createTable('tr', 'CREATE TABLE IF NOT EXISTS tr (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  // hop -> [ns, pid] of the change origin:seq (the first line of each hop)
  const hopsOf = (origin, seq) => {
    const h = {};
    for (const l of fs.readFileSync(file, 'utf8').split('\n')) {
      const [hop, o, s, ns, pid] = l.split(' ');
      if (o === origin && s === String(seq) && pid && !(hop in h)) h[hop] = [BigInt(ns), pid];
    }
    return h;
  };
  const inOrder = (h, names) => {
    for (const n of names) assert.ok(h[n], `hop ${n} missing: ${JSON.stringify(Object.keys(h))}`);
    for (let i = 1; i < names.length; i++) {
      assert.ok(h[names[i - 1]][0] <= h[names[i]][0], `${names[i - 1]} after ${names[i]}`);
    }
  };

  test('a local and a replicated change each leave their hops, in order, in the node that made them', T, async () => {
    const s = await openRt(c.url('a'));
    assert.equal((await s.subscribe({ id: 1, tables: ['tr'] })).type, 'ready');
    assert.ok((await c.sql('a', 'INSERT INTO tr VALUES (1, ?)', ['here'])).ok);
    const ev1 = await s.waitFor((m) => m.type === 'change' && m.pk === 1, 10000);
    assert.ok((await c.sql('b', 'INSERT INTO tr VALUES (2, ?)', ['there'])).ok);
    const ev2 = await s.waitFor((m) => m.type === 'change' && m.pk === 2, 10000);
    await s.close();
    const pidA = String(c.regions.a.proc.pid), pidB = String(c.regions.b.proc.pid);

    const local = hopsOf(ev1.origin, ev1.seq);
    assert.equal(ev1.origin, 'a');
    inOrder(local, ['commit', 'feed', 'loop', 'written']);
    for (const n of ['commit', 'feed', 'loop', 'written']) assert.equal(local[n][1], pidA, n);

    const remote = hopsOf(ev2.origin, ev2.seq);
    assert.equal(ev2.origin, 'b');
    inOrder(remote, ['commit', 'peer_queued', 'peer_sent']);
    inOrder(remote, ['rx', 'apply', 'applied', 'feed', 'loop', 'written']);
    assert.ok(remote.commit[0] <= remote.rx[0]);
    for (const n of ['commit', 'peer_queued', 'peer_sent']) assert.equal(remote[n][1], pidB, n);
    for (const n of ['rx', 'apply', 'applied', 'feed', 'loop', 'written']) assert.equal(remote[n][1], pidA, n);
  });
});
