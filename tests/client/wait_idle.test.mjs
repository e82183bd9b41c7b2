// SPDX-License-Identifier: MIT
// Waiting is event-driven (issue 7, item 3): a region holding 1,000 bookmarked reads that nothing
// satisfies yet spends (next to) no CPU while no traffic arrives, because a waiter is only looked at
// when a commit, an applied batch or an ACK could satisfy it, or at its deadline. The waiters still
// get their answers: the ones whose write arrives are served (200 with the row), the others end
// with 504 BOOKMARK_TIMEOUT, and the ones whose connection closes are dropped at once
// (edgelite_waiting_requests falls) without harm to the node.
//
// The CPU check reads utime+stime of the region's process from /proc/<pid>/stat over a few idle
// seconds. A 2 ms poll per waiter (what this replaced) burns a large share of a core with 1,000
// waiters; the bound (5% of one core) is far above what an idle event loop uses and far below that.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';

import { sleep, startCluster } from './lib/cluster.mjs';
import { openHranaWs } from './lib/ws.mjs';

const WAITERS = 1000;
const ON_B = 500;      // wait for b's next write, which comes after the idle measurement
const ABORTED = 100;   // of the others: the client goes away while waiting
const TIMEOUT_MS = 20000;
const STRONG_TIMEOUT_MS = 4000;
const IDLE_MS = 3000;
const TICKS = 100;     // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s on Linux

function cpuTicks(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // fields 14 and 15: utime, stime
}

/** POST one read with a bookmark on its own connection; resolves { status, json } or { error }. */
function bookmarkedRead(port, agent, bookmark, id, onReq) {
  const body = JSON.stringify({ requests: [
    { type: 'execute', stmt: { sql: 'SELECT v FROM t WHERE id = ?', args: [{ type: 'integer', value: String(id) }] } },
    { type: 'close' },
  ] });
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v2/pipeline', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body),
        'x-edge-bookmark': bookmark } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, json });
      });
    });
    req.on('error', (e) => resolve({ error: e }));
    req.end(body);
    if (onReq) onReq(req);
  });
}

