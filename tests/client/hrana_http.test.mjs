// SPDX-License-Identifier: MIT
// The unmodified @libsql/client over http:// (Hrana over HTTP, POST /v2/pipeline).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { sleep, startNode } from './lib/node.mjs';
import { clientScenarios, count, freshTable, insertWhenUnlocked, rejectsWithCode } from './lib/scenarios.mjs';

clientScenarios('http');

describe('http: client URL forms', { timeout: 60000 }, () => {
  let node;
  before(async () => { node = await startNode(); });
  after(async () => { if (node) await node.destroy(); });

  test('url with and without a trailing slash', { timeout: 20000 }, async () => {
    for (const u of [node.url, node.url + '/']) {
      const c = createClient({ url: u });
      try {
        const rs = await c.execute('SELECT 1 AS one');
        assert.equal(rs.rows[0].one, 1);
      } finally {
        c.close();
      }
    }
  });
});

// Streams idle longer than the timeout are rolled back and their baton refused with STREAM_EXPIRED.
describe('http: idle stream expiry (--stream-timeout-ms 1000)', { timeout: 60000 }, () => {
  let node;
  let client;
  before(async () => {
    node = await startNode({ args: ['--stream-timeout-ms', '1000'] });
    client = createClient({ url: node.url });
  });
  after(async () => {
    if (client) client.close();
    if (node) await node.destroy();
  });

  test('an idle transaction expires, rolls back and releases the lock', { timeout: 20000 }, async () => {
    const t = freshTable('exp');
    await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
    const tx = await client.transaction('write');
    try {
      await tx.execute(`INSERT INTO ${t} VALUES (1)`);
      await sleep(2500);
      await rejectsWithCode(tx.commit(), 'STREAM_EXPIRED');
    } finally {
      tx.close();
    }
    assert.equal(await count(client, t), 0);
    await insertWhenUnlocked(client, `INSERT INTO ${t} VALUES (?)`, [2], 3000);
    assert.equal(await count(client, t), 1);
  });

  test('a busy transaction outlives the idle timeout', { timeout: 20000 }, async () => {
    const t = freshTable('busy');
    await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
    const tx = await client.transaction('write');
    try {
      // 6 steps 400 ms apart: 2.4 s in total, more than twice the timeout, but never idle for 1 s.
      for (let i = 0; i < 6; i++) {
        await tx.execute({ sql: `INSERT INTO ${t} VALUES (?)`, args: [i] });
        await sleep(400);
      }
      await tx.commit();
    } finally {
      tx.close();
    }
    assert.equal(await count(client, t), 6);
  });
});

describe('http: default idle stream expiry is 10 s', { timeout: 60000 }, () => {
  let node;
  let client;
  before(async () => {
    node = await startNode();
    client = createClient({ url: node.url });
  });
  after(async () => {
    if (client) client.close();
    if (node) await node.destroy();
  });

  test('a transaction idle for 4 s survives, one idle for 11.5 s is rolled back', { timeout: 40000 }, async () => {
    const t = freshTable('exp10');
    await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
    const tx1 = await client.transaction('write');
    try {
      await tx1.execute(`INSERT INTO ${t} VALUES (1)`);
      await sleep(4000);
      await tx1.commit();
    } finally {
      tx1.close();
    }
    assert.equal(await count(client, t), 1);

    const tx2 = await client.transaction('write');
    try {
      await tx2.execute(`INSERT INTO ${t} VALUES (2)`);
      await sleep(11500);
      await rejectsWithCode(tx2.commit(), 'STREAM_EXPIRED');
    } finally {
      tx2.close();
    }
    assert.equal(await count(client, t), 1);
    await insertWhenUnlocked(client, `INSERT INTO ${t} VALUES (?)`, [3], 3000);
    assert.equal(await count(client, t), 2);
  });
});
