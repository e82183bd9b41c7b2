// SPDX-License-Identifier: MIT
// The unmodified @libsql/client over ws:// (subprotocol hrana2), plus raw hrana2/hrana3 JSON sessions.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { healthy, startNode } from './lib/node.mjs';
import { clientScenarios, count, freshTable, insertWhenUnlocked } from './lib/scenarios.mjs';
import { openHranaWs } from './lib/ws.mjs';

clientScenarios('ws');

const T = { timeout: 20000 };

function stmt(sql, args = []) {
  return { sql, args, named_args: [], want_rows: true };
}

describe('ws: raw Hrana sessions', { timeout: 120000 }, () => {
  let node;
  let client;
  before(async () => {
    node = await startNode();
    client = createClient({ url: node.wsUrl });
  });
  after(async () => {
    if (client) client.close();
    if (node) await node.destroy();
  });

  test('subprotocol negotiation: hrana2 for the client offer, hrana3 when offered', T, async () => {
    for (const [offer, want] of [[['hrana2', 'hrana1'], 'hrana2'], [['hrana2'], 'hrana2'], [['hrana3'], 'hrana3'],
      [['hrana3', 'hrana2'], 'hrana3']]) {
      const s = await openHranaWs(node.wsUrl, offer);
      try {
        assert.equal(s.protocol, want, `offer ${offer.join(',')}`);
      } finally {
        await s.close();
      }
    }
  });

  test('requests pipelined behind hello are all answered (hrana2)', T, async () => {
    const s = await openHranaWs(node.wsUrl, ['hrana2', 'hrana1']);
    try {
      // Sent in one burst without waiting for hello_ok, like the real client.
      s.send({ type: 'hello', jwt: null });
      const rs = [
        s.request({ type: 'open_stream', stream_id: 0 }),
        s.request({ type: 'store_sql', sql_id: 0, sql: 'SELECT ? + 1 AS x' }),
        s.request({ type: 'execute', stream_id: 0, stmt: { sql_id: 0, args: [{ type: 'integer', value: '41' }], named_args: [], want_rows: true } }),
        s.request({ type: 'execute', stream_id: 0, stmt: stmt('SELECT * FROM no_such_table_ws') }),
        s.request({ type: 'close_stream', stream_id: 0 }),
      ];
      const hello = await s.next();
      assert.equal(hello.type, 'hello_ok');
      const [open, store, exec, bad, close] = await Promise.all(rs);
      assert.equal(open.type, 'response_ok');
      assert.equal(open.response.type, 'open_stream');
      assert.equal(store.response.type, 'store_sql');
      assert.equal(exec.type, 'response_ok');
      assert.equal(exec.response.type, 'execute');
      assert.deepEqual(exec.response.result.rows, [[{ type: 'integer', value: '42' }]]);
      assert.equal(exec.response.result.cols[0].name, 'x');
      assert.equal(bad.type, 'response_error');
      assert.equal(bad.error.code, 'SQLITE_ERROR');
      assert.equal(typeof bad.error.message, 'string');
      assert.equal(close.response.type, 'close_stream');
    } finally {
      await s.close();
    }
  });

  test('stored SQL is visible to every stream of the connection', T, async () => {
    const s = await openHranaWs(node.wsUrl, ['hrana2']);
    try {
      s.send({ type: 'hello', jwt: null });
      assert.equal((await s.next()).type, 'hello_ok');
      await s.request({ type: 'open_stream', stream_id: 1 });
      await s.request({ type: 'open_stream', stream_id: 2 });
      const st = await s.request({ type: 'store_sql', sql_id: 5, sql: "SELECT 'shared' AS v" });
      assert.equal(st.type, 'response_ok');
      for (const sid of [1, 2]) {
        const r = await s.request({ type: 'execute', stream_id: sid, stmt: { sql_id: 5, args: [], named_args: [], want_rows: true } });
        assert.equal(r.type, 'response_ok', JSON.stringify(r));
        assert.equal(r.response.result.rows[0][0].value, 'shared');
      }
      await s.request({ type: 'close_sql', sql_id: 5 });
      const gone = await s.request({ type: 'execute', stream_id: 1, stmt: { sql_id: 5, args: [], named_args: [], want_rows: true } });
      assert.notEqual(gone.type, 'response_ok', 'a closed sql_id must not run');
    } finally {
      await s.close();
    }
  });

  test('hrana3 JSON: get_autocommit and is_autocommit conditions', T, async () => {
    const s = await openHranaWs(node.wsUrl, ['hrana3']);
    try {
      assert.equal(s.protocol, 'hrana3');
      s.send({ type: 'hello', jwt: null });
      assert.equal((await s.next()).type, 'hello_ok');
      await s.request({ type: 'open_stream', stream_id: 0 });
      let ac = await s.request({ type: 'get_autocommit', stream_id: 0 });
      assert.equal(ac.type, 'response_ok');
      assert.deepEqual(ac.response, { type: 'get_autocommit', is_autocommit: true });
      await s.request({ type: 'execute', stream_id: 0, stmt: stmt('BEGIN') });
      ac = await s.request({ type: 'get_autocommit', stream_id: 0 });
      assert.equal(ac.response.is_autocommit, false);
      const b = await s.request({
        type: 'batch', stream_id: 0, batch: {
          steps: [
            { condition: { type: 'is_autocommit' }, stmt: stmt('SELECT 1') },
            { condition: { type: 'not', cond: { type: 'is_autocommit' } }, stmt: stmt('SELECT 2') },
            { stmt: stmt('COMMIT') },
            { condition: { type: 'is_autocommit' }, stmt: stmt('SELECT 3') },
          ],
        },
      });
      assert.equal(b.type, 'response_ok', JSON.stringify(b));
      const { step_results: res, step_errors: errs } = b.response.result;
      assert.equal(res[0], null, 'skipped: a transaction is open');
      assert.equal(errs[0], null);
      assert.equal(res[1].rows[0][0].value, '2');
      assert.notEqual(res[2], null);
      assert.equal(res[3].rows[0][0].value, '3');
      ac = await s.request({ type: 'get_autocommit', stream_id: 0 });
      assert.equal(ac.response.is_autocommit, true);
      await s.request({ type: 'close_stream', stream_id: 0 });
    } finally {
      await s.close();
    }
  });

  test('a dropped socket rolls back its open transactions', T, async () => {
    const t = freshTable('wsdrop');
    await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
    const s = await openHranaWs(node.wsUrl, ['hrana2']);
    s.send({ type: 'hello', jwt: null });
    assert.equal((await s.next()).type, 'hello_ok');
    await s.request({ type: 'open_stream', stream_id: 0 });
    const b = await s.request({ type: 'execute', stream_id: 0, stmt: stmt('BEGIN IMMEDIATE') });
    assert.equal(b.type, 'response_ok');
    const ins = await s.request({ type: 'execute', stream_id: 0, stmt: stmt(`INSERT INTO ${t} VALUES (1)`) });
    assert.equal(ins.type, 'response_ok');
    s.ws.terminate(); // no close frame: the TCP connection just goes away
    await insertWhenUnlocked(client, `INSERT INTO ${t} VALUES (?)`, [2]);
    const rs = await client.execute(`SELECT id FROM ${t}`);
    assert.deepEqual(rs.rows.map((r) => r.id), [2]);
  });

  test('client.close() during a transaction rolls it back', T, async () => {
    const t = freshTable('wsclose');
    await client.execute(`CREATE TABLE ${t} (id INTEGER PRIMARY KEY)`);
    const c = createClient({ url: node.wsUrl });
    const tx = await c.transaction('write');
    await tx.execute(`INSERT INTO ${t} VALUES (1)`);
    c.close();
    await insertWhenUnlocked(client, `INSERT INTO ${t} VALUES (?)`, [2]);
    assert.equal(await count(client, t), 1);
    assert.ok(await healthy(node));
  });
});
