// SPDX-License-Identifier: MIT
// Graceful stop (issue 9, item 7): SIGTERM under write load stops accepting, lets the requests in flight
// finish, answers every committed write and exits 0. Requests sent before the stop began all get an
// answer (the node is held with SIGSTOP while they are sent, so "before" is exact); only requests sent
// after it may see a connection error; every acknowledged write is there after a restart. A second
// signal, or --shutdown-timeout, ends a stop that waits on a request that does not finish.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { rawHttp, httpRequest, sleep, startNode } from './lib/node.mjs';

const T = { timeout: 120000 };

function isConnError(e) {
  const s = `${e?.code ?? ''} ${e?.cause?.code ?? ''} ${e?.cause?.cause?.code ?? ''} ${e?.message ?? ''} ${e?.cause?.message ?? ''}`;
  return /ECONNREFUSED|ECONNRESET|EPIPE|socket|closed|fetch failed|other side closed|terminated|WebSocket|1001|HRANA_WEBSOCKET/i.test(s);
}

describe('graceful stop', { timeout: 300000 }, () => {
  test('SIGTERM under write load: every request sent before it is answered, every acknowledged write survives', T, async () => {
    const node = await startNode({ args: ['--threads', '2', '--shutdown-timeout', '20'] });
    try {
      const admin = createClient({ url: node.url });
      await admin.execute('CREATE TABLE w (id INTEGER PRIMARY KEY, worker INTEGER)');
      admin.close();

      const acked = new Set();
      const records = []; // { id, startedBeforeStop, ok, connError, err }
      let paused = false;
      let stopSent = false;
      const resume = [];
      let nextId = 1;
      const MAX_REQ = 3000; // bound on the whole run
      const workers = [];
      for (let wi = 0; wi < 6; wi++) {
        const url = wi % 3 === 2 ? node.wsUrl : node.url; // two of six over WebSocket
        workers.push((async () => {
          const c = createClient({ url });
          try {
            for (let k = 0; k < 1000 && nextId <= MAX_REQ; k++) {
              if (paused) await new Promise((r) => resume.push(r));
              const id = nextId++;
              const rec = { id, startedBeforeStop: !stopSent, ok: false, connError: false, err: null };
              records.push(rec);
              try {
                await c.execute({ sql: 'INSERT INTO w VALUES (?, ?)', args: [id, wi] });
                rec.ok = true;
                acked.add(id);
              } catch (e) {
                rec.err = e;
                rec.connError = isConnError(e);
                if (stopSent) break; // the node is going away: this worker is done
              }
            }
          } finally {
            c.close();
          }
        })());
      }
      // Let the load run until a good number of writes are acknowledged (bounded by count and time).
      for (let i = 0; i < 400 && acked.size < 150; i++) await sleep(25);
      assert.ok(acked.size > 0, 'the load did not start');

      // Hold the node, send requests it has not read yet (on open connections and on new ones), then
      // SIGTERM and let it go on: all of these were sent before the stop began.
      paused = true;
      process.kill(node.proc.pid, 'SIGSTOP');
      const extra = [];
      for (let i = 0; i < 6; i++) {
        const id = nextId++;
        const rec = { id, startedBeforeStop: true, ok: false, connError: false, err: null };
        records.push(rec);
        const c = createClient({ url: i % 2 ? node.wsUrl : node.url });
        extra.push(c.execute({ sql: 'INSERT INTO w VALUES (?, ?)', args: [id, 100 + i] })
          .then(() => { rec.ok = true; acked.add(id); }, (e) => { rec.err = e; rec.connError = isConnError(e); })
          .finally(() => c.close()));
      }
      await sleep(300);
      stopSent = true;
      process.kill(node.proc.pid, 'SIGTERM');
      process.kill(node.proc.pid, 'SIGCONT');
      paused = false;
      for (const r of resume.splice(0)) r();
      const exit = await node.kill('SIGCONT', 30000); // waits for the exit (SIGCONT is harmless)
      assert.equal(exit.timedOut, false, 'the node did not exit');
      assert.equal(exit.code, 0, `exit ${exit.code} ${exit.signal}\n${node.stderr().slice(-2000)}`);
      await Promise.all([...workers, ...extra]);

      const before = records.filter((r) => r.startedBeforeStop);
      const unanswered = before.filter((r) => !r.ok && r.connError);
      assert.deepEqual(unanswered.map((r) => `${r.id}: ${r.err?.message}`), [],
        'requests sent before the stop began lost their answer');
      for (const r of records.filter((x) => !x.ok && !x.connError)) {
        assert.fail(`request ${r.id} failed with an answer: ${r.err?.code} ${r.err?.message}`);
      }
      assert.match(node.stderr(), /SIGTERM received, stopping/);

      await node.restart();
      const c = createClient({ url: node.url });
      const rows = (await c.execute('SELECT id FROM w')).rows.map((r) => Number(r.id));
      c.close();
      const present = new Set(rows);
      const lost = [...acked].filter((id) => !present.has(id));
      assert.deepEqual(lost, [], 'acknowledged writes are missing after the restart');
      assert.ok(acked.size >= 150 + 6 - unanswered.length);
    } finally {
      try { process.kill(node.proc.pid, 'SIGCONT'); } catch { /* gone */ }
      await node.destroy();
    }
  });

  async function slowRead(node) {
    // A read that only ends when interrupted (no time budget): it keeps its connection busy.
    const sql = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c';
    const body = JSON.stringify({ requests: [{ type: 'execute', stmt: { sql } }, { type: 'close' }] });
    return rawHttp(node.port, httpRequest('POST', '/v2/pipeline', { body, headers: { 'Content-Type': 'application/json' } }),
      { timeoutMs: 60000 });
  }

  test('a second signal stops at once', T, async () => {
    const node = await startNode({ args: ['--threads', '2', '--query-timeout-ms', '0', '--shutdown-timeout', '600'] });
    try {
      const pending = slowRead(node);
      await sleep(500);
      process.kill(node.proc.pid, 'SIGTERM');
      await sleep(1000);
      assert.equal(node.proc.exitCode, null, 'the first signal waits for the request in flight');
      const r = await node.kill('SIGTERM', 20000);
      assert.equal(r.timedOut, false);
      assert.equal(r.code, 0);
      assert.match(node.stderr(), /second signal: stopping at once/);
      await pending;
    } finally {
      await node.destroy();
    }
  });

  test('--shutdown-timeout ends a stop that waits on a request that does not finish', T, async () => {
    const node = await startNode({ args: ['--threads', '2', '--query-timeout-ms', '0', '--shutdown-timeout', '1'] });
    try {
      const pending = slowRead(node);
      await sleep(500);
      const r = await node.kill('SIGTERM', 30000);
      assert.equal(r.timedOut, false);
      assert.equal(r.code, 0);
      assert.match(node.stderr(), /shutdown timeout: closing/);
      await pending;
    } finally {
      await node.destroy();
    }
  });
});
