// SPDX-License-Identifier: MIT
// Raw Hrana over HTTP with fetch: /v3/pipeline (get_autocommit, is_autocommit), batons, stored SQL,
// describe, and the small GET endpoints.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { get, pipeline, startNode, stmt, V } from './lib/node.mjs';

const T = { timeout: 20000 };

function okResponse(result, type) {
  assert.equal(result.type, 'ok', `expected ok, got ${JSON.stringify(result)}`);
  assert.equal(result.response.type, type);
  return result.response;
}

function errorOf(result) {
  assert.equal(result.type, 'error', `expected an error, got ${JSON.stringify(result)}`);
  assert.equal(typeof result.error.message, 'string');
  return result.error;
}

describe('Hrana over HTTP, raw', { timeout: 120000 }, () => {
  let node;
  let v2;
  let v3;
  before(async () => {
    node = await startNode();
    v2 = `${node.url}/v2/pipeline`;
    v3 = `${node.url}/v3/pipeline`;
  });
  after(async () => { if (node) await node.destroy(); });

  test('GET /health, /version, /v2, /v3, /v3-protobuf answer 200; other /v3-protobuf paths 404', T, async () => {
    assert.equal((await get(node, '/health')).status, 200);
    const ver = await get(node, '/version');
    assert.equal(ver.status, 200);
    assert.match(ver.text, /edgelite/);
    assert.equal((await get(node, '/v2')).status, 200);
    assert.equal((await get(node, '/v3')).status, 200);
    assert.equal((await get(node, '/v3-protobuf')).status, 200);
    assert.equal((await get(node, '/v3-protobuf/no-such-thing')).status, 404);
  });

  test('an unknown path is 404 with a JSON body', T, async () => {
    const r = await get(node, '/no/such/path');
    assert.equal(r.status, 404);
    const body = JSON.parse(r.text);
    assert.equal(typeof body.message, 'string');
  });

  test('value encoding on the wire', T, async () => {
    const r = await pipeline(v3, {
      baton: null,
      requests: [
        { type: 'execute', stmt: stmt('SELECT ? AS i, ? AS f, ? AS t, ? AS b, ? AS n, 9223372036854775807 AS big',
          [V.int('-42'), V.float(1.5), V.text('ü'), V.blob([1, 2, 3, 255]), V.null()]) },
        { type: 'close' },
      ],
    });
    assert.equal(r.status, 200);
    assert.ok(r.json, `the body is not valid JSON: ${JSON.stringify(r.text)}`);
    assert.match(r.headers.get('content-type'), /application\/json/);
    assert.equal(r.json.baton, null, 'close ends the stream');
    const res = okResponse(r.json.results[0], 'execute').result;
    assert.deepEqual(res.cols.map((c) => c.name), ['i', 'f', 't', 'b', 'n', 'big']);
    assert.deepEqual(res.rows, [[
      { type: 'integer', value: '-42' }, { type: 'float', value: 1.5 }, { type: 'text', value: 'ü' },
      { type: 'blob', base64: 'AQID/w==' }, { type: 'null' }, { type: 'integer', value: '9223372036854775807' },
    ]]);
    assert.equal(typeof res.affected_row_count, 'number');
    okResponse(r.json.results[1], 'close');
  });

  test('missing, null and unknown fields are accepted', T, async () => {
    const r = await pipeline(v3, {
      requests: [
        { type: 'execute', stmt: { sql: 'SELECT 1 AS one', args: null, named_args: null, want_rows: null, replication_index: null, extra: 5 } },
        { type: 'execute', stmt: { sql: 'SELECT 2 AS two' } },
        { type: 'close' },
      ],
      unknown_field: 'ignored',
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(okResponse(r.json.results[0], 'execute').result.rows[0][0].value, '1');
    assert.equal(okResponse(r.json.results[1], 'execute').result.rows[0][0].value, '2');
  });

  test('want_rows:false returns no rows but the columns', T, async () => {
    const r = await pipeline(v2, { requests: [{ type: 'execute', stmt: stmt('SELECT 1 AS a', [], { want_rows: false }) }, { type: 'close' }] });
    const res = okResponse(r.json.results[0], 'execute').result;
    assert.deepEqual(res.rows, []);
    assert.equal(res.cols[0].name, 'a');
  });

  test('get_autocommit follows BEGIN/COMMIT across pipelines of one stream', T, async () => {
    let r = await pipeline(v3, { baton: null, requests: [{ type: 'get_autocommit' }, { type: 'execute', stmt: stmt('BEGIN') }, { type: 'get_autocommit' }] });
    assert.equal(r.status, 200, r.text);
    assert.equal(okResponse(r.json.results[0], 'get_autocommit').is_autocommit, true);
    okResponse(r.json.results[1], 'execute');
    assert.equal(okResponse(r.json.results[2], 'get_autocommit').is_autocommit, false);
    assert.equal(typeof r.json.baton, 'string', 'an open stream has a baton');
    const b1 = r.json.baton;

    r = await pipeline(v3, { baton: b1, requests: [{ type: 'get_autocommit' }, { type: 'execute', stmt: stmt('COMMIT') }, { type: 'get_autocommit' }] });
    assert.equal(r.status, 200, r.text);
    assert.equal(okResponse(r.json.results[0], 'get_autocommit').is_autocommit, false, 'the transaction survived between requests');
    assert.equal(okResponse(r.json.results[2], 'get_autocommit').is_autocommit, true);
    assert.equal(typeof r.json.baton, 'string');
    assert.notEqual(r.json.baton, b1, 'every response carries a fresh baton');

    r = await pipeline(v3, { baton: r.json.baton, requests: [{ type: 'close' }] });
    assert.equal(r.status, 200);
    assert.equal(r.json.baton, null);
  });

  test('is_autocommit, ok, error, not, and, or conditions', T, async () => {
    const r = await pipeline(v3, {
      requests: [{
        type: 'batch', batch: {
          steps: [
            /* 0 */ { condition: { type: 'is_autocommit' }, stmt: stmt('SELECT 0') },
            /* 1 */ { stmt: stmt('BEGIN') },
            /* 2 */ { condition: { type: 'is_autocommit' }, stmt: stmt('SELECT 2') },
            /* 3 */ { condition: { type: 'not', cond: { type: 'is_autocommit' } }, stmt: stmt('SELECT 3') },
            /* 4 */ { stmt: stmt('SELECT * FROM no_such_table_v3') },
            /* 5 */ { condition: { type: 'error', step: 4 }, stmt: stmt('SELECT 5') },
            /* 6 */ { condition: { type: 'ok', step: 4 }, stmt: stmt('SELECT 6') },
            /* 7 */ { condition: { type: 'and', conds: [{ type: 'ok', step: 3 }, { type: 'ok', step: 5 }] }, stmt: stmt('SELECT 7') },
            /* 8 */ { condition: { type: 'or', conds: [{ type: 'ok', step: 2 }, { type: 'error', step: 2 }] }, stmt: stmt('SELECT 8') },
            /* 9 */ { condition: { type: 'or', conds: [{ type: 'ok', step: 6 }, { type: 'ok', step: 7 }] }, stmt: stmt('SELECT 9') },
            /* 10 */ { stmt: stmt('ROLLBACK') },
          ],
        },
      }, { type: 'close' }],
    });
    assert.equal(r.status, 200, r.text);
    const { step_results: res, step_errors: errs } = okResponse(r.json.results[0], 'batch').result;
    assert.equal(res.length, 11);
    assert.equal(errs.length, 11);
    const ran = res.map((x, i) => (x !== null ? 'ok' : errs[i] !== null ? 'err' : 'skip'));
    assert.deepEqual(ran, ['ok', 'ok', 'skip', 'ok', 'err', 'ok', 'skip', 'ok', 'skip', 'ok', 'ok']);
    assert.equal(errs[4].code, 'SQLITE_ERROR');
    assert.equal(res[9].rows[0][0].value, '9');
  });

  test('is_autocommit is true in a batch of autocommit writes (the writer\'s group commit is not the stream\'s transaction)', T, async () => {
    const r = await pipeline(v3, {
      requests: [{
        type: 'batch', batch: {
          steps: [
            /* 0 */ { stmt: stmt('CREATE TABLE IF NOT EXISTS v3_ac (id INTEGER PRIMARY KEY, v)') },
            /* 1 */ { condition: { type: 'is_autocommit' }, stmt: stmt("INSERT INTO v3_ac (v) VALUES ('autocommit')") },
            /* 2 */ { condition: { type: 'not', cond: { type: 'is_autocommit' } }, stmt: stmt("INSERT INTO v3_ac (v) VALUES ('in a transaction')") },
          ],
        },
      }, { type: 'get_autocommit' }, { type: 'execute', stmt: stmt('SELECT v FROM v3_ac ORDER BY id') }, { type: 'close' }],
    });
    assert.equal(r.status, 200, r.text);
    const { step_results: res, step_errors: errs } = okResponse(r.json.results[0], 'batch').result;
    assert.deepEqual(errs, [null, null, null]);
    assert.notEqual(res[1], null, 'is_autocommit held: step 1 ran');
    assert.equal(res[2], null, 'not(is_autocommit) did not: step 2 was skipped');
    assert.equal(okResponse(r.json.results[1], 'get_autocommit').is_autocommit, true);
    assert.deepEqual(okResponse(r.json.results[2], 'execute').result.rows, [[V.text('autocommit')]]);
  });

  test('a failing request does not stop the pipeline', T, async () => {
    const r = await pipeline(v2, {
      requests: [
        { type: 'execute', stmt: stmt('SELEC 1') },
        { type: 'execute', stmt: stmt('SELECT 1; SELECT 2') },
        { type: 'execute', stmt: stmt('SELECT ?', [V.int(1), V.int(2)]) },
        { type: 'execute', stmt: stmt('SELECT 42') },
        { type: 'close' },
      ],
    });
    assert.equal(r.status, 200);
    assert.equal(r.json.results.length, 5);
    assert.equal(errorOf(r.json.results[0]).code, 'SQL_PARSE_ERROR');
    assert.equal(errorOf(r.json.results[1]).code, 'SQL_MANY_STATEMENTS');
    assert.equal(errorOf(r.json.results[2]).code, 'ARGS_INVALID');
    assert.equal(okResponse(r.json.results[3], 'execute').result.rows[0][0].value, '42');
  });

  test('sequence runs statements and stops at the first error', T, async () => {
    const r = await pipeline(v3, {
      requests: [
        { type: 'sequence', sql: 'CREATE TABLE seq_t (a); INSERT INTO seq_t VALUES (1); INSERT INTO nope VALUES (1); INSERT INTO seq_t VALUES (2)' },
        { type: 'execute', stmt: stmt('SELECT a FROM seq_t') },
        { type: 'close' },
      ],
    });
    assert.equal(r.status, 200);
    assert.equal(errorOf(r.json.results[0]).code, 'SQLITE_ERROR');
    assert.deepEqual(okResponse(r.json.results[1], 'execute').result.rows, [[{ type: 'integer', value: '1' }]]);
  });

  test('store_sql / close_sql are scoped to the stream; the 51st text is refused', T, async () => {
    const reqs = [];
    for (let i = 1; i <= 51; i++) reqs.push({ type: 'store_sql', sql_id: i, sql: `SELECT ${i} AS v` });
    reqs.push({ type: 'execute', stmt: { sql_id: 50, args: [], named_args: [], want_rows: true } });
    reqs.push({ type: 'close_sql', sql_id: 50 });
    reqs.push({ type: 'execute', stmt: { sql_id: 50, args: [], named_args: [], want_rows: true } });
    reqs.push({ type: 'close_sql', sql_id: 999 });
    reqs.push({ type: 'store_sql', sql_id: 60, sql: 'SELECT 60' });
    let r = await pipeline(v3, { requests: reqs });
    assert.equal(r.status, 200, r.text);
    for (let i = 0; i < 50; i++) okResponse(r.json.results[i], 'store_sql');
    assert.equal(errorOf(r.json.results[50]).code, 'SQL_STORE_TOO_MANY');
    assert.equal(okResponse(r.json.results[51], 'execute').result.rows[0][0].value, '50');
    okResponse(r.json.results[52], 'close_sql');
    errorOf(r.json.results[53]);
    okResponse(r.json.results[54], 'close_sql'); // closing an unknown id is not an error
    okResponse(r.json.results[55], 'store_sql'); // a freed slot can be reused
    const baton = r.json.baton;
    assert.equal(typeof baton, 'string');

    // The same stream still sees its texts; a new stream does not.
    r = await pipeline(v3, { baton, requests: [{ type: 'execute', stmt: { sql_id: 7, args: [], named_args: [], want_rows: true } }, { type: 'close' }] });
    assert.equal(okResponse(r.json.results[0], 'execute').result.rows[0][0].value, '7');
    r = await pipeline(v3, { requests: [{ type: 'execute', stmt: { sql_id: 7, args: [], named_args: [], want_rows: true } }, { type: 'close' }] });
    errorOf(r.json.results[0]);
  });

  test('describe reports parameters, columns and read-only-ness', T, async () => {
    const r = await pipeline(v3, {
      requests: [
        { type: 'describe', sql: 'SELECT :a AS x, ? AS y' },
        { type: 'describe', sql: 'CREATE TABLE d_t (a)' },
        { type: 'close' },
      ],
    });
    assert.equal(r.status, 200);
    const d = okResponse(r.json.results[0], 'describe').result;
    assert.deepEqual(d.params.map((p) => p.name), [':a', null]);
    assert.deepEqual(d.cols.map((c) => c.name), ['x', 'y']);
    assert.equal(d.is_readonly, true);
    assert.equal(d.is_explain, false);
    assert.equal(okResponse(r.json.results[1], 'describe').result.is_readonly, false);
    // describe must not execute the statement
    const chk = await pipeline(v3, { requests: [{ type: 'execute', stmt: stmt("SELECT count(*) FROM sqlite_schema WHERE name = 'd_t'") }, { type: 'close' }] });
    assert.equal(okResponse(chk.json.results[0], 'execute').result.rows[0][0].value, '0');
  });

  test('BEGIN TRANSACTION READONLY really is read-only', T, async () => {
    await pipeline(v3, { requests: [{ type: 'execute', stmt: stmt('CREATE TABLE ro_t (a)') }, { type: 'execute', stmt: stmt('INSERT INTO ro_t VALUES (1)') }, { type: 'close' }] });
    let r = await pipeline(v3, {
      requests: [
        { type: 'execute', stmt: stmt('BEGIN TRANSACTION READONLY') },
        { type: 'execute', stmt: stmt('SELECT count(*) FROM ro_t') },
        { type: 'execute', stmt: stmt('INSERT INTO ro_t VALUES (2)') },
        { type: 'execute', stmt: stmt('DELETE FROM ro_t') },
        { type: 'execute', stmt: stmt('COMMIT') },
        { type: 'close' },
      ],
    });
    assert.equal(r.status, 200);
    okResponse(r.json.results[0], 'execute');
    assert.equal(okResponse(r.json.results[1], 'execute').result.rows[0][0].value, '1');
    errorOf(r.json.results[2]);
    errorOf(r.json.results[3]);
    // After the read-only transaction ends, the stream can write again.
    r = await pipeline(v3, {
      requests: [
        { type: 'execute', stmt: stmt('SELECT count(*) FROM ro_t') },
        { type: 'close' },
      ],
    });
    assert.equal(okResponse(r.json.results[0], 'execute').result.rows[0][0].value, '1');
    r = await pipeline(v3, {
      requests: [
        { type: 'execute', stmt: stmt('BEGIN TRANSACTION READONLY') },
        { type: 'execute', stmt: stmt('ROLLBACK') },
        { type: 'execute', stmt: stmt('INSERT INTO ro_t VALUES (3)') },
        { type: 'close' },
      ],
    });
    okResponse(r.json.results[2], 'execute');
  });

  test('affected_row_count and last_insert_rowid', T, async () => {
    const r = await pipeline(v2, {
      requests: [
        { type: 'execute', stmt: stmt('CREATE TABLE arc_t (id INTEGER PRIMARY KEY, v)') },
        { type: 'execute', stmt: stmt('INSERT INTO arc_t (v) VALUES (1), (2), (3)') },
        { type: 'execute', stmt: stmt('UPDATE arc_t SET v = v + 1 WHERE id >= 2') },
        { type: 'execute', stmt: stmt('SELECT * FROM arc_t') },
        { type: 'close' },
      ],
    });
    const ins = okResponse(r.json.results[1], 'execute').result;
    assert.equal(ins.affected_row_count, 3);
    assert.equal(ins.last_insert_rowid, '3');
    assert.equal(okResponse(r.json.results[2], 'execute').result.affected_row_count, 2);
    const sel = okResponse(r.json.results[3], 'execute').result;
    assert.equal(sel.affected_row_count, 0);
    assert.equal(sel.rows.length, 3);
    assert.deepEqual(sel.cols.map((c) => c.decltype), ['INTEGER', null]);
  });
});
