// SPDX-License-Identifier: MIT
// Convergence under load: three regions take upserts of the same keys as fast as the C
// load generator can send them (keep-alive, 32 connections each, 5 s, all at once), so the
// writer's group commits, the links and the application of entries all overlap. After
// the load every region must hold byte-identical data. (bench/repl.sh found a
// divergence this way that a slower test did not.)
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startCluster } from './lib/cluster.mjs';

const EDGE_BIN = process.env.EDGE_BIN ?? path.resolve(path.dirname(new URL(import.meta.url).pathname), '../../build/edgelite');
const LOADGEN = path.join(path.dirname(EDGE_BIN), 'bench', 'loadgen');

function runLoadgen(url, bodies, seconds) {
  return new Promise((resolve, reject) => {
    const p = spawn(LOADGEN, ['--url', `${url}/v2/pipeline`, '-m', 'POST', '--bodies-file', bodies, '-c', '32',
      '-d', String(seconds), '--warmup', '0', '--max-requests', '200000', '--fail-on', '"type":"error"', '-q']);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.stderr.on('data', (d) => { out += d; });
    p.on('error', reject);
    // 'close', not 'exit': exit can come before the last of stdout has been read.
    p.on('close', (code) => resolve({ code, out }));
  });
}

describe('convergence under load', { timeout: 120000, skip: fs.existsSync(LOADGEN) ? false : `no ${LOADGEN}` }, () => {
  let c;
  let dir;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'none' });
    await c.createTable('kv', 'CREATE TABLE IF NOT EXISTS kv (id INTEGER PRIMARY KEY, v TEXT, b INTEGER)');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-load-'));
  });
  after(async () => {
    if (c) await c.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('three regions upserting the same 300 keys end byte-identical', async () => {
    const files = c.ids.map((id, r) => {
      const lines = [];
      for (let i = 0; i < 3000; i++) {
        const key = (i * 7919 + r * 13) % 300;
        // Whole-row upserts and single-column updates, so column stamps matter too.
        const sql = i % 3 === 0 ? 'UPDATE kv SET b = coalesce(b, 0) + 1 WHERE id = ?'
          : 'INSERT INTO kv (id, v, b) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v';
        const args = i % 3 === 0 ? [{ type: 'integer', value: String(key) }]
          : [{ type: 'integer', value: String(key) }, { type: 'text', value: `${id}-${i}` },
            { type: 'integer', value: String(i) }];
        lines.push(JSON.stringify({ requests: [{ type: 'execute', stmt: { sql, args } }, { type: 'close' }] }));
      }
      const f = path.join(dir, `${id}.txt`);
      fs.writeFileSync(f, lines.join('\n') + '\n');
      return f;
    });
    const results = await Promise.all(c.ids.map((id, r) => runLoadgen(c.url(id), files[r], 5)));
    for (const [r, res] of results.entries()) {
      assert.equal(res.code, 0, `loadgen against ${c.ids[r]}: ${res.out}`);
      assert.match(res.out, /app_errors=0/, `statement errors in ${c.ids[r]}: ${res.out}`);
    }
    const conv = await c.waitConverged(['kv'], 30000);
    assert.ok(conv.ok, `the regions did not converge: ${JSON.stringify(conv.sums)}`);
    // Every column, not only v: compare the full rows.
    const dump = 'SELECT group_concat(id || \':\' || quote(v) || \':\' || quote(b), \',\') FROM (SELECT * FROM kv ORDER BY id)';
    const same = await c.waitFor(async () => {
      const d = await Promise.all(c.ids.map((id) => c.rows(id, dump)));
      return d.every((x) => JSON.stringify(x) === JSON.stringify(d[0]));
    }, 10000);
    assert.ok(same, 'the regions hold different values in some column');
  });
});
