// SPDX-License-Identifier: MIT
// Hrana 3 cursors. Over WebSocket: the real @libsql/client on a hrana3 connection runs every shared
// scenario with its batches through open_cursor/fetch_cursor/close_cursor (the same results as on
// hrana2), plus raw open_cursor/fetch_cursor/close_cursor. Over HTTP: POST /v3/cursor called by hand as
// the Rust client calls it (fetch, then split the body into lines). @libsql/hrana-client does not use
// /v3/cursor: with protocol 3 it speaks only the protobuf encoding over HTTP.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as hrana from '@libsql/hrana-client';

import { startCluster } from './lib/cluster.mjs';
import { pipeline, startNode, stmt, V } from './lib/node.mjs';
import { clientScenarios, createV3WsClient, rejectsWithCode } from './lib/scenarios.mjs';
import { openHranaWs } from './lib/ws.mjs';

const T = { timeout: 30000 };

clientScenarios('ws3');

/** POST /v3/cursor and split the body into lines: { status, headers, head, entries, text }. */
async function cursor(node, body, headers = {}) {
  const res = await fetch(`${node.url}/v3/cursor`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30000),
  });
  const text = await res.text();
  if (res.status !== 200) return { status: res.status, headers: res.headers, text, json: JSON.parse(text) };
  assert.ok(text.endsWith('\n'), 'every line ends with a newline');
  const lines = text.slice(0, -1).split('\n').map((l) => JSON.parse(l));
  return { status: res.status, headers: res.headers, text, head: lines[0], entries: lines.slice(1) };
}

/** The Stmt the Rust client sends: explicit nulls and its replication_index. */
function rustStmt(sql, args = []) {
  return { sql, sql_id: null, args, named_args: [], want_rows: true, replication_index: null };
}

function rustBatch(steps) {
  return { steps: steps.map(([sql, condition = null]) => ({ condition, stmt: rustStmt(sql) })), replication_index: null };
}

/** Fold cursor entries into a BatchResult, checking the order rules of the spec on the way. */
function foldEntries(entries, nsteps) {
  const step_results = Array(nsteps).fill(null);
  const step_errors = Array(nsteps).fill(null);
  let cur = null;
  let last = -1;
  for (const e of entries) {
    assert.notEqual(e.type, 'error', `a fatal error entry: ${JSON.stringify(e)}`);
    if (e.type === 'step_begin') {
      assert.equal(cur, null, 'step_begin inside a step');
      assert.ok(e.step > last, 'steps in order');
      cur = { step: e.step, cols: e.cols, rows: [] };
      last = e.step;
    } else if (e.type === 'row') {
      assert.ok(cur, 'a row outside a step');
      cur.rows.push(e.row);
    } else if (e.type === 'step_end') {
      assert.ok(cur, 'step_end outside a step');
      step_results[cur.step] = { cols: cur.cols, rows: cur.rows, affected_row_count: e.affected_row_count,
        last_insert_rowid: e.last_insert_rowid };
      cur = null;
    } else if (e.type === 'step_error') {
      assert.ok(cur === null || cur.step === e.step);
      assert.ok(e.step >= last);
      step_errors[e.step] = e.error;
      last = e.step;
      cur = null;
    } else {
      assert.fail(`unknown entry ${JSON.stringify(e)}`);
    }
  }
  assert.equal(cur, null, 'the last step was terminated');
  return { step_results, step_errors };
}

