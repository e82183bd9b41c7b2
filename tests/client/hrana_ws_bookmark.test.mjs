// SPDX-License-Identifier: MIT
// Bookmarks over Hrana WebSocket and inside transactions (docs/router.md, "Bookmarks over WebSocket";
// docs/realtime.md): a WebSocket answer carries "bookmark" next to "response" (a read's snapshot vector, a
// write's REGION:SEQ), a read inside an interactive transaction (WebSocket or an HTTP baton) answers the
// vector of the transaction's snapshot, and a WebSocket request carrying "bookmark" waits until the region
// has applied it (BOOKMARK_TIMEOUT after the bookmark timeout, BOOKMARK_INVALID for bad text). "Read, then
// subscribe from that read's bookmark" has no gap and no duplicate over WebSocket and inside a transaction
// while all three regions write. The unmodified @libsql/client and @libsql/hrana-client ignore the field.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '@libsql/client';

import { sleep, startCluster } from './lib/cluster.mjs';
import { checkReadThenSubscribe, createKv, kvWriters } from './lib/read_feed.mjs';
import { openRt, parseBookmark } from './lib/rt.mjs';
import { createV3WsClient } from './lib/scenarios.mjs';
import { openHranaWs } from './lib/ws.mjs';

const VECTOR = /^[a-z]+:\d+(,[a-z]+:\d+)*$/;
const ROWS_PER_REGION = 6;

const stmt = (sql, args = []) => ({ sql, args, named_args: [], want_rows: true });
const count = (resp) => Number(resp.response.result.rows[0][0].value);
const wsUrl = (c, id) => c.url(id).replace(/^http/, 'ws');

/** A hello'd hrana3 session with stream 0 open, and a helper running one statement on it. */
async function session(c, id) {
  const s = await openHranaWs(wsUrl(c, id), ['hrana3']);
  s.send({ type: 'hello', jwt: null });
  assert.equal((await s.next()).type, 'hello_ok');
  assert.equal((await s.request({ type: 'open_stream', stream_id: 0 })).type, 'response_ok');
  s.exec = async (sql, args = []) => {
    const r = await s.request({ type: 'execute', stream_id: 0, stmt: stmt(sql, args) });
    assert.equal(r.type, 'response_ok', `${sql}: ${JSON.stringify(r)}`);
    return r;
  };
  return s;
}

/** A raw request message with a top-level bookmark, answered by request_id (sent on s's socket). */
function sendWithBookmark(s, id, req, bookmark) {
  s.ws.send(JSON.stringify({ type: 'request', request_id: id, request: req, bookmark }));
}

/** The next response message with this request_id (others of the session are kept in order). */
async function answerOf(s, id, ms = 20000) {
  const m = await s.next(ms);
  assert.equal(m.request_id, id, `answers out of order: ${JSON.stringify(m)}`);
  return m;
}

