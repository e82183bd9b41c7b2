// SPDX-License-Identifier: MIT
// Sessions (issue 11): an acknowledged PUT survives SIGKILL. The home's writer runs the session
// writes it took together in one savepoint and answers them after COMMIT; 16 clients PUT their own
// session in sequence while the node is SIGKILLed, and after a restart on the same data directory
// every session holds at least its last acknowledged write, with version = writes + 1 (no write
// applied twice or torn).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { sess, writeKeyFile } from './lib/sessions.mjs';

describe('sessions_sigkill', { timeout: 60000 }, () => {
  let cluster;
  let keyDir;
  before(async () => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-sesskill-'));
    const { file } = writeKeyFile(keyDir, [1]);
    cluster = await startCluster({ regions: 1, sessions: { key_file: file } });
  });
  after(async () => {
    if (cluster) await cluster.destroy();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  });

  test('every acknowledged PUT survives SIGKILL of the home', async () => {
    const url = cluster.url('a');
    const W = 16;
    const MAX = 4000;
    const acked = new Array(W).fill(0);
    let total = 0;
    let killed = false;
    for (let w = 0; w < W; w++) {
      const c = await sess.create(url, { id: `kill-${w}`, data: { n: 0, pad: 'p'.repeat(512) } });
      assert.equal(c.status, 201, c.text);
    }
    const worker = async (w) => {
      for (let n = 1; n <= MAX; n++) {
        let r;
        try {
          r = await sess.put(url, `kill-${w}`, { data: { n, pad: 'p'.repeat(512) } });
        } catch (e) {
          if (killed) return; // cut off by the kill: not acknowledged
          throw e;
        }
        if (r.status !== 200) {
          if (killed) return;
          throw new Error(`PUT ${w}/${n} failed before the kill: ${r.status} ${r.text}`);
        }
        assert.equal(r.json.version, n + 1);
        acked[w] = n;
        total++;
      }
    };
    const workers = Array.from({ length: W }, (_, w) => worker(w));
    for (let guard = 0; guard < 400 && total < 600; guard++) await sleep(25);
    assert.ok(total > 0, 'no PUT was acknowledged before the kill');
    killed = true;
    const ex = await cluster.kill('a', 'SIGKILL');
    assert.equal(ex.signal, 'SIGKILL');
    await Promise.all(workers);
    assert.ok(acked.every((n) => n < MAX), 'the load finished before the kill: the test proves nothing');

    await cluster.restart('a');
    for (let w = 0; w < W; w++) {
      const r = await sess.get(url, `kill-${w}`);
      assert.equal(r.status, 200, r.text);
      assert.ok(r.json.data.n >= acked[w], `session ${w}: acknowledged write ${acked[w]}, stored ${r.json.data.n}`);
      assert.ok(r.json.data.n <= acked[w] + 1, `session ${w}: stored ${r.json.data.n} was never sent`);
      assert.equal(r.json.version, r.json.data.n + 1, `session ${w}: version ${r.json.version} for write ${r.json.data.n}`);
    }
  });
});