describe('@libsql/hrana-client asking for protocol 3 (openWs(url, jwt, 3)) runs batches through cursors', { timeout: 120000 }, () => {
  let node;
  before(async () => { node = await startNode(); });
  after(async () => { if (node) await node.destroy(); });

  /** One batch with conditions, a step error and many rows; returns each step's settled outcome. */
  async function runBatch(stream, useCursor, table, v3) {
    const b = stream.batch(useCursor);
    const out = [];
    const add = (p) => out.push(p.then((v) => ({ ok: v }), (e) => ({ err: `${e.code}: ${e.message}`.replaceAll(table, "T") })));
    const s0 = b.step();
    add(s0.run(`CREATE TABLE IF NOT EXISTS ${table} (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`));
    const s1 = b.step().condition(hrana.BatchCond.ok(s0));
    add(s1.run(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) INSERT INTO ${table} (v) SELECT printf('v%d', x) FROM c`));
    const s2 = b.step();
    add(s2.run(`INSERT INTO ${table} (v) VALUES (NULL)`));
    const s3 = b.step().condition(hrana.BatchCond.error(s2));
    add(s3.query(`SELECT id, v FROM ${table} ORDER BY id`));
    const s4 = b.step().condition(hrana.BatchCond.not(hrana.BatchCond.ok(s3)));
    add(s4.query('SELECT 4'));
    if (v3) {
      add(b.step().condition(hrana.BatchCond.and(b, [hrana.BatchCond.ok(s1), hrana.BatchCond.isAutocommit(b)])).queryValue('SELECT 5'));
    }
    await b.execute();
    const res = await Promise.all(out);
    return res.map((r) => (r.ok && r.ok.rows ? { ok: { rows: r.ok.rows.map((x) => Array.from(x)), cols: r.ok.columnNames } } : r));
  }

  test('the same results through cursors as through batch, on hrana3 and on hrana2', T, async () => {
    const v3 = hrana.openWs(node.wsUrl, null, 3);
    const v2 = hrana.openWs(node.wsUrl, null, 2);
    try {
      assert.equal(await v3.getVersion(), 3);
      assert.equal(await v2.getVersion(), 2);
      const s3 = v3.openStream();
      const s2 = v2.openStream();
      const viaCursor = await runBatch(s3, true, 'hc_cursor', true);
      const viaBatch3 = await runBatch(s3, false, 'hc_batch3', true);
      const viaBatch2 = await runBatch(s2, false, 'hc_batch2', false);
      assert.deepEqual(viaCursor, viaBatch3);
      assert.deepEqual(viaCursor.slice(0, 5), viaBatch2);
      assert.match(viaCursor[2].err, /^SQLITE_CONSTRAINT/);
      assert.equal(viaCursor[3].ok.rows.length, 3000);
      assert.equal(viaCursor[4].ok, undefined, 'skipped: its condition was false');
      assert.equal(viaCursor[5].ok.value, 5, 'ok(1) and is_autocommit held');
      s3.close();
      s2.close();
    } finally {
      v3.close();
      v2.close();
    }
  });
});

describe('POST /v3/cursor (JSON lines, as the Rust client calls it)', { timeout: 120000 }, () => {
  let node;
  before(async () => { node = await startNode(); });
  after(async () => { if (node) await node.destroy(); });

  test('first line {baton, base_url}, then step_begin / row / step_end per step', T, async () => {
    const r = await cursor(node, { baton: null, batch: rustBatch([
      ['CREATE TABLE c_basic (id INTEGER PRIMARY KEY, v TEXT)'],
      ["INSERT INTO c_basic (v) VALUES ('a'), ('b')"],
      ['SELECT id, v FROM c_basic ORDER BY id'],
    ]) });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type'), /^text\/plain/);
    assert.deepEqual(Object.keys(r.head).sort(), ['base_url', 'baton']);
    assert.equal(typeof r.head.baton, 'string', 'the stream stays open');
    assert.equal(r.head.base_url, null);
    assert.deepEqual(r.entries.map((e) => e.type),
      ['step_begin', 'step_end', 'step_begin', 'step_end', 'step_begin', 'row', 'row', 'step_end']);
    assert.deepEqual(r.entries[0], { type: 'step_begin', step: 0, cols: [] });
    assert.deepEqual(r.entries[3], { type: 'step_end', affected_row_count: 2, last_insert_rowid: '2' });
    assert.deepEqual(r.entries[4].cols, [{ name: 'id', decltype: 'INTEGER' }, { name: 'v', decltype: 'TEXT' }]);
    assert.deepEqual(r.entries[5], { type: 'row', row: [V.int(1), V.text('a')] });
    assert.deepEqual(r.entries[6], { type: 'row', row: [V.int(2), V.text('b')] });
    assert.deepEqual(r.entries[7], { type: 'step_end', affected_row_count: 0, last_insert_rowid: null });
  });

  test('a step error is a step_error entry and the batch goes on; failing conditions skip steps silently', T, async () => {
    const r = await cursor(node, { baton: null, batch: rustBatch([
      /* 0 */ ['CREATE TABLE c_err (id INTEGER PRIMARY KEY, v TEXT NOT NULL)'],
      /* 1 */ ['INSERT INTO c_err (v) VALUES (NULL)'],
      /* 2 */ ["INSERT INTO c_err (v) VALUES ('ran')", { type: 'error', step: 1 }],
      /* 3 */ ["INSERT INTO c_err (v) VALUES ('skipped')", { type: 'ok', step: 1 }],
      /* 4 */ ['SELECT v FROM c_err', { type: 'and', conds: [{ type: 'ok', step: 2 }, { type: 'is_autocommit' }] }],
      /* 5 */ ['SELECT 5', { type: 'not', cond: { type: 'is_autocommit' } }],
      /* 6 */ ['SELEC 6'],
    ]) });
    assert.equal(r.status, 200, r.text);
    const res = foldEntries(r.entries, 7);
    assert.equal(res.step_errors[1].code, 'SQLITE_CONSTRAINT');
    assert.notEqual(res.step_results[2], null);
    assert.equal(res.step_results[3], null, 'condition ok(1) was false');
    assert.equal(res.step_errors[3], null);
    assert.deepEqual(res.step_results[4].rows, [[V.text('ran')]]);
    assert.equal(res.step_results[5], null, 'not(is_autocommit) was false');
    assert.equal(res.step_errors[6].code, 'SQL_PARSE_ERROR');
    assert.ok(!r.entries.some((e) => e.step === 3 || e.step === 5), 'skipped steps produce no entries');
  });

  test('the same batch gives the same results through /v3/cursor as through /v2/pipeline', T, async () => {
    await pipeline(`${node.url}/v2/pipeline`, { requests: [
      { type: 'execute', stmt: stmt('CREATE TABLE c_same (id INTEGER PRIMARY KEY, r REAL, t TEXT, b BLOB, n)') },
      { type: 'execute', stmt: stmt("INSERT INTO c_same VALUES (1, 1.5, 'ü', x'00ff', NULL), (2, -0.25, '', x'', 7)") },
      { type: 'close' }] });
    const steps = [
      ['SELECT * FROM c_same ORDER BY id'],
      ['UPDATE c_same SET n = 1 WHERE id = 2'],
      ['SELECT * FROM missing_c_same'],
      ['SELECT count(*) AS k FROM c_same', { type: 'error', step: 2 }],
      ['DELETE FROM c_same WHERE id = 99', { type: 'not', cond: { type: 'ok', step: 1 } }],
    ];
    const v2 = await pipeline(`${node.url}/v3/pipeline`, { requests: [{ type: 'batch', batch: rustBatch(steps) }, { type: 'close' }] });
    assert.equal(v2.status, 200, v2.text);
    const want = v2.json.results[0].response.result;
    // UPDATE changed n back and forth only once: run the cursor on the state the pipeline left.
    await pipeline(`${node.url}/v2/pipeline`, { requests: [{ type: 'execute', stmt: stmt('UPDATE c_same SET n = 7 WHERE id = 2') }, { type: 'close' }] });
    const r = await cursor(node, { baton: null, batch: rustBatch(steps) });
    assert.equal(r.status, 200, r.text);
    const got = foldEntries(r.entries, steps.length);
    const strip = (x) => x && { cols: x.cols, rows: x.rows, affected_row_count: x.affected_row_count, last_insert_rowid: x.last_insert_rowid };
    assert.deepEqual(got.step_results.map(strip), want.step_results.map(strip));
    assert.deepEqual(got.step_errors, want.step_errors);
  });

  test('a cursor over 20,000 rows returns every row in order', T, async () => {
    const n = 20000;
    const r = await cursor(node, { baton: null, batch: rustBatch([
      [`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${n}) SELECT x, printf('row %d', x) AS s FROM c`],
    ]) });
    assert.equal(r.status, 200, r.text.slice(0, 200));
    const rows = r.entries.filter((e) => e.type === 'row');
    assert.equal(rows.length, n);
    assert.deepEqual(rows[0].row, [V.int(1), V.text('row 1')]);
    assert.deepEqual(rows[n - 1].row, [V.int(n), V.text(`row ${n}`)]);
    assert.ok(rows.every((e, i) => e.row[0].value === String(i + 1)));
    assert.equal(r.entries.at(-1).type, 'step_end');
  });

  test('the baton carries the stream: a transaction begun in a cursor commits in a later pipeline', T, async () => {
    const r = await cursor(node, { baton: null, batch: rustBatch([
      ['CREATE TABLE IF NOT EXISTS c_txn (id INTEGER PRIMARY KEY)'],
      ['BEGIN'],
      ['INSERT INTO c_txn VALUES (1)'],
      ['SELECT 1', { type: 'not', cond: { type: 'is_autocommit' } }],
    ]) });
    assert.equal(r.status, 200, r.text);
    const res = foldEntries(r.entries, 4);
    assert.notEqual(res.step_results[3], null, 'inside the transaction, is_autocommit is false');
    const other = await pipeline(`${node.url}/v2/pipeline`, { requests: [{ type: 'execute', stmt: stmt('SELECT count(*) FROM c_txn') }, { type: 'close' }] });
    assert.equal(other.json.results[0].response.result.rows[0][0].value, '0', 'not committed yet');
    const c = await pipeline(`${node.url}/v3/pipeline`, { baton: r.head.baton, requests: [{ type: 'execute', stmt: stmt('COMMIT') }, { type: 'get_autocommit' }, { type: 'close' }] });
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json.results[0].type, 'ok');
    assert.equal(c.json.results[1].response.is_autocommit, true);
    const after = await pipeline(`${node.url}/v2/pipeline`, { requests: [{ type: 'execute', stmt: stmt('SELECT count(*) FROM c_txn') }, { type: 'close' }] });
    assert.equal(after.json.results[0].response.result.rows[0][0].value, '1');
    // A later cursor may continue a stream too, and the old baton is refused.
    const again = await cursor(node, { baton: r.head.baton, batch: rustBatch([['SELECT 1']]) });
    assert.equal(again.status, 400);
    assert.match(again.json.code, /BATON_/);
  });

  test('bad input: unknown baton, malformed batch, bad JSON each get a clear 400 and change nothing', T, async () => {
    let r = await cursor(node, { baton: 'not-a-baton', batch: rustBatch([['CREATE TABLE c_bad1 (id INTEGER PRIMARY KEY)']]) });
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'BATON_INVALID');
    assert.match(r.json.message, /baton/);
    r = await cursor(node, { baton: null, batch: { steps: [{ stmt: { sql: 'CREATE TABLE c_bad2 (id INTEGER PRIMARY KEY)' } }, { stmt: {} }] } });
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 'HRANA_PROTO_ERROR');
    assert.match(r.json.message, /sql/);
    r = await cursor(node, { baton: null, batch: { steps: [{ condition: { type: 'ok', step: 3 }, stmt: rustStmt('SELECT 1') }] } });
    assert.equal(r.status, 400);
    assert.match(r.json.message, /earlier step/);
    r = await cursor(node, { baton: null });
    assert.equal(r.status, 400);
    assert.match(r.json.message, /batch/);
    r = await cursor(node, { baton: 5, batch: { steps: [] } });
    assert.equal(r.status, 400);
    r = await cursor(node, '{"baton": null, "batch": ');
    assert.equal(r.status, 400);
    assert.match(r.json.message, /invalid JSON/);
    const chk = await pipeline(`${node.url}/v2/pipeline`, { requests: [
      { type: 'execute', stmt: stmt("SELECT count(*) FROM sqlite_schema WHERE name IN ('c_bad1', 'c_bad2')") }, { type: 'close' }] });
    assert.equal(chk.json.results[0].response.result.rows[0][0].value, '0', 'nothing was created');
  });

  test('an empty batch answers the first line alone', T, async () => {
    const r = await cursor(node, { baton: null, batch: { steps: [] } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.entries, []);
  });
});

describe('WebSocket cursors, raw (hrana3)', { timeout: 120000 }, () => {
  let node;
  before(async () => { node = await startNode(); });
  after(async () => { if (node) await node.destroy(); });

  async function session(protocols = ['hrana3']) {
    const s = await openHranaWs(node.wsUrl, protocols);
    s.send({ type: 'hello', jwt: null });
    assert.equal((await s.next()).type, 'hello_ok');
    return s;
  }

  const ok = (m, type) => {
    assert.equal(m.type, 'response_ok', JSON.stringify(m));
    assert.equal(m.response.type, type);
    return m.response;
  };

  test('open_cursor, fetch_cursor in slices until done, then close_cursor', T, async () => {
    const s = await session();
    assert.equal(s.protocol, 'hrana3');
    ok(await s.request({ type: 'open_stream', stream_id: 1 }), 'open_stream');
    const n = 2500;
    ok(await s.request({ type: 'open_cursor', stream_id: 1, cursor_id: 7, batch: { steps: [
      { stmt: stmt(`WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${n}) SELECT x FROM c`) },
      { stmt: stmt('SELECT * FROM no_such_ws_table') },
      { condition: { type: 'ok', step: 1 }, stmt: stmt('SELECT 2') },
      { condition: { type: 'error', step: 1 }, stmt: stmt('SELECT 3 AS three') },
    ] } }), 'open_cursor');
    const entries = [];
    let done = false;
    let fetches = 0;
    while (!done && fetches < 1000) {
      const f = ok(await s.request({ type: 'fetch_cursor', cursor_id: 7, max_count: 100 }), 'fetch_cursor');
      fetches += 1;
      assert.ok(f.entries.length <= 100, 'no more than max_count entries');
      entries.push(...f.entries);
      done = f.done;
    }
    assert.ok(done);
    assert.ok(fetches >= (n + 2) / 100, `${fetches} fetches`);
    const res = foldEntries(entries, 4);
    assert.equal(res.step_results[0].rows.length, n);
    assert.equal(res.step_results[0].rows[n - 1][0].value, String(n));
    assert.equal(res.step_errors[1].code, 'SQLITE_ERROR');
    assert.equal(res.step_results[2], null);
    assert.deepEqual(res.step_results[3].rows, [[V.int(3)]]);
    const f = ok(await s.request({ type: 'fetch_cursor', cursor_id: 7, max_count: 100 }), 'fetch_cursor');
    assert.deepEqual(f, { type: 'fetch_cursor', entries: [], done: true }, 'after done: zero entries');
    ok(await s.request({ type: 'close_cursor', cursor_id: 7 }), 'close_cursor');
    const gone = await s.request({ type: 'fetch_cursor', cursor_id: 7, max_count: 1 });
    assert.equal(gone.type, 'response_error');
    assert.equal(gone.error.code, 'CURSOR_NOT_FOUND');
    // The session goes on after errors.
    ok(await s.request({ type: 'execute', stream_id: 1, stmt: stmt('SELECT 1') }), 'execute');
    await s.close();
  });

  test('a transaction through cursors: BEGIN in one cursor, the stream keeps it, COMMIT in another', T, async () => {
    const s = await session();
    ok(await s.request({ type: 'open_stream', stream_id: 1 }), 'open_stream');
    ok(await s.request({ type: 'execute', stream_id: 1, stmt: stmt('CREATE TABLE ws_ctx (id INTEGER PRIMARY KEY)') }), 'execute');
    ok(await s.request({ type: 'open_cursor', stream_id: 1, cursor_id: 1, batch: { steps: [
      { stmt: stmt('BEGIN IMMEDIATE') },
      { condition: { type: 'ok', step: 0 }, stmt: stmt('INSERT INTO ws_ctx VALUES (1)') },
    ] } }), 'open_cursor');
    let f = ok(await s.request({ type: 'fetch_cursor', cursor_id: 1, max_count: 1000 }), 'fetch_cursor');
    assert.equal(f.done, true);
    assert.deepEqual(foldEntries(f.entries, 2).step_errors, [null, null]);
    ok(await s.request({ type: 'close_cursor', cursor_id: 1 }), 'close_cursor');
    assert.equal(ok(await s.request({ type: 'get_autocommit', stream_id: 1 }), 'get_autocommit').is_autocommit, false);
    ok(await s.request({ type: 'open_cursor', stream_id: 1, cursor_id: 1, batch: { steps: [
      { condition: { type: 'not', cond: { type: 'is_autocommit' } }, stmt: stmt('COMMIT') },
      { stmt: stmt('SELECT count(*) FROM ws_ctx') },
    ] } }), 'open_cursor');
    f = ok(await s.request({ type: 'fetch_cursor', cursor_id: 1, max_count: 1000 }), 'fetch_cursor');
    const res = foldEntries(f.entries, 2);
    assert.notEqual(res.step_results[0], null, 'COMMIT ran');
    assert.deepEqual(res.step_results[1].rows, [[V.int(1)]]);
    assert.equal(ok(await s.request({ type: 'get_autocommit', stream_id: 1 }), 'get_autocommit').is_autocommit, true);
    await s.close();
  });

  test('errors: unknown stream, duplicate cursor id, unknown cursor; a failed open keeps its id until close_cursor', T, async () => {
    const s = await session();
    const batch = { steps: [{ stmt: stmt('SELECT 1') }] };
    let m = await s.request({ type: 'open_cursor', stream_id: 42, cursor_id: 3, batch });
    assert.equal(m.type, 'response_error');
    assert.equal(m.error.code, 'STREAM_NOT_FOUND');
    m = await s.request({ type: 'fetch_cursor', cursor_id: 3, max_count: 10 });
    assert.equal(m.type, 'response_error', 'fetching a cursor whose open failed is an error');
    assert.equal(m.error.code, 'STREAM_NOT_FOUND');
    ok(await s.request({ type: 'close_cursor', cursor_id: 3 }), 'close_cursor');
    m = await s.request({ type: 'fetch_cursor', cursor_id: 3, max_count: 10 });
    assert.equal(m.error.code, 'CURSOR_NOT_FOUND');

    ok(await s.request({ type: 'open_stream', stream_id: 1 }), 'open_stream');
    ok(await s.request({ type: 'open_cursor', stream_id: 1, cursor_id: 5, batch }), 'open_cursor');
    m = await s.request({ type: 'open_cursor', stream_id: 1, cursor_id: 5, batch });
    assert.equal(m.type, 'response_error');
    assert.equal(m.error.code, 'CURSOR_EXISTS');
    // close_stream closes the stream's cursors.
    ok(await s.request({ type: 'close_stream', stream_id: 1 }), 'close_stream');
    m = await s.request({ type: 'fetch_cursor', cursor_id: 5, max_count: 10 });
    assert.equal(m.error.code, 'CURSOR_NOT_FOUND');

    // Malformed requests are answered with errors, and the connection stays open.
    m = await s.request({ type: 'open_cursor', stream_id: 1, cursor_id: 'x', batch });
    assert.equal(m.type, 'response_error');
    assert.equal(m.error.code, 'HRANA_PROTO_ERROR');
    m = await s.request({ type: 'open_cursor', stream_id: 1, cursor_id: 6, batch: { steps: [{ stmt: { sql: 1 } }] } });
    assert.equal(m.error.code, 'HRANA_PROTO_ERROR');
    m = await s.request({ type: 'fetch_cursor', cursor_id: 6, max_count: -1 });
    assert.equal(m.error.code, 'HRANA_PROTO_ERROR');
    ok(await s.request({ type: 'open_stream', stream_id: 2 }), 'open_stream');
    ok(await s.request({ type: 'execute', stream_id: 2, stmt: stmt('SELECT 1') }), 'execute');
    await s.close();
  });

  test('cursors need hrana3: on hrana2 open_cursor is an unknown request', T, async () => {
    const s = await session(['hrana2']);
    assert.equal(s.protocol, 'hrana2');
    ok(await s.request({ type: 'open_stream', stream_id: 1 }), 'open_stream');
    const m = await s.request({ type: 'open_cursor', stream_id: 1, cursor_id: 1, batch: { steps: [] } });
    assert.equal(m.type, 'response_error');
    assert.match(m.error.message, /unknown request type 'open_cursor'/);
    await s.close();
  });
});

describe('cursors in a 2-region cluster', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 2 });
    await c.createTable('cur_rep', 'CREATE TABLE IF NOT EXISTS cur_rep (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('writes through cursors replicate: /v3/cursor on the primary, a hrana3 batch on the replica', T, async () => {
    const r = await cursor({ url: c.url('a') }, { baton: null, batch: rustBatch([
      ["INSERT INTO cur_rep VALUES (1, 'http cursor'), (2, 'http cursor')"],
      ['SELECT count(*) FROM cur_rep'],
    ]) });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(foldEntries(r.entries, 2).step_errors, [null, null]);
    const sent = [];
    const ws = createV3WsClient({ url: c.url('b').replace(/^http:/, 'ws:'), sent });
    try {
      await ws.batch([
        { sql: 'INSERT INTO cur_rep VALUES (?, ?)', args: [3, 'ws cursor'] },
        { sql: 'UPDATE cur_rep SET v = ? WHERE id = 1', args: ['updated'] },
      ], 'write');
    } finally {
      ws.close();
    }
    assert.ok(sent.includes('open_cursor'), `the batch went through a cursor: ${sent}`);
    const conv = await c.waitConverged(['cur_rep'], 15000);
    assert.ok(conv.ok, `regions differ: ${JSON.stringify(conv.sums)}`);
    assert.equal((await c.checksum('a', 'cur_rep')).text, '1:updated,2:http cursor,3:ws cursor');
  });

  test('a schema change through a cursor on the replica is refused (STRONG_NEEDS_PRIMARY) and changes nothing', T, async () => {
    const r = await cursor({ url: c.url('b') }, { baton: null, batch: rustBatch([['CREATE TABLE cur_ddl_http (id INTEGER PRIMARY KEY)']]) });
    assert.equal(r.status, 503, r.text);
    assert.equal(r.json.code, 'STRONG_NEEDS_PRIMARY');
    const ws = createV3WsClient({ url: c.url('b').replace(/^http:/, 'ws:') });
    try {
      await rejectsWithCode(ws.batch(['CREATE TABLE cur_ddl_ws (id INTEGER PRIMARY KEY)'], 'write'), 'STRONG_NEEDS_PRIMARY');
    } finally {
      ws.close();
    }
    for (const id of c.ids) {
      assert.equal(await c.hasTable(id, 'cur_ddl_http'), false);
      assert.equal(await c.hasTable(id, 'cur_ddl_ws'), false);
    }
  });
});