describe('bookmarks over Hrana WebSocket and inside transactions', { timeout: 290000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'front', extraArgs: ['--log-level', 'warn',
      '--bookmark-timeout-ms', '8000'] });
    await createKv(c, ROWS_PER_REGION);
  });
  after(async () => { if (c) await c.destroy(); });

  test('WebSocket answers: a read\'s snapshot vector, a write\'s REGION:SEQ, a transaction\'s snapshot',
    { timeout: 60000 }, async () => {
      const s = await session(c, 'b');
      try {
        const r1 = await s.exec('SELECT count(*) FROM kv');
        assert.match(r1.bookmark ?? '', VECTOR, JSON.stringify(r1));
        // nothing writes meanwhile: the same vector as an HTTP read at b
        assert.equal(r1.bookmark, (await c.sql('b', 'SELECT 1')).bookmark);
        const w = await s.exec('INSERT INTO kv VALUES (9001, 0)');
        assert.equal(w.bookmark, `b:${(parseBookmark(r1.bookmark).b ?? 0) + 1}`, JSON.stringify(w));

        // An interactive transaction: its reads answer the vector of its snapshot, which does not move.
        await s.exec('BEGIN');
        const t1 = await s.exec('SELECT count(*) FROM kv');
        assert.match(t1.bookmark ?? '', VECTOR, JSON.stringify(t1));
        assert.ok(parseBookmark(t1.bookmark).b >= parseBookmark(w.bookmark).b, `${t1.bookmark} misses ${w.bookmark}`);
        const aw = await c.sql('a', 'INSERT INTO kv VALUES (9002, 0)');
        assert.ok(aw.ok);
        const seqA = parseBookmark(aw.bookmark).a;
        assert.ok(await c.waitFor(async () => (await c.rows('b', 'SELECT count(*) FROM kv WHERE id = 9002'))[0][0] === 1,
          20000, 50), 'a\'s write did not reach b');
        const t2 = await s.exec('SELECT count(*) FROM kv');
        assert.equal(count(t2), count(t1), 'the transaction\'s snapshot moved');
        assert.equal(t2.bookmark, t1.bookmark, 'the transaction\'s reads answered different snapshots');
        assert.ok((parseBookmark(t1.bookmark).a ?? 0) < seqA, 'the snapshot claims a write it cannot see');
        const end = await s.exec('COMMIT');
        assert.equal(end.bookmark, t1.bookmark, 'a read-only transaction ends on its snapshot');
        const r2 = await s.exec('SELECT count(*) FROM kv');
        assert.equal(count(r2), count(t1) + 1);
        assert.ok(parseBookmark(r2.bookmark).a >= seqA, `${r2.bookmark} misses ${aw.bookmark}`);

        // A transaction that writes: its COMMIT answers the entry it committed.
        await s.exec('BEGIN');
        await s.exec('INSERT INTO kv VALUES (9003, 0)');
        const wc = await s.exec('COMMIT');
        assert.equal(wc.bookmark, `b:${parseBookmark(r2.bookmark).b + 1}`, JSON.stringify(wc));

        // A whole transaction in one batch (what a client's batch("read") sends).
        const b = await s.request({ type: 'batch', stream_id: 0, batch: { steps: [
          { stmt: stmt('BEGIN') }, { stmt: stmt('SELECT count(*) FROM kv'), condition: { type: 'ok', step: 0 } },
          { stmt: stmt('COMMIT'), condition: { type: 'ok', step: 1 } }] } });
        assert.equal(b.type, 'response_ok', JSON.stringify(b));
        assert.equal(b.bookmark, (await c.sql('b', 'SELECT 1')).bookmark, JSON.stringify(b));
        // Answers that ran no statement carry none.
        const st = await s.request({ type: 'store_sql', sql_id: 1, sql: 'SELECT 1' });
        assert.equal(st.bookmark, undefined);
      } finally {
        await s.close();
      }
    });

  test('HTTP: a read inside a transaction (baton) answers its snapshot\'s X-Edge-Bookmark', { timeout: 60000 },
    async () => {
      const post = async (body) => {
        const res = await fetch(c.url('c') + '/v2/pipeline', { method: 'POST', body: JSON.stringify(body),
          headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(15000) });
        assert.equal(res.status, 200);
        return { json: await res.json(), bookmark: res.headers.get('x-edge-bookmark') };
      };
      const r1 = await post({ baton: null, requests: [{ type: 'execute', stmt: stmt('BEGIN') },
        { type: 'execute', stmt: stmt('SELECT count(*) FROM kv') }] });
      assert.match(r1.bookmark ?? '', VECTOR);
      const n1 = Number(r1.json.results[1].response.result.rows[0][0].value);
      const aw = await c.sql('a', 'INSERT INTO kv VALUES (9004, 0)');
      assert.ok(aw.ok);
      assert.ok(await c.waitFor(async () => (await c.rows('c', 'SELECT count(*) FROM kv WHERE id = 9004'))[0][0] === 1,
        20000, 50));
      const r2 = await post({ baton: r1.json.baton, requests: [{ type: 'execute', stmt: stmt('SELECT count(*) FROM kv') },
        { type: 'execute', stmt: stmt('ROLLBACK') }, { type: 'close' }] });
      assert.equal(Number(r2.json.results[0].response.result.rows[0][0].value), n1);
      assert.equal(r2.bookmark, r1.bookmark, 'the transaction\'s snapshot moved');
    });

  test('a WebSocket request with "bookmark" waits until the region has applied it, in order', { timeout: 60000 },
    async () => {
      const s = await session(c, 'b');
      try {
        await c.proxies.b.cut(); // nothing reaches b from its peers from here on
        const aw = await c.sql('a', 'INSERT INTO kv VALUES (9005, 7)');
        assert.ok(aw.ok);
        assert.match(aw.bookmark, /^a:\d+$/);
        sendWithBookmark(s, 100, { type: 'execute', stream_id: 0, stmt: stmt('SELECT v FROM kv WHERE id = 9005') },
          aw.bookmark);
        sendWithBookmark(s, 101, { type: 'execute', stream_id: 0, stmt: stmt('SELECT 1') }, null);
        await assert.rejects(s.next(1500), /no message/, 'b answered a read whose bookmark it has not applied');
        await c.proxies.b.reset();
        const first = await answerOf(s, 100);
        assert.equal(first.type, 'response_ok', JSON.stringify(first));
        assert.deepEqual(first.response.result.rows, [[{ type: 'integer', value: '7' }]]);
        assert.ok(parseBookmark(first.bookmark).a >= parseBookmark(aw.bookmark).a);
        assert.equal((await answerOf(s, 101)).type, 'response_ok');

        // A vector bookmark waits for each of its origins.
        const vec = (await c.sql('c', 'SELECT 1')).bookmark;
        sendWithBookmark(s, 102, { type: 'execute', stream_id: 0, stmt: stmt('SELECT count(*) FROM kv') }, vec);
        assert.equal((await answerOf(s, 102)).type, 'response_ok');

        // Bad text: a clear error, the session goes on.
        for (const [i, bad] of [[103, 'nope'], [104, 17], [105, ''], [106, 'a:1,,b:2']]) {
          sendWithBookmark(s, i, { type: 'execute', stream_id: 0, stmt: stmt('INSERT INTO kv VALUES (9999, 0)') }, bad);
          const m = await answerOf(s, i);
          assert.equal(m.type, 'response_error', JSON.stringify(m));
          assert.equal(m.error.code, 'BOOKMARK_INVALID');
        }
        assert.equal((await c.rows('b', 'SELECT count(*) FROM kv WHERE id = 9999'))[0][0], 0,
          'a request with a bad bookmark was executed');
        // Never applied here: BOOKMARK_TIMEOUT after the bookmark timeout (8 s), then the next request.
        sendWithBookmark(s, 107, { type: 'execute', stream_id: 0, stmt: stmt('SELECT 1') }, 'zz:5');
        sendWithBookmark(s, 108, { type: 'execute', stream_id: 0, stmt: stmt('SELECT 2') }, null);
        const to = await answerOf(s, 107, 20000);
        assert.equal(to.type, 'response_error', JSON.stringify(to));
        assert.equal(to.error.code, 'BOOKMARK_TIMEOUT');
        assert.equal((await answerOf(s, 108)).type, 'response_ok');
      } finally {
        await c.proxies.b.reset();
        await s.close();
      }
    });

  test('read over WebSocket (and inside a transaction), subscribe from its bookmark: no gap, no duplicate',
    { timeout: 200000 }, async () => {
      assert.ok((await c.waitConverged(['kv'], 30000)).ok);
      const w = kvWriters(c, { rowsPerRegion: ROWS_PER_REGION, max: 300 });
      const sessions = {};
      const readers = [];
      try {
        for (const id of c.ids) sessions[id] = await session(c, id);
        for (let round = 0; round < 6; round++) {
          await w.waitWrites((round + 1) * 30);
          const at = c.ids[round % 3];
          const s = sessions[at];
          const inTxn = round % 2 === 1;
          if (inTxn) await s.exec('BEGIN');
          const r = await s.exec('SELECT id, v FROM kv ORDER BY id');
          if (inTxn) {
            // a second read in the transaction, after more writes: same snapshot, same bookmark
            await sleep(100);
            const again = await s.exec('SELECT id, v FROM kv ORDER BY id');
            assert.equal(again.bookmark, r.bookmark);
            assert.deepEqual(again.response.result.rows, r.response.result.rows);
            await s.exec('ROLLBACK');
          }
          assert.match(r.bookmark ?? '', VECTOR, `round ${round}: ${JSON.stringify(r).slice(0, 200)}`);
          const rows = new Map(r.response.result.rows.map((row) => [Number(row[0].value), Number(row[1].value)]));
          for (const sub of [at, c.ids[(round + 1) % 3]]) {
            const rt = await openRt(c.url(sub));
            const ready = await rt.subscribe({ id: 1, tables: ['kv'], from: r.bookmark });
            assert.equal(ready.type, 'ready', JSON.stringify(ready));
            readers.push({ what: `${inTxn ? 'transaction ' : ''}read at ${at} (${r.bookmark}), subscribed at ${sub}`,
              rt, bm: parseBookmark(r.bookmark), rows });
          }
        }
      } finally {
        await w.stop();
        for (const s of Object.values(sessions)) await s.close();
      }
      await w.done();
      await checkReadThenSubscribe(c, readers);
    });

  test('the unmodified @libsql/client and @libsql/hrana-client (hrana3) work with the extra field', { timeout: 60000 },
    async () => {
      for (const make of [() => createClient({ url: wsUrl(c, 'c') }), () => createV3WsClient({ url: wsUrl(c, 'c') })]) {
        const client = make();
        try {
          const n = (await client.execute('SELECT count(*) AS n FROM kv')).rows[0].n;
          const ins = await client.execute({ sql: 'INSERT INTO kv VALUES (?, 0)', args: [20000 + Number(n)] });
          assert.equal(ins.rowsAffected, 1);
          const rs = await client.batch(['SELECT count(*) AS n FROM kv', 'SELECT 1 AS one'], 'read');
          assert.equal(Number(rs[0].rows[0].n), Number(n) + 1);
          const tx = await client.transaction('write');
          await tx.execute({ sql: 'UPDATE kv SET v = v + 1 WHERE id = ?', args: [20000 + Number(n)] });
          assert.equal(Number((await tx.execute('SELECT count(*) AS n FROM kv')).rows[0].n), Number(n) + 1);
          await tx.commit();
          assert.equal(Number((await client.execute({ sql: 'SELECT v FROM kv WHERE id = ?', args: [20000 + Number(n)] }))
            .rows[0].v), 1);
        } finally {
          client.close();
        }
      }
    });
});
