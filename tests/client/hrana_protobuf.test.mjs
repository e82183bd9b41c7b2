// SPDX-License-Identifier: MIT
// Hrana 3 over HTTP in protobuf, with the real @libsql/hrana-client asking for protocol 3: it
// probes GET /v3-protobuf and, on a 2xx, sends every pipeline to /v3-protobuf/pipeline. Every
// request below is checked to have travelled as protobuf (a recording fetch), so a test passes
// only through the protobuf path. Bad bodies are sent by hand.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as hrana from '@libsql/hrana-client';

import { startCluster } from './lib/cluster.mjs';
import { makeKeyPair, nowS, signJwt, writeKey } from './lib/jwt.mjs';
import { pipeline, startNode } from './lib/node.mjs';

const T = { timeout: 20000 };

// What the client sent and got, per request.
function recordingFetch(log) {
  return async (req) => {
    const res = await fetch(req);
    log.push({ url: new URL(req.url).pathname, method: req.method, reqType: req.headers.get('content-type'),
      status: res.status, resType: res.headers.get('content-type') });
    return res;
  };
}

// A tiny protobuf writer for hand-made bodies (bad input, a row count).
const pb = {
  varint(n) {
    const out = [];
    let v = BigInt(n);
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v) b |= 0x80;
      out.push(b);
    } while (v);
    return out;
  },
  field(num, bytes) { return [...pb.varint((num << 3) | 2), ...pb.varint(bytes.length), ...bytes]; },
  str(num, s) { return pb.field(num, [...Buffer.from(s, 'utf8')]); },
  // PipelineReqBody { requests: [execute { stmt { sql } }, close {}] }
  executeBody(sql) {
    const stmt = pb.str(1, sql);
    const exec = pb.field(1, stmt);
    return Buffer.from([...pb.field(2, pb.field(2, exec)), ...pb.field(2, pb.field(1, []))]);
  },
};

async function postPb(node, body, contentType = 'application/x-protobuf') {
  const res = await fetch(`${node.url}/v3-protobuf/pipeline`, {
    method: 'POST', headers: { 'content-type': contentType }, body, signal: AbortSignal.timeout(10000),
  });
  return { status: res.status, type: res.headers.get('content-type'), body: Buffer.from(await res.arrayBuffer()) };
}

