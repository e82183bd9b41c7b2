// SPDX-License-Identifier: MIT
// Key rotation for sessions (issue 11, item 3): sessions.key_file holds several keys with ids; the newest
// (highest id) seals new records, every key opens old ones. Proved on a 2-region cluster by restarting
// with key files that lack one key or the other: a record opens only with the key that sealed it. A key
// file that is malformed stops start-up with a message naming it; a single node without sessions.key_file
// keeps a generated key (0600) in its data directory.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startCluster } from './lib/cluster.mjs';
import { runEdge, startNode } from './lib/node.mjs';
import { sess, writeKeyFile } from './lib/sessions.mjs';

describe('sessions_keys', { timeout: 120000 }, () => {
  let cluster;
  let keyDir;
  let keyFile;
  let keys;
  const url = (id) => cluster.url(id);
  const setKeys = (ids) => {
    fs.writeFileSync(keyFile, ids.map((id) => `${id} ${keys[id]}`).join('\n') + '\n', { mode: 0o600 });
  };
  const restartAll = async () => {
    await cluster.stop('a');
    await cluster.stop('b');
    await cluster.restart('a');
    await cluster.restart('b');
  };
  const readable = async (id, sid) => (await sess.get(url(id), sid)).status;

  before(async () => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-sesskeys-'));
    ({ file: keyFile, keys } = writeKeyFile(keyDir, [1]));
    keys[7] = 'ab'.repeat(32);
    cluster = await startCluster({ regions: 2, sessions: { key_file: keyFile } });
  });
  after(async () => {
    if (cluster) await cluster.destroy();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  });

  test('new records use the newest key; old ones still open; each needs its own key', async () => {
    const old = await sess.create(url('a'), { id: 'old', data: { sealed: 'by key 1' } });
    assert.equal(old.status, 201, old.text);
    assert.ok(await cluster.waitFor(async () => (await readable('b', 'old')) === 200, 10000, 50));
    setKeys([1, 7]); // rotation: 7 is newest
    await restartAll();
    assert.equal(await readable('a', 'old'), 200);
    const neu = await sess.create(url('a'), { id: 'new', data: { sealed: 'by key 7' } });
    assert.equal(neu.status, 201, neu.text);
    assert.ok(await cluster.waitFor(async () => (await readable('b', 'new')) === 200, 10000, 50));
    // Rewritten after the rotation: sealed again with key 7.
    const moved = await sess.create(url('a'), { id: 'rewritten', data: { v: 1 } });
    assert.equal(moved.status, 201);
    setKeys([1]);
    await restartAll();
    assert.equal(await readable('a', 'old'), 200);
    const r = await sess.get(url('b'), 'new');
    assert.equal(r.status, 500, r.text);
    assert.equal(r.json.code, 'SESSION_UNREADABLE');
    assert.match(r.json.error, /key id is not in sessions.key_file/);
    setKeys([7]);
    await restartAll();
    assert.equal(await readable('a', 'old'), 500);
    assert.equal(await readable('b', 'new'), 200);
    assert.equal(await readable('b', 'rewritten'), 200);
    setKeys([1, 7]);
    await restartAll();
    for (const id of ['a', 'b']) {
      for (const sid of ['old', 'new', 'rewritten']) assert.equal(await readable(id, sid), 200, `${id} ${sid}`);
    }
    assert.deepEqual((await sess.get(url('b'), 'old')).json.data, { sealed: 'by key 1' });
  });

  test('a malformed key file stops start-up with a clear message', async () => {
    const bad = path.join(keyDir, 'bad.keys');
    fs.writeFileSync(bad, '1 not-hex\n', { mode: 0o600 });
    const cfg = fs.readFileSync(cluster.regions.a.config, 'utf8').replace(keyFile, bad);
    const cfgFile = path.join(keyDir, 'bad-config.yaml');
    fs.writeFileSync(cfgFile, cfg);
    await cluster.stop('a');
    const r = await runEdge(['serve', '--config', cfgFile, '--region', 'a'], { timeoutMs: 10000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /bad\.keys: key line 1: the key must be 64 hex digits/);
    await cluster.restart('a');
  });

  test('a single node without sessions.key_file keeps its own key, mode 0600', async () => {
    const node = await startNode();
    try {
      const c = await sess.create(node.url, { id: 'solo', data: { x: 1 } });
      assert.equal(c.status, 201, c.text);
      const st = fs.statSync(path.join(node.dataDir, 'sessions.key'));
      assert.equal(st.mode & 0o777, 0o600);
      assert.deepEqual((await sess.get(node.url, 'solo')).json.data, { x: 1 });
    } finally {
      await node.destroy();
    }
  });
});
