// SPDX-License-Identifier: MIT
// The front door's WebSocket path (issue 12): the door reads the Hrana messages it relays.
// - read-your-writes: writes answered to a token (over HTTP, or over another WebSocket with the same
//   jwt) put their bookmarks in the token's vector, and a read over WebSocket that lands on a region
//   without those writes carries the vector and waits for them (the real @libsql/client over ws://);
// - fail-over: a region SIGKILLed under a WebSocket read load: the session moves to another region
//   (hello, streams and stored SQL recreated), the reads in flight run again there, no read fails; a
//   write in flight at the kill is answered WRITE_OUTCOME_UNKNOWN and not run anywhere, a batch gets
//   a clear error too; a region that stops answering counts as lost after router.request_timeout_ms;
// - a transaction open in the lost region closes the session with 1011 (never a silent re-run);
// - malformed frames and the per-session bounds: a clear close code or Hrana error, the door lives on.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { startRouter } from './lib/router.mjs';
import { openHranaWs } from './lib/ws.mjs';

async function routerMetric(url, name) {
  const text = await (await fetch(url + '/metrics')).text();
  for (const line of text.split('\n')) if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  return NaN;
}

async function wsSessions(url) {
  const text = await (await fetch(url + '/metrics')).text();
  const out = {};
  for (const m of text.matchAll(/edgelite_router_region_ws_sessions_total\{region="(\w+)"\} (\d+)/g)) out[m[1]] = Number(m[2]);
  return out;
}

async function httpExec(url, sql, token) {
  const res = await fetch(url + '/v2/pipeline', { method: 'POST', signal: AbortSignal.timeout(15000),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ baton: null, requests: [{ type: 'execute', stmt: { sql } }, { type: 'close' }] }) });
  return { status: res.status, text: await res.text(), region: res.headers.get('x-edge-region') };
}

function routerConfig(c, file, router) {
  fs.writeFileSync(file, [
    `cluster: { name: ${c.name}, secret: "${c.secret}" }`,
    'regions:',
    ...c.ids.map((id) => `  - { id: ${id}, url: "${c.url(id)}", priority: ${c.regions[id].priority} }`),
    `router: ${router}`, ''].join('\n'));
  return file;
}

// A raw Hrana session (hrana3) through the door at url (http://...), its hello answered.
async function helloWs(url) {
  const s = await openHranaWs(url.replace('http://', 'ws://'), ['hrana3']);
  s.send({ type: 'hello', jwt: null });
  assert.equal((await s.next()).type, 'hello_ok');
  return s;
}

async function waitDown(c, url, id) {
  assert.ok(await c.waitFor(async () => (await (await fetch(url + '/v1/router/regions')).json()).regions
    .some((x) => x.id === id && !x.up), 10000, 50), `the router did not see ${id} down`);
}