describe('Hrana 3 over protobuf with @libsql/hrana-client', { timeout: 120000 }, () => {
  let node;
  let log;
  let client;
  before(async () => {
    node = await startNode();
    log = [];
    client = hrana.openHttp(node.url, undefined, recordingFetch(log), undefined, 3);
    assert.equal(await client.getVersion(), 3);
  });
  after(async () => {
    if (client) client.close();
    if (node) await node.destroy();
  });

  function stream() {
    const s = client.openStream();
    s.intMode = 'bigint';
    return s;
  }

  // Every request so far went to /v3-protobuf/pipeline (or /cursor) as protobuf and came back as protobuf.
  function assertAllProtobuf() {
    const posts = log.filter((e) => e.method === 'POST');
    assert.ok(posts.length > 0);
    for (const e of posts) {
      assert.ok(e.url === '/v3-protobuf/pipeline' || e.url === '/v3-protobuf/cursor', e.url);
      assert.equal(e.reqType, 'application/x-protobuf');
      if (e.status === 200) assert.equal(e.resType, 'application/x-protobuf');
    }
  }

  test('GET /v3-protobuf answers 2xx and the client picks the protobuf endpoint', T, async () => {
    assert.deepEqual(log[0], { url: '/v3-protobuf', method: 'GET', reqType: null, status: 200, resType: 'text/plain' });
    assert.equal(client._endpoint.encoding, 'protobuf');
    const s = stream();
    const r = await s.query('SELECT 1 AS one');
    assert.equal(r.rows[0].one, 1n);
    s.close();
    assertAllProtobuf();
  });

  test('every value type round-trips, as argument and as result', T, async () => {
    const s = stream();
    const blob = new Uint8Array([0, 1, 2, 127, 128, 255]);
    const args = [null, 0n, -1n, 9223372036854775807n, -9223372036854775808n, 9007199254740993n,
      1.5, -0.25, 1e300, 5e-324, 'ü€😀', 'a\u0000b', '', blob, new Uint8Array([])];
    const cols = args.map((_, i) => `?${i + 1} AS c${i}, typeof(?${i + 1}) AS t${i}`).join(', ');
    const r = await s.query([`SELECT ${cols}`, args]);
    const row = r.rows[0];
    const want = ['null', 'integer', 'integer', 'integer', 'integer', 'integer', 'real', 'real', 'real', 'real',
      'text', 'text', 'text', 'blob', 'blob'];
    want.forEach((t, i) => assert.equal(row[`t${i}`], t, `typeof argument ${i}`));
    assert.equal(row.c0, null);
    assert.equal(row.c1, 0n);
    assert.equal(row.c2, -1n);
    assert.equal(row.c3, 9223372036854775807n);
    assert.equal(row.c4, -9223372036854775808n);
    assert.equal(row.c5, 9007199254740993n);
    assert.equal(row.c6, 1.5);
    assert.equal(row.c7, -0.25);
    assert.equal(row.c8, 1e300);
    assert.equal(row.c9, 5e-324);
    assert.equal(row.c10, 'ü€😀');
    assert.equal(row.c11, 'a\u0000b');
    assert.equal(row.c11.length, 3);
    assert.equal(row.c12, '');
    assert.deepEqual(new Uint8Array(row.c13), blob);
    assert.equal(new Uint8Array(row.c14).length, 0);

    // Values made by SQLite itself, and a named argument.
    const r2 = await s.query(['SELECT 9223372036854775807 AS big, x\'00ff\' AS b, char(0x20ac, 0) AS t, 0.1 AS f, :v AS v',
      { v: 'named' }]);
    assert.equal(r2.rows[0].big, 9223372036854775807n);
    assert.deepEqual(new Uint8Array(r2.rows[0].b), new Uint8Array([0, 255]));
    assert.equal(r2.rows[0].t, '€\u0000');
    assert.equal(r2.rows[0].f, 0.1);
    assert.equal(r2.rows[0].v, 'named');
    assert.deepEqual(r2.columnNames, ['big', 'b', 't', 'f', 'v']);
    s.close();
    assertAllProtobuf();
  });

  test('writes report affected rows, last_insert_rowid and decltypes', T, async () => {
    const s = stream();
    await s.run('CREATE TABLE w(id INTEGER PRIMARY KEY, name TEXT, n BIGINT)');
    const ins = await s.run(['INSERT INTO w(id, name, n) VALUES (?, ?, ?), (?, ?, ?)', [5n, 'five', 5n, 4000000000n, 'big', 1n]]);
    assert.equal(ins.affectedRowCount, 2);
    assert.equal(ins.lastInsertRowid, 4000000000n);
    const q = await s.query('SELECT id, name, n FROM w ORDER BY id');
    assert.deepEqual(q.columnDecltypes, ['INTEGER', 'TEXT', 'BIGINT']);
    assert.deepEqual(q.rows.map((r) => r.name), ['five', 'big']);
    const upd = await s.run("UPDATE w SET name = 'x'");
    assert.equal(upd.affectedRowCount, 2);
    s.close();
  });

  test('batch conditions, is_autocommit included, are evaluated by the server', T, async () => {
    const s = stream();
    await s.run('CREATE TABLE bc(id INTEGER PRIMARY KEY, v TEXT)');
    const b = s.batch();
    const begin = b.step();
    const pBegin = begin.run('BEGIN');
    const ins = b.step().condition(hrana.BatchCond.ok(begin));
    const pIns = ins.run("INSERT INTO bc VALUES (1, 'a')");
    const pOutside = b.step().condition(hrana.BatchCond.isAutocommit(b)).query("SELECT 'outside' AS w");
    const pInside = b.step().condition(hrana.BatchCond.not(hrana.BatchCond.isAutocommit(b))).query("SELECT 'inside' AS w");
    const dup = b.step().condition(hrana.BatchCond.ok(ins));
    const pDup = dup.run("INSERT INTO bc VALUES (1, 'again')");
    const pAfterErr = b.step().condition(hrana.BatchCond.and(b, [hrana.BatchCond.error(dup), hrana.BatchCond.ok(begin)]))
      .query("SELECT 'saw the error' AS w");
    const pNever = b.step().condition(hrana.BatchCond.or(b, [hrana.BatchCond.ok(dup), hrana.BatchCond.error(begin)]))
      .query("SELECT 'never' AS w");
    const pCommit = b.step().condition(hrana.BatchCond.not(hrana.BatchCond.isAutocommit(b))).run('COMMIT');
    const pAfter = b.step().condition(hrana.BatchCond.isAutocommit(b)).query('SELECT count(*) AS n FROM bc');
    await b.execute();
    await pBegin;
    assert.equal((await pIns).affectedRowCount, 1);
    assert.equal(await pOutside, undefined, 'is_autocommit is false inside BEGIN');
    assert.equal((await pInside).rows[0].w, 'inside');
    await assert.rejects(pDup, (e) => e.code === 'SQLITE_CONSTRAINT' || /constraint/i.test(e.message));
    assert.equal((await pAfterErr).rows[0].w, 'saw the error');
    assert.equal(await pNever, undefined);
    await pCommit;
    assert.equal((await pAfter).rows[0].n, 1n, 'is_autocommit is true again after COMMIT');

    // Without BEGIN the batch's writes go to the writer thread's group commit: the stream is still
    // in autocommit there, so is_autocommit holds.
    const b2 = s.batch();
    const w1 = b2.step().condition(hrana.BatchCond.isAutocommit(b2));
    const pW1 = w1.run("INSERT INTO bc VALUES (2, 'autocommit')");
    const pW2 = b2.step().condition(hrana.BatchCond.not(hrana.BatchCond.isAutocommit(b2))).run("INSERT INTO bc VALUES (3, 'never')");
    await b2.execute();
    assert.equal((await pW1).affectedRowCount, 1, 'is_autocommit is true for an autocommit write');
    assert.equal(await pW2, undefined);
    assert.equal(await s.getAutocommit(), true);
    s.close();
    assertAllProtobuf();
  });

  test('a batch through a protobuf cursor gives what the same batch gives without one', T, async () => {
    const s = stream();
    await s.run('CREATE TABLE cur(id INTEGER PRIMARY KEY, v)');
    await s.run("INSERT INTO cur VALUES (1, 'one'), (2, x'00ff'), (3, 2.5), (4, NULL), (5, 9223372036854775807)");
    const run = async (useCursor) => {
      const b = s.batch(useCursor);
      const sAll = b.step();
      const all = sAll.query('SELECT id, v FROM cur ORDER BY id');
      const sBad = b.step().condition(hrana.BatchCond.ok(sAll));
      const bad = sBad.query('SELECT * FROM no_such_table');
      const after = b.step().condition(hrana.BatchCond.and(b, [hrana.BatchCond.error(sBad), hrana.BatchCond.isAutocommit(b)]))
        .query("SELECT 'after error' AS w, 'ü' || char(0) AS t");
      const skipped = b.step().condition(hrana.BatchCond.ok(sBad)).query('SELECT 1');
      const ins = b.step().run("INSERT INTO cur VALUES (NULL, 'new')");
      await b.execute();
      const out = { all: (await all).rows.map((r) => [r.id, r.v instanceof ArrayBuffer ? [...new Uint8Array(r.v)] : r.v]) };
      out.bad = await bad.then(() => 'ok', (e) => e.message);
      out.after = (await after).rows.map((r) => [r.w, r.t]);
      out.skipped = await skipped;
      const i = await ins;
      out.ins = [i.affectedRowCount, typeof i.lastInsertRowid];
      await s.run('DELETE FROM cur WHERE id > 5');
      return out;
    };
    const viaCursor = await run(true);
    const viaBatch = await run(false);
    assert.deepEqual(viaCursor, viaBatch);
    assert.equal(viaCursor.all.length, 5);
    assert.deepEqual(viaCursor.all[1], [2n, [0, 255]]);
    assert.equal(viaCursor.all[4][1], 9223372036854775807n);
    assert.match(viaCursor.bad, /no such table/);
    assert.deepEqual(viaCursor.after, [['after error', 'ü\u0000']]);
    assert.equal(viaCursor.skipped, undefined);
    assert.ok(log.some((e) => e.url === '/v3-protobuf/cursor' && e.status === 200 && e.resType === 'application/x-protobuf'));
    s.close();

    // Bad cursor bodies: a clear error, nothing run.
    const r = await fetch(`${node.url}/v3-protobuf/cursor`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' },
      body: Buffer.from([0x12, 0x10, 0x0a]) });
    assert.equal(r.status, 400);
    assert.match((await r.json()).message, /protobuf/);
    const wrong = await fetch(`${node.url}/v3-protobuf/cursor`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: '{}' });
    assert.equal(wrong.status, 415);
  });

  test('errors: SQL errors carry their code; the stream goes on', T, async () => {
    const s = stream();
    await assert.rejects(s.query('SELEC 1'), (e) => e instanceof hrana.ResponseError && e.code === 'SQL_PARSE_ERROR');
    await assert.rejects(s.query('SELECT * FROM no_such_table'), (e) => /no such table/.test(e.message));
    await assert.rejects(s.query(['SELECT ?, ?', [1n]]), (e) => e.code === 'ARGS_INVALID');
    assert.equal((await s.query('SELECT 2 AS two')).rows[0].two, 2n);
    s.close();
  });

  test('stored SQL, describe and sequence', T, async () => {
    const s = stream();
    const sql = s.storeSql('SELECT ? * 2 AS d');
    assert.equal((await s.query([sql, [21n]])).rows[0].d, 42n);
    assert.equal((await s.query([sql, [5n]])).rows[0].d, 10n);
    sql.close();
    const d = await s.describe('SELECT ? AS a, :named AS b');
    assert.deepEqual(d.paramNames, [undefined, ':named']);
    assert.deepEqual(d.columns.map((c) => c.name), ['a', 'b']);
    assert.equal(d.isReadonly, true);
    await s.sequence('CREATE TABLE seq(a PRIMARY KEY); INSERT INTO seq VALUES (1); INSERT INTO seq VALUES (2);');
    assert.equal((await s.query('SELECT count(*) AS n FROM seq')).rows[0].n, 2n);
    s.close();
    assertAllProtobuf();
  });

  test('a transaction spans requests through the baton', T, async () => {
    const s = stream();
    await s.run('CREATE TABLE tx(id INTEGER PRIMARY KEY)');
    assert.equal(await s.getAutocommit(), true);
    await s.run('BEGIN');
    assert.equal(await s.getAutocommit(), false);
    await s.run('INSERT INTO tx VALUES (1)');
    await s.run('INSERT INTO tx VALUES (2)');
    // Another stream does not see the open transaction's rows.
    const other = stream();
    assert.equal((await other.query('SELECT count(*) AS n FROM tx')).rows[0].n, 0n);
    assert.equal((await s.query('SELECT count(*) AS n FROM tx')).rows[0].n, 2n);
    await s.run('ROLLBACK');
    assert.equal(await s.getAutocommit(), true);
    await s.run('BEGIN');
    await s.run('INSERT INTO tx VALUES (3)');
    await s.run('COMMIT');
    assert.equal((await other.query('SELECT group_concat(id) AS ids FROM tx')).rows[0].ids, '3');
    s.close();
    other.close();
    // Several requests were pipelined on one baton: more than one POST carried one.
    assertAllProtobuf();
  });

  test('bad input answers a clear error and changes nothing', T, async () => {
    await pipeline(`${node.url}/v3/pipeline`, { requests: [{ type: 'execute', stmt: { sql: 'CREATE TABLE bad(id INTEGER PRIMARY KEY)' } }, { type: 'close' }] });
    const insert = pb.executeBody('INSERT INTO bad VALUES (1)');

    const wrongType = await postPb(node, insert, 'application/json');
    assert.equal(wrongType.status, 415);
    assert.match(JSON.parse(wrongType.body.toString()).message, /protobuf/);

    // Cut inside the execute request (the last 4 bytes are the whole close request: cutting
    // exactly those leaves a valid, shorter pipeline).
    for (let cut = 5; cut < insert.length; cut += 2) {
      const r = await postPb(node, insert.subarray(0, insert.length - cut));
      assert.ok(r.status === 400, `truncated by ${cut}: status ${r.status}`);
      assert.equal(r.type, 'application/json');
      assert.ok(JSON.parse(r.body.toString()).message.length > 0);
    }
    const garbage = await postPb(node, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    assert.equal(garbage.status, 400);

    // Conditions nested far deeper than any client writes: refused before decoding.
    let cond = pb.field(6, []);
    for (let i = 0; i < 200; i++) cond = pb.field(3, cond);
    const step = [...pb.field(1, cond), ...pb.field(2, pb.str(1, 'INSERT INTO bad VALUES (2)'))];
    const deep = Buffer.from(pb.field(2, pb.field(3, pb.field(1, pb.field(1, step)))));
    const rDeep = await postPb(node, deep);
    assert.equal(rDeep.status, 400);
    assert.match(JSON.parse(rDeep.body.toString()).message, /nested|malformed/);

    // Text that is not UTF-8 cannot be run as SQL.
    const badUtf8 = Buffer.from([...pb.field(2, pb.field(2, pb.field(1, pb.field(1, [0x49, 0x4e, 0xc3, 0x28]))))]);
    const rUtf = await postPb(node, badUtf8);
    assert.equal(rUtf.status, 400);
    assert.match(JSON.parse(rUtf.body.toString()).message, /UTF-8/);

    // A well-formed request of an unknown kind (a field number this server does not know).
    const unknown = Buffer.from(pb.field(2, pb.field(15, [])));
    assert.equal((await postPb(node, unknown)).status, 400);

    // A NUL inside a sequence's SQL (JSON can carry it too): an error, not a loop thread spinning forever.
    const s0 = stream();
    await assert.rejects(s0.sequence('INSERT INTO bad VALUES (9);\u0000 INSERT INTO bad VALUES (10)'),
      (e) => e.code === 'SQL_PARSE_ERROR' && /NUL/.test(e.message));
    await s0.run('DELETE FROM bad');
    s0.close();
    const viaJson = await pipeline(`${node.url}/v3/pipeline`, { requests: [{ type: 'sequence', sql: '\u0000SELECT 1' }, { type: 'close' }] });
    assert.equal(viaJson.json.results[0].error.code, 'SQL_PARSE_ERROR');

    // Nothing of the above ran; the intact body does run.
    const count = await pipeline(`${node.url}/v3/pipeline`, { requests: [{ type: 'execute', stmt: { sql: 'SELECT count(*) FROM bad' } }, { type: 'close' }] });
    assert.equal(count.json.results[0].response.result.rows[0][0].value, '0');
    const ok = await postPb(node, insert);
    assert.equal(ok.status, 200);
    assert.equal(ok.type, 'application/x-protobuf');
    const count2 = await pipeline(`${node.url}/v3/pipeline`, { requests: [{ type: 'execute', stmt: { sql: 'SELECT count(*) FROM bad' } }, { type: 'close' }] });
    assert.equal(count2.json.results[0].response.result.rows[0][0].value, '1');
    // The node is still serving protobuf clients.
    const s = stream();
    assert.equal((await s.query('SELECT 7 AS x')).rows[0].x, 7n);
    s.close();
  });

  test('an HTTP error reaches the client as a readable error', T, async () => {
    const s = stream();
    await s.query('SELECT 1');
    // An unknown baton is refused with a JSON error the client turns into its message.
    const bad = await fetch(`${node.url}/v3-protobuf/pipeline`, {
      method: 'POST', headers: { 'content-type': 'application/x-protobuf' },
      body: Buffer.from([...pb.str(1, 'not-a-baton'), ...pb.field(2, pb.field(1, []))]),
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.headers.get('content-type'), 'application/json');
    assert.ok(typeof (await bad.json()).message === 'string');
    s.close();
  });
});