describe('wait_idle', { timeout: 120000 }, () => {
  let c;
  before(async () => {
    c = await startCluster({ regions: 3, proxies: 'none', tables: { s: 'strong' },
      extraArgs: ['--log-level', 'warn', '--bookmark-timeout-ms', String(TIMEOUT_MS),
        '--strong-timeout-ms', String(STRONG_TIMEOUT_MS)] });
    await c.createTable('t', 'CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)');
    await c.createTable('s', 'CREATE TABLE IF NOT EXISTS s (id INTEGER PRIMARY KEY, v TEXT)');
  });
  after(async () => { if (c) await c.destroy(); });

  test('1,000 parked bookmark reads cost no CPU and all get their answers', async () => {
    const w0 = await c.sql('b', 'INSERT INTO t (id, v) VALUES (1, ?)', ['first']);
    assert.ok(w0.ok && w0.bookmark, JSON.stringify(w0.error));
    const [origin, seq] = w0.bookmark.split(':');
    const next = `${origin}:${Number(seq) + 1}`; // b's next write, not made yet
    const conv = await c.waitConverged(['t'], 15000);
    assert.ok(conv.ok, 'the first row did not reach every region');

    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const port = c.regions.a.port;
    const reqs = [];
    const answers = [];
    for (let i = 0; i < WAITERS; i++) {
      const onB = i < ON_B;
      answers.push(bookmarkedRead(port, agent, onB ? next : 'zz:1', 2, (r) => reqs.push(r)));
    }
    const gauge = 'edgelite_waiting_requests{kind="bookmark"}';
    const parked = await c.waitFor(async () => (await c.metric('a', gauge)) === WAITERS, 30000, 100);
    assert.ok(parked, `not all ${WAITERS} reads parked: ${await c.metric('a', gauge)}`);

    // No traffic now (the peer links only keep their sessions alive): measure a's CPU.
    const pid = c.regions.a.proc.pid;
    await sleep(300);
    const t0 = cpuTicks(pid);
    const m0 = process.hrtime.bigint();
    await sleep(IDLE_MS);
    const used = cpuTicks(pid) - t0;
    const wallS = Number(process.hrtime.bigint() - m0) / 1e9;
    const share = used / TICKS / wallS;
    console.log(`# a with ${WAITERS} waiters: ${used} ticks of CPU in ${wallS.toFixed(2)} s = ${(share * 100).toFixed(2)}% of a core`);
    assert.ok(share < 0.05, `${WAITERS} idle waiters used ${(share * 100).toFixed(1)}% of a core`);

    // Clients that give up: their waiters go at once.
    for (let i = ON_B; i < ON_B + ABORTED; i++) reqs[i].destroy();
    const dropped = await c.waitFor(async () => (await c.metric('a', gauge)) === WAITERS - ABORTED, 10000, 50);
    assert.ok(dropped, `closed connections still parked: ${await c.metric('a', gauge)}`);

    // The write the first 500 wait for: each is served with the row.
    const w1 = await c.sql('b', 'INSERT INTO t (id, v) VALUES (2, ?)', ['second']);
    assert.equal(w1.bookmark, next);
    const served = await Promise.all(answers.slice(0, ON_B));
    for (const r of served) {
      assert.equal(r.status, 200, JSON.stringify(r));
      const res = r.json.results[0].response.result;
      assert.deepEqual(res.rows[0][0], { type: 'text', value: 'second' });
    }
    // The others time out with BOOKMARK_TIMEOUT; the aborted ones saw their own abort.
    const rest = await Promise.all(answers.slice(ON_B));
    for (let i = 0; i < rest.length; i++) {
      const r = rest[i];
      if (i < ABORTED) {
        assert.ok(r.error, `aborted request ${i} got an answer`);
      } else {
        assert.equal(r.status, 504, JSON.stringify(r));
        assert.equal(r.json?.code, 'BOOKMARK_TIMEOUT');
      }
    }
    assert.equal(await c.metric('a', gauge), 0);
    assert.equal((await c.sql('a', 'SELECT 1')).status, 200, 'a stopped serving');
    agent.destroy();
  });

  // Run under the ASan build this also checks that nothing parked leaks: the node's exit code
  // is non-zero when LeakSanitizer finds a leak at exit.
  test('strong writes end at their deadline; waiters whose client goes, or left at shutdown, are released', async () => {
    const gauge = (k) => c.metric('a', `edgelite_waiting_requests{kind="${k}"}`);
    // Strong writes (table s is strong) on the primary that no majority can confirm: b and c are
    // stopped (their links stay up, so the writes are accepted, committed and parked until a
    // majority or the strong timeout). Five over HTTP and two over WebSocket; one WebSocket
    // client goes away while waiting.
    c.pause('b');
    c.pause('c');
    const sessions = [];
    try {
      const http5 = [];
      for (let i = 0; i < 5; i++) http5.push(c.sql('a', 'INSERT INTO s (id, v) VALUES (?, ?)', [10 + i, 'http']));
      for (let i = 0; i < 2; i++) {
        const ws = await openHranaWs(c.url('a').replace('http', 'ws'), ['hrana2']);
        sessions.push(ws);
        ws.send({ type: 'hello', jwt: null });
        assert.equal((await ws.next()).type, 'hello_ok');
        await ws.request({ type: 'open_stream', stream_id: 1 });
        ws.send({ type: 'request', request_id: 99, request: { type: 'execute', stream_id: 1,
          stmt: { sql: 'INSERT INTO s (id, v) VALUES (?, ?)', args: [{ type: 'integer', value: String(i + 1) },
            { type: 'text', value: 'ws' }], want_rows: false } } });
      }
      assert.ok(await c.waitFor(async () => (await gauge('majority')) === 7, STRONG_TIMEOUT_MS / 2, 20),
        `the strong writes did not all park: ${await gauge('majority')}`);
      await sessions[0].close();
      assert.ok(await c.waitFor(async () => (await gauge('majority')) === 6, STRONG_TIMEOUT_MS / 2, 20),
        'the waiter of a closed WebSocket stayed');
      // The others end at the strong timeout: 504 over HTTP, a response_error over WebSocket.
      for (const r of await Promise.all(http5)) {
        assert.equal(r.status, 504, JSON.stringify(r));
        assert.equal(r.error?.code, 'STRONG_TIMEOUT');
      }
      const m = await sessions[1].next(STRONG_TIMEOUT_MS + 10000);
      assert.equal(m.type, 'response_error', JSON.stringify(m));
      assert.equal(m.request_id, 99);
      assert.equal(m.error.code, 'STRONG_TIMEOUT');
      assert.equal(await gauge('majority'), 0);
    } finally {
      for (const ws of sessions) await ws.close();
      c.resume('b');
      c.resume('c');
    }

    // Bookmark waiters still parked when the node is told to stop.
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const pending = [];
    for (let i = 0; i < 50; i++) pending.push(bookmarkedRead(c.regions.a.port, agent, 'zz:1', 1));
    assert.ok(await c.waitFor(async () => (await gauge('bookmark')) === 50, 10000, 50), 'the reads did not park');
    const exit = await c.stop('a', 30000);
    assert.equal(exit.timedOut, false, 'a did not stop with requests parked');
    assert.equal(exit.code, 0, `a exited with ${exit.code} ${exit.signal}: ${c.stderr('a').slice(-2000)}`);
    const answers = await Promise.all(pending);
    for (const r of answers) assert.ok(r.error || r.status >= 500, `a parked read got ${JSON.stringify(r)}`);
    agent.destroy();
  });
});
