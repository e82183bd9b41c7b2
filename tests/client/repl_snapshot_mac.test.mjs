// SPDX-License-Identifier: MIT
// The snapshot's answer is bound to its request (issue 9; docs/internals/peer-protocol.md, "HTTP
// requests between regions"): an attacker on the path who swaps the snapshot for another database
// and announces that database's own size and SHA-256 (which is all the hash header guards against)
// cannot recompute X-Edge-Snapshot-Mac, so the seeding region refuses it: it starts empty, replays
// the logs and ends with the real data, the forged row nowhere.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { createClient } from '@libsql/client';

import { startCluster } from './lib/cluster.mjs';
import { authHeader, challenge } from './lib/cluster_auth.mjs';
import { closeAll, peerUrlVia, tcpProxy } from './lib/proxy.mjs';

/**
 * A TCP proxy to 127.0.0.1:upstreamPort. While `fake` is set, the answer to GET /v1/snapshot has its
 * body replaced by `fake` and its Content-Length, X-Edge-Snapshot-Size and X-Edge-Snapshot-Sha256
 * rewritten to match (every other header, the MAC included, passes as the server sent it).
 */
async function tamperingProxy(upstreamPort) {
  const state = { fake: null, swapped: 0 };
  const px = await tcpProxy(upstreamPort, ({ client, up }) => {
    let first = Buffer.alloc(0);
    let decided = false;
    let swap = false;
    let resp = Buffer.alloc(0);
    return {
      fromClient(d) {
        if (!decided) {
          first = Buffer.concat([first, d]);
          if (first.indexOf('\r\n') < 0) return;
          decided = true;
          swap = state.fake !== null && first.toString('latin1').startsWith('GET /v1/snapshot ');
          up.write(first);
          return;
        }
        up.write(d);
      },
      fromUpstream(d) {
        if (!swap) { client.write(d); return; }
        resp = Buffer.concat([resp, d]);
        const end = resp.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = resp.subarray(0, end).toString('latin1');
        const m = /^content-length:\s*(\d+)/im.exec(head);
        if (!m || resp.length < end + 4 + Number(m[1])) return;
        const fake = state.fake;
        const sha = crypto.createHash('sha256').update(fake).digest('hex');
        const newHead = head
          .replace(/^content-length:.*$/im, `Content-Length: ${fake.length}`)
          .replace(/^x-edge-snapshot-size:.*$/im, `X-Edge-Snapshot-Size: ${fake.length}`)
          .replace(/^x-edge-snapshot-sha256:.*$/im, `X-Edge-Snapshot-Sha256: ${sha}`);
        state.swapped++;
        swap = false;
        client.end(Buffer.concat([Buffer.from(`${newHead}\r\n\r\n`, 'latin1'), fake]));
      },
    };
  });
  return { ...px, state };
}

/** A genuine snapshot of base, fetched as region `region` would (repl/http_auth.c). */
async function snapshotOf(c, base, region) {
  const ch = await challenge(base);
  const h = authHeader({ secret: c.secret, cluster: c.name, region, nonceHex: ch.body.nonce, cnonce: ch.cnonce,
    method: 'GET', path: '/v1/snapshot' });
  const res = await fetch(`${base}/v1/snapshot`, { headers: { 'x-edge-cluster-auth': h } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('x-edge-snapshot-mac') ?? '', /^[0-9a-f]{64}$/, 'the answer carries its MAC');
  return Buffer.from(await res.arrayBuffer());
}

describe('repl_snapshot_mac', { timeout: 180000 }, () => {
  let c;
  const px = {};
  before(async () => {
    c = await startCluster({
      regions: 3,
      extraArgs: ['--log-level', 'info'],
      // c reaches a and b through proxies that can swap a snapshot in transit
      peerUrl: peerUrlVia('c', px, tamperingProxy),
    });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => {
    if (c) await c.destroy();
    await closeAll(px);
  });

  test('a snapshot swapped on the path, with its size and hash announced, is refused', async () => {
    for (let i = 1; i <= 20; i++) assert.ok((await c.sql('a', 'INSERT INTO t VALUES (?, ?)', [i, `row ${i}`])).ok);
    assert.ok((await c.waitConverged(['t'], 15000)).ok);
    // the forgery: a's real database with one more row, a valid SQLite file
    const file = path.join(c.root, 'forged.db');
    fs.writeFileSync(file, await snapshotOf(c, c.url('a'), 'c'));
    const db = createClient({ url: `file:${file}` });
    await db.execute("INSERT INTO t VALUES (999, 'forged')");
    db.close();
    const fake = fs.readFileSync(file);
    assert.equal(fake.subarray(0, 15).toString(), 'SQLite format 3');

    await c.stop('c');
    fs.rmSync(c.regions.c.dataDir, { recursive: true, force: true });
    px.a.state.fake = fake;
    px.b.state.fake = fake;
    await c.restart('c'); // empty: asks a and b for a snapshot, gets the forgery from both
    assert.ok(px.a.state.swapped + px.b.state.swapped >= 2, 'the proxies swapped no snapshot');
    assert.match(c.stderr('c'), /snapshot of [ab] refused: its X-Edge-Snapshot-Mac/);
    assert.doesNotMatch(c.stderr('c'), /seeded from a snapshot/);
    px.a.state.fake = null;
    px.b.state.fake = null;
    // started empty: the logs bring the real rows, and the forged one is nowhere
    assert.ok((await c.waitConverged(['t'], 20000)).ok, 'c did not converge from the logs');
    for (const id of c.ids) {
      assert.deepEqual(await c.rows(id, 'SELECT count(*) FROM t WHERE id = 999'), [[0]], `${id} holds the forged row`);
      assert.deepEqual(await c.rows(id, 'SELECT count(*) FROM t'), [[20]], id);
    }
  });
});