describe('router_door_ws: read-your-writes over WebSocket', { timeout: 240000 }, () => {
  let c;
  let r;
  before(async () => {
    c = await startCluster({ regions: 2, proxies: 'front',
      extraArgs: ['--log-level', 'warn', '--bookmark-timeout-ms', '60000'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    const cfg = routerConfig(c, path.join(c.root, 'router-ws-ryw.yaml'),
      '{ probe_interval_ms: 100, request_timeout_ms: 90000, rtt_slack_ms: 0 }');
    r = await startRouter(cfg, ['--client-region', 'a']);
  });
  after(async () => {
    if (r) r.proc.kill('SIGKILL');
    if (c) await c.destroy();
  });

  test('writes over HTTP and over another WebSocket, then a WebSocket read in b: it sees both', async () => {
    const { createClient } = await import('@libsql/client');
    const token = 'ryw-ws-token';
    await c.proxies.b.cut(); // nothing of a's reaches b from here on
    const h = await httpExec(r.url, "INSERT INTO t (id, v) VALUES (1, 'over http')", token);
    assert.equal(h.status, 200, h.text);
    assert.equal(h.region, 'a');
    const w = createClient({ url: r.url.replace('http://', 'ws://'), authToken: token });
    try {
      await w.execute({ sql: 'INSERT INTO t (id, v) VALUES (?, ?)', args: [2, 'over ws'] });
    } finally {
      w.close();
    }
    assert.equal((await wsSessions(r.url)).a, 1, 'the writing session was not in a');
    assert.deepEqual(await c.rows('b', 'SELECT id FROM t ORDER BY id'), [], 'b must not have the writes yet');

    // a stops answering: the router's next WebSocket session goes to b, which lacks both writes
    c.pause('a');
    let res;
    try {
      await waitDown(c, r.url, 'a');
      const rd = createClient({ url: r.url.replace('http://', 'ws://'), authToken: token });
      try {
        const read = rd.execute('SELECT id, v FROM t ORDER BY id');
        await sleep(1000); // parked in b for a's entries: let them in
        c.resume('a');
        await c.proxies.b.reset();
        res = await read;
      } finally {
        rd.close();
      }
    } finally {
      c.resume('a');
    }
    assert.equal((await wsSessions(r.url)).b, 1, 'the reading session was not in b');
    assert.deepEqual(res.rows.map((x) => [Number(x.id), x.v]), [[1, 'over http'], [2, 'over ws']],
      'the WebSocket read in b missed the token\'s writes');
    assert.ok(await routerMetric(r.url, 'edgelite_router_ws_ryw_bookmarks_total') >= 1);
  });
});

describe('router_door_ws: fail-over of a WebSocket session', { timeout: 240000 }, () => {
  let c;
  let cfgNear;
  before(async () => {
    c = await startCluster({ regions: 3, extraArgs: ['--log-level', 'warn'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    await c.createTable('log', 'CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, v TEXT)');
    cfgNear = routerConfig(c, path.join(c.root, 'router-ws-near.yaml'),
      '{ probe_interval_ms: 100, request_timeout_ms: 5000, rtt_slack_ms: 0 }');
  });
  after(async () => {
    if (c) await c.destroy();
  });

  test('SIGKILL of the region under WebSocket reads: no failed read, the write in flight not run again', async () => {
    const { createClient } = await import('@libsql/client');
    const rc = await startRouter(cfgNear, ['--client-region', 'c']);
    const cl = createClient({ url: rc.url.replace('http://', 'ws://'), authToken: 'fo-token' });
    try {
      await cl.execute("INSERT INTO t (id, v) VALUES (1, 'one')");
      assert.ok((await c.waitConverged(['t'], 20000)).ok);
      assert.deepEqual(await wsSessions(rc.url), { a: 0, b: 0, c: 1 });
      let failed = 0;
      let reads = 0;
      let killedAt = 0;
      let firstAfter = 0;
      const errors = [];
      let stop = false;
      const worker = async () => {
        while (!stop) {
          try {
            const rs = await cl.execute({ sql: 'SELECT v FROM t WHERE id = ?', args: [1] });
            assert.equal(rs.rows[0].v, 'one');
            reads++;
            if (killedAt && !firstAfter) firstAfter = Date.now() - killedAt;
          } catch (e) {
            failed++;
            errors.push(String(e));
          }
        }
      };
      const load = Promise.all([worker(), worker(), worker(), worker()]);
      await sleep(1000);
      // c stops: requests pile up unanswered in its socket, a write among them; then it dies
      c.pause('c');
      await sleep(100);
      const write = cl.execute("INSERT INTO log (v) VALUES ('in flight')").then(() => null, (e) => e);
      // a batch in flight: lost with the region, answered, the session kept
      const batch = cl.batch(['SELECT 1', 'SELECT 2'], 'read').then(() => null, (e) => e);
      await sleep(300);
      c.regions.c.expectExit = true;
      c.regions.c.proc.kill('SIGKILL'); // straight from stopped: it never runs again
      killedAt = Date.now();
      await c.kill('c');
      const werr = await write;
      const berr = await batch;
      await sleep(2000);
      stop = true;
      await load;
      const fo = await routerMetric(rc.url, 'edgelite_router_ws_last_failover_ms');
      console.log(`# ${reads} WebSocket reads, failed ${failed}, first read answered ${firstAfter} ms after the kill, ` +
        `router session move ${fo} ms, sessions ${JSON.stringify(await wsSessions(rc.url))}`);
      assert.equal(failed, 0, errors.slice(0, 3).join('\n'));
      assert.ok(firstAfter > 0, 'no read was answered after the kill');
      assert.ok(werr, 'the write in flight succeeded?');
      assert.equal(werr.code, 'WRITE_OUTCOME_UNKNOWN', String(werr));
      assert.ok(berr, 'the batch in flight succeeded?');
      // @libsql/client sends it as one batch request, BEGIN ... COMMIT: not a read to the door
      assert.equal(berr.code, 'WRITE_OUTCOME_UNKNOWN', String(berr));
      assert.equal(await routerMetric(rc.url, 'edgelite_router_ws_failovers_total'), 1);
      assert.ok(await routerMetric(rc.url, 'edgelite_router_ws_reads_retried_total') >= 1);
      // the connection is kept: later writes go on in the new region, and the one in flight ran nowhere
      await cl.execute("INSERT INTO log (v) VALUES ('after')");
      assert.ok((await c.waitConverged(['log'], 20000, ['a', 'b'])).ok);
      for (const id of ['a', 'b']) {
        assert.deepEqual(await c.rows(id, 'SELECT v FROM log ORDER BY id'), [['after']], `region ${id}`);
      }
    } finally {
      cl.close();
      rc.proc.kill('SIGKILL');
    }
  });
  test('a region that stops answering (SIGSTOP): past router.request_timeout_ms the session moves', async () => {
    const { createClient } = await import('@libsql/client');
    const cfg = routerConfig(c, path.join(c.root, 'router-ws-stall.yaml'),
      '{ probe_interval_ms: 100, request_timeout_ms: 1500, rtt_slack_ms: 0 }');
    const rc = await startRouter(cfg, ['--client-region', 'b']);
    const cl = createClient({ url: rc.url.replace('http://', 'ws://') });
    try {
      assert.equal((await cl.execute('SELECT v FROM t WHERE id = 1')).rows[0].v, 'one');
      let failed = 0;
      let reads = 0;
      let slowest = 0;
      let stop = false;
      const errors = [];
      const worker = async () => {
        while (!stop) {
          const t0 = Date.now();
          try {
            await cl.execute({ sql: 'SELECT v FROM t WHERE id = ?', args: [1] });
            reads++;
          } catch (e) {
            failed++;
            errors.push(String(e));
          }
          slowest = Math.max(slowest, Date.now() - t0);
        }
      };
      const load = Promise.all([worker(), worker()]);
      await sleep(500);
      c.pause('b');
      let werr;
      try {
        werr = await cl.execute("INSERT INTO log (v) VALUES ('stalled')").then(() => null, (e) => e);
        await sleep(1000);
      } finally {
        stop = true;
        await load;
        c.resume('b');
      }
      console.log(`# ${reads} reads, failed ${failed}, slowest ${slowest} ms (the stall: request_timeout_ms 1500)`);
      assert.equal(failed, 0, errors.slice(0, 3).join('\n'));
      assert.ok(werr && werr.code === 'WRITE_OUTCOME_UNKNOWN', String(werr));
      assert.equal(await routerMetric(rc.url, 'edgelite_router_ws_failovers_total'), 1);
      assert.deepEqual(await wsSessions(rc.url), { a: 1, b: 1, c: 0 });
    } finally {
      cl.close();
      rc.proc.kill('SIGKILL');
    }
  });
});

describe('router_door_ws: transactions, malformed frames, bounds', { timeout: 240000 }, () => {
  let c;
  let cfgNear;
  before(async () => {
    c = await startCluster({ regions: 2, extraArgs: ['--log-level', 'warn'] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    cfgNear = routerConfig(c, path.join(c.root, 'router-ws-tx.yaml'),
      '{ probe_interval_ms: 100, request_timeout_ms: 5000, rtt_slack_ms: 0 }');
  });
  after(async () => {
    if (c) await c.destroy();
  });

  test('a transaction in the lost region: the session closes 1011, nothing re-run', async () => {
    const rc = await startRouter(cfgNear, ['--client-region', 'b']);
    try {
      const s = await helloWs(rc.url);
      assert.equal((await s.request({ type: 'open_stream', stream_id: 1 })).type, 'response_ok');
      const ex = (sql) => s.request({ type: 'execute', stream_id: 1, stmt: { sql, want_rows: true } });
      assert.equal((await ex('BEGIN')).type, 'response_ok');
      assert.equal((await ex("INSERT INTO t (id, v) VALUES (7, 'tx')")).type, 'response_ok');
      await c.kill('b');
      const closed = await s.closed;
      assert.equal(closed.code, 1011);
      assert.equal(await routerMetric(rc.url, 'edgelite_router_ws_lost_pinned_total'), 1);
      assert.deepEqual(await c.rows('a', 'SELECT count(*) FROM t WHERE id = 7'), [[0]]);
    } finally {
      rc.proc.kill('SIGKILL');
      await c.restart('b');
    }
  });

  test('streams closed with a cursor still open: the cursor bound is never reached', async () => {
    const rc = await startRouter(cfgNear, ['--client-region', 'a']);
    try {
      const s = await helloWs(rc.url);
      // 1100 streams (more than the 1024 cursors a session may hold), each closed with its cursor open:
      // the region closes a stream's cursors with it, and so does the door's count
      const N = 1100;
      let maxCursors = 0;
      for (let i = 0; i < N; i++) {
        const stream = 1 + (i % 3);
        assert.equal((await s.request({ type: 'open_stream', stream_id: stream })).type, 'response_ok');
        const cur = await s.request({ type: 'open_cursor', stream_id: stream, cursor_id: i,
          batch: { steps: [{ stmt: { sql: 'SELECT v FROM t' } }] } });
        assert.equal(cur.type, 'response_ok', `cursor ${i}: ${JSON.stringify(cur)}`);
        if (i % 100 === 50) maxCursors = Math.max(maxCursors, await routerMetric(rc.url, 'edgelite_router_ws_cursors'));
        assert.equal((await s.request({ type: 'close_stream', stream_id: stream })).type, 'response_ok');
      }
      assert.equal(maxCursors, 1, 'one cursor open at a time');
      assert.equal(await routerMetric(rc.url, 'edgelite_router_ws_cursors'), 0);
      assert.equal(await routerMetric(rc.url, 'edgelite_router_ws_streams'), 0);
      assert.equal(await routerMetric(rc.url, 'edgelite_router_ws_limited_total'), 0);
      await s.close();
    } finally {
      rc.proc.kill('SIGKILL');
    }
  });

  test('malformed frames: a close code or a Hrana error, never a crash; bounded state', async () => {
    const rc = await startRouter(cfgNear, ['--client-region', 'a']);
    try {
      const cases = [
        [(s) => s.send('this is not json'), 1007],
        [(s) => s.send('[1,2,3]'), 1002],
        [(s) => s.send({ no: 'type' }), 1002],
        [(s) => s.send({ type: 'request', request: { type: 'open_stream', stream_id: 1 } }), 1002],
        [(s) => s.send({ type: 'mystery' }), 1002],
        [(s) => s.ws.send(Buffer.from([1, 2, 3]), { binary: true }), 1003],
      ];
      for (const [act, code] of cases) {
        const s = await helloWs(rc.url);
        act(s);
        assert.equal((await s.closed).code, code, String(act));
      }
      // a request the region refuses: its Hrana error, and the session goes on
      const s = await helloWs(rc.url);
      const bad = await s.request({ type: 'execute', stream_id: 99, stmt: { sql: 'SELECT 1' } });
      assert.equal(bad.type, 'response_error');
      const badBm = await s.request({ type: 'open_stream', stream_id: 1 });
      assert.equal(badBm.type, 'response_ok');
      s.send({ type: 'request', request_id: 500, request: { type: 'execute', stream_id: 1, stmt: { sql: 'SELECT 1' } },
        bookmark: 'not a bookmark' });
      const r500 = await s.next();
      assert.equal(r500.request_id, 500);
      assert.equal(r500.error.code, 'BOOKMARK_INVALID');
      // stored SQL past the per-session bound: refused by the router, nothing stored
      for (let i = 0; i < 200; i++) s.send({ type: 'request', request_id: 1000 + i, request: { type: 'store_sql', sql_id: i, sql: 'SELECT 1' } });
      for (let i = 0; i < 200; i++) assert.equal((await s.next()).type, 'response_ok');
      const over = await s.request({ type: 'store_sql', sql_id: 5000, sql: 'SELECT 1' });
      assert.equal(over.type, 'response_error');
      assert.equal(over.error.code, 'WS_ROUTER_LIMIT');
      assert.ok(await routerMetric(rc.url, 'edgelite_router_ws_limited_total') >= 1);
      const ok = await s.request({ type: 'execute', stream_id: 1, stmt: { sql_id: 3, want_rows: true } });
      assert.equal(ok.type, 'response_ok');
      await s.close();
      assert.equal((await fetch(rc.url + '/health')).status, 200);
    } finally {
      rc.proc.kill('SIGKILL');
    }
  });
});
