// SPDX-License-Identifier: MIT
// One node per data directory and one process per port (issue 9, items 4 and 5): a second node on the
// same --data exits 2 naming the holder's pid; a second process on the same port exits 2 and the first
// keeps every request; the data directory is 0700 and its files 0600; --config with several regions
// needs --region.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { runEdge, startNode, tmpDir } from './lib/node.mjs';

const T = { timeout: 60000 };
const dirs = [];
function fresh(prefix) {
  const d = tmpDir(prefix);
  dirs.push(d);
  return d;
}
after(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

describe('exclusive data directory and port', { timeout: 180000 }, () => {
  test('a second node on the same data directory exits 2 naming the holder; the first is untouched', T, async () => {
    const data = path.join(fresh('edgelite-lock-'), 'data');
    const first = await startNode({ dataDir: data });
    try {
      const c = createClient({ url: first.url });
      await c.execute('CREATE TABLE k (id INTEGER PRIMARY KEY)');
      await c.execute('INSERT INTO k VALUES (1)');
      const second = await runEdge(['serve', '--listen', '127.0.0.1:0', '--data', data]);
      assert.equal(second.code, 2, second.stderr);
      assert.match(second.stderr, new RegExp(`in use by another edgelite node \\(pid ${first.proc.pid}\\)`));
      assert.doesNotMatch(second.stdout, /listening/);
      assert.equal(Number((await c.execute('SELECT count(*) FROM k')).rows[0][0]), 1);
      c.close();
      // A stopped (or killed) holder leaves the directory free.
      await first.kill('SIGKILL');
      await first.restart();
      const c2 = createClient({ url: first.url });
      assert.equal(Number((await c2.execute('SELECT count(*) FROM k')).rows[0][0]), 1);
      c2.close();
    } finally {
      await first.stop();
    }
  });

  test('a second process on the same port exits 2; the first answers every request', T, async () => {
    const first = await startNode({ dataDir: path.join(fresh('edgelite-port-a-'), 'd'), args: ['--threads', '4'] });
    try {
      const c = createClient({ url: first.url });
      await c.execute('CREATE TABLE mine (id INTEGER PRIMARY KEY)');
      const second = await runEdge(['serve', '--listen', `127.0.0.1:${first.port}`, '--data',
        path.join(fresh('edgelite-port-b-'), 'd'), '--threads', '4']);
      assert.equal(second.code, 2, second.stderr);
      assert.match(second.stderr, /address already in use/);
      // Every request reaches the first node's database (its four loops share one socket).
      for (let i = 0; i < 40; i++) {
        const f = createClient({ url: first.url });
        await f.execute({ sql: 'INSERT INTO mine VALUES (?)', args: [i] });
        f.close();
      }
      assert.equal(Number((await c.execute('SELECT count(*) FROM mine')).rows[0][0]), 40);
      c.close();
    } finally {
      await first.stop();
    }
  });

  test('the data directory is 0700 and its files 0600', T, async () => {
    const base = fresh('edgelite-perm-');
    const data = path.join(base, 'nested', 'data');
    const n = await startNode({ dataDir: data });
    try {
      const c = createClient({ url: n.url });
      await c.execute('CREATE TABLE p (id INTEGER PRIMARY KEY)');
      await c.execute('INSERT INTO p VALUES (1)');
      c.close();
      assert.equal(fs.statSync(data).mode & 0o777, 0o700);
      const files = fs.readdirSync(data);
      assert.ok(files.includes('LOCK') && files.includes('edgelite.db'), files.join(','));
      for (const f of files) {
        assert.equal(fs.statSync(path.join(data, f)).mode & 0o077, 0, `${f} is readable by others`);
      }
    } finally {
      await n.stop();
    }
    // An existing directory open to others is closed to them.
    const open = path.join(base, 'open');
    fs.mkdirSync(open, { mode: 0o755 });
    fs.chmodSync(open, 0o755);
    const m = await startNode({ dataDir: open });
    try {
      assert.equal(fs.statSync(open).mode & 0o777, 0o700);
    } finally {
      await m.stop();
    }
  });
});

describe('config mistakes', { timeout: 60000 }, () => {
  test('--config with several regions and no --region exits 2 naming them', T, async () => {
    const d = fresh('edgelite-cfg-');
    const cfg = path.join(d, 'c.yaml');
    fs.writeFileSync(cfg, 'cluster: { name: t, secret: s3cret }\nregions:\n  - id: east\n    url: http://127.0.0.1:1\n'
      + '  - id: west\n    url: http://127.0.0.1:2\n');
    const r = await runEdge(['serve', '--config', cfg, '--listen', '127.0.0.1:0', '--data', path.join(d, 'data')]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /east, west/);
    assert.match(r.stderr, /--region/);
    assert.ok(!fs.existsSync(path.join(d, 'data')), 'nothing was created');
  });
});
