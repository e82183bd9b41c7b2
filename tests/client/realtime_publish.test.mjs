// SPDX-License-Identifier: MIT
// POST /v1/events on a table with a composite primary key (docs/realtime.md, "Publishing"): recordId is the
// array of the key's values in key order, as the events' `pk`; upsert, compare-and-set on the event's version
// in another region, delete, and clear 400s for a recordId that does not fit the key (nothing written); and on a
// table at strong consistency, published at a region that is not the primary: sent on to the primary, answered
// once a majority holds it, with the primary's bookmark.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { startCluster } from './lib/cluster.mjs';
import { openRt } from './lib/rt.mjs';

describe('publish by a composite primary key', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, tables: { acct: 'strong' } });
    await c.createTable('acct', 'CREATE TABLE IF NOT EXISTS acct (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)');
    await c.createTable('line', 'CREATE TABLE IF NOT EXISTS line (tenant TEXT, id INTEGER, v TEXT, n INTEGER, ' +
      'PRIMARY KEY (tenant, id))');
  });
  after(async () => { if (c) await c.destroy(); });

  const post = async (id, body) => {
    const res = await fetch(`${c.url(id)}/v1/events`, { method: 'POST', body: JSON.stringify(body) });
    return { status: res.status, json: await res.json() };
  };

  test('upsert, compare-and-set and delete by [tenant, id]', { timeout: 90000 }, async () => {
    const s = await openRt(c.url('b'));
    assert.equal((await s.subscribe({ id: 1, tables: ['line'], keys: [['t1', 7]] })).type, 'ready');
    const p1 = await post('a', { type: 'insert', table: 'line', recordId: ['t1', 7], data: { v: 'new', n: 1 } });
    assert.equal(p1.status, 200, JSON.stringify(p1.json));
    // another tenant's row with the same id is another row
    const p0 = await post('a', { type: 'insert', table: 'line', recordId: ['t2', 7], data: { v: 'other', n: 9 } });
    assert.equal(p0.status, 200, JSON.stringify(p0.json));
    const ev = await s.waitFor((m) => m.type === 'change', 20000);
    assert.deepEqual(ev.pk, ['t1', 7]);
    assert.deepEqual(ev.row, { tenant: 't1', id: 7, v: 'new', n: 1 });
    assert.equal(ev.version, p1.json.version);
    // b has the row at that version: a CAS update from b succeeds, a second one with the old version is refused
    const p2 = await post('b', { type: 'update', table: 'line', recordId: ['t1', 7], data: { n: 2 }, version: ev.version });
    assert.equal(p2.status, 200, JSON.stringify(p2.json));
    const p3 = await post('b', { type: 'update', table: 'line', recordId: ['t1', 7], data: { n: 3 }, version: ev.version });
    assert.equal(p3.status, 409, JSON.stringify(p3.json));
    assert.equal(p3.json.code, 'VERSION_CONFLICT');
    assert.match(p3.json.message, new RegExp(p2.json.version));
    // the key columns in data are ignored: the key is recordId
    const up = await s.waitFor((m) => m.type === 'change' && m.op === 'update', 20000);
    assert.deepEqual(up.row, { tenant: 't1', id: 7, v: 'new', n: 2 });
    // refused, nothing written: a scalar for a two-column key, a wrong length, a null part
    for (const recordId of [7, ['t1'], ['t1', 7, 1], ['t1', null]]) {
      const r = await post('b', { type: 'update', table: 'line', recordId, data: { n: 99 } });
      assert.equal(r.status, 400, `${JSON.stringify(recordId)}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.code, 'PRIMARY_KEY', JSON.stringify(r.json));
      assert.match(r.json.message, /\(tenant, id\)/);
    }
    const p4 = await post('b', { type: 'delete', table: 'line', recordId: ['t1', 7], version: p2.json.version });
    assert.equal(p4.status, 200, JSON.stringify(p4.json));
    const del = await s.waitFor((m) => m.type === 'change' && m.op === 'delete', 20000);
    assert.deepEqual(del.pk, ['t1', 7]);
    assert.ok((await c.waitConverged(['line'], 30000)).ok);
    for (const id of c.ids) {
      const rows = await c.rows(id, 'SELECT tenant, id, v, n FROM line ORDER BY tenant, id');
      assert.deepEqual(rows, [['t2', 7, 'other', 9]], `region ${id}`);
    }
    await s.close();
  });

  test('a strong table: published at a replica, written by the primary, answered after a majority', { timeout: 60000 },
    async () => {
      assert.equal(c.primary, 'a');
      const s = await openRt(c.url('c'));
      assert.equal((await s.subscribe({ id: 1, tables: ['acct'] })).type, 'ready');
      const p1 = await post('b', { type: 'insert', table: 'acct', recordId: 1, data: { v: 'x', n: 10 } });
      assert.equal(p1.status, 200, JSON.stringify(p1.json));
      assert.match(p1.json.bookmark, /^a:\d+$/, 'the primary wrote it');
      // answered after a majority (a and one more) holds it: a read at a or with the bookmark sees it
      assert.deepEqual(await c.rows('a', 'SELECT v, n FROM acct WHERE id = 1'), [['x', 10]]);
      const ev = await s.waitFor((m) => m.type === 'change', 20000);
      assert.equal(ev.origin, 'a');
      assert.equal(ev.version, p1.json.version);
      // compare-and-set on the primary, from another replica
      const p2 = await post('c', { type: 'update', table: 'acct', recordId: 1, data: { n: 11 }, version: ev.version });
      assert.equal(p2.status, 200, JSON.stringify(p2.json));
      const p3 = await post('b', { type: 'update', table: 'acct', recordId: 1, data: { n: 12 }, version: ev.version });
      assert.equal(p3.status, 409, JSON.stringify(p3.json));
      assert.equal(p3.json.code, 'VERSION_CONFLICT');
      const p4 = await post('a', { type: 'delete', table: 'acct', recordId: 1 });
      assert.equal(p4.status, 200, JSON.stringify(p4.json));
      const del = await s.waitFor((m) => m.type === 'change' && m.op === 'delete', 20000);
      assert.equal(del.pk, 1);
      await s.close();
    });
});