describe('Hrana 3 over protobuf in a cluster', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2, tables: { acct: 'strong' } });
    await c.createTable('acct', 'CREATE TABLE IF NOT EXISTS acct (id INTEGER PRIMARY KEY, v TEXT)');
    await c.createTable('ev', 'CREATE TABLE IF NOT EXISTS ev (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  // A client on one region whose requests carry extra headers; log as in recordingFetch.
  function clientAt(id, log, headers = {}) {
    const f = async (req) => {
      const r = new Request(req);
      for (const [k, v] of Object.entries(headers)) r.headers.set(k, v);
      const res = await fetch(r);
      log.push({ url: new URL(req.url).pathname, method: req.method, status: res.status,
        resType: res.headers.get('content-type'), bookmark: res.headers.get('x-edge-bookmark') });
      return res;
    };
    return hrana.openHttp(c.url(id), undefined, f, undefined, 3);
  }

  test('a strong write with is_autocommit conditions, sent to a replica, is forwarded and answered in protobuf', T, async () => {
    const log = [];
    const client = clientAt('b', log);
    assert.equal(await client.getVersion(), 3);
    const s = client.openStream();
    s.intMode = 'bigint';
    const b = s.batch();
    const ins = b.step().condition(hrana.BatchCond.isAutocommit(b));
    const pIns = ins.run("INSERT INTO acct (id, v) VALUES (1, 'strong')");
    const pSel = b.step().condition(hrana.BatchCond.and(b, [hrana.BatchCond.ok(ins), hrana.BatchCond.isAutocommit(b)]))
      .query('SELECT v FROM acct WHERE id = 1');
    const done = b.execute();
    s.closeGracefully(); // one stateless pipeline (batch + close), as a replica can forward it
    await done;
    assert.equal((await pIns).affectedRowCount, 1);
    assert.equal((await pSel).rows[0].v, 'strong');
    client.close();
    const post = log.find((e) => e.method === 'POST');
    assert.equal(post.url, '/v3-protobuf/pipeline');
    assert.equal(post.status, 200);
    assert.equal(post.resType, 'application/x-protobuf');
    assert.match(post.bookmark ?? '', /^a:\d+$/, 'the answer carries the primary\'s bookmark');
    // Acknowledged means the primary has it.
    assert.deepEqual(await c.rows('a', 'SELECT v FROM acct WHERE id = 1'), [['strong']]);
  });

  test('a strong write on the primary is answered in protobuf once a majority holds it', T, async () => {
    const log = [];
    const client = clientAt('a', log);
    const s = client.openStream();
    s.intMode = 'bigint';
    const r = await s.run("INSERT INTO acct (id, v) VALUES (2, 'on primary')");
    assert.equal(r.affectedRowCount, 1);
    s.close();
    client.close();
    const post = log.find((e) => e.method === 'POST');
    assert.equal(post.resType, 'application/x-protobuf');
    assert.match(post.bookmark ?? '', /^a:\d+$/);
    // Acknowledged means a majority (both regions) holds it.
    assert.deepEqual(await c.rows('b', 'SELECT v FROM acct WHERE id = 2'), [['on primary']]);
  });

  test('a protobuf read with X-Edge-Bookmark waits for that write, then decodes as protobuf', T, async () => {
    const st = await c.status('a');
    const next = Number(st.vv?.a ?? st.version_vector?.a ?? 0) + 1;
    // Park a read on b for the next entry of region a, then make that entry.
    const log = [];
    const client = clientAt('b', log, { 'X-Edge-Bookmark': `a:${next}` });
    assert.equal(await client.getVersion(), 3);
    const s = client.openStream();
    s.intMode = 'bigint';
    const read = s.query('SELECT count(*) AS n FROM ev');
    await new Promise((r) => setTimeout(r, 300));
    const w = await c.sql('a', "INSERT INTO ev (id, v) VALUES (1, 'x')");
    assert.ok(w.ok, JSON.stringify(w.error));
    assert.equal((await read).rows[0].n, 1n, 'the read ran only once the bookmarked write was applied');
    s.close();
    client.close();
    assert.equal(log.find((e) => e.method === 'POST').resType, 'application/x-protobuf');
  });
});

describe('protobuf with JWT auth on', { timeout: 60000 }, () => {
  test('@libsql/hrana-client with a token probes /v3-protobuf (public, like /version) and runs over protobuf', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-pbauth-'));
    const keys = makeKeyPair();
    const node = await startNode({ args: ['--auth-jwt-key', writeKey(dir, 'jwt.pem', keys, 'pem')] });
    const log = [];
    const client = hrana.openHttp(node.url, signJwt(keys.privateKey, { a: 'rw', exp: nowS() + 3600 }), recordingFetch(log), undefined, 3);
    try {
      assert.equal(await client.getVersion(), 3);
      const s = client.openStream();
      const r = await s.queryValue('SELECT 40 + 2');
      assert.equal(Number(r.value), 42);
      s.close();
      const posts = log.filter((e) => e.method === 'POST');
      assert.ok(posts.length > 0 && posts.every((e) => e.url === '/v3-protobuf/pipeline'), JSON.stringify(log));
      // Without a token the pipeline itself stays closed.
      const res = await postPb(node, pb.executeBody('SELECT 1'));
      assert.equal(res.status, 401);
    } finally {
      client.close();
      await node.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
