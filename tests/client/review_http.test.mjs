// SPDX-License-Identifier: MIT
// Review findings on src/net/http.c:
//  1. A pipelined request that follows a request carrying "Connection: close" is still executed
//     (RFC 9112 9.6: the server must close after answering the "close" request and should not
//     process further requests); a write sent that way is applied although its answer is lost.
//  2. Pipelined responses are queued in libuv without any bound when the client does not read:
//     dispatch() goes on to the next request as soon as an answer is handed to uv_write, so a
//     client that pipelines big queries and never reads makes the server hold every answer.
// Run: cd tests/client && EDGE_BIN=../../build-review/edgelite node --test review_http.test.mjs

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';

import { httpRequest, pipeline, rawHttp, sleep, startNode } from './lib/node.mjs';

const one = (sql) => JSON.stringify({ requests: [{ type: 'execute', stmt: { sql } }, { type: 'close' }] });

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

describe('review: http', { timeout: 60000 }, () => {
  let node;
  before(async () => {
    node = await startNode({ args: ['--threads', '1'] });
    const r = await pipeline(`${node.url}/v2/pipeline`, one('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)'));
    assert.equal(r.status, 200, r.text);
  });
  after(async () => { if (node) await node.destroy(); });

  test('nothing after a "Connection: close" request is executed', async () => {
    const first = httpRequest('POST', '/v2/pipeline', {
      headers: { 'Content-Type': 'application/json', Connection: 'close' },
      body: one('SELECT 1'),
    });
    const second = httpRequest('POST', '/v2/pipeline', {
      headers: { 'Content-Type': 'application/json', Connection: 'keep-alive' },
      body: one("INSERT INTO t VALUES (1, 'after close')"),
    });
    const r = await rawHttp(node.port, Buffer.concat([first, second]), { timeoutMs: 3000 });
    assert.equal(r.status, 200);
    await sleep(300);
    const check = await pipeline(`${node.url}/v2/pipeline`, one('SELECT count(*) FROM t WHERE id = 1'));
    const n = Number(check.json.results[0].response.result.rows[0][0].value);
    assert.equal(n, 0, 'the request pipelined after "Connection: close" was executed');
  });

  // Under AddressSanitizer freed memory sits in a quarantine, so RSS says nothing about buffering.
  test('a client that pipelines and never reads cannot make the server buffer every answer',
    { skip: process.env.ASAN_OPTIONS ? 'RSS is not meaningful under ASan (allocator quarantine)' : false }, async () => {
    const pid = node.proc.pid;
    const before = rssKb(pid);
    // 16 requests of ~20 MB answers each (hex of a 10 MB zeroblob), never read.
    const req = httpRequest('POST', '/v2/pipeline', {
      headers: { 'Content-Type': 'application/json', Connection: 'keep-alive' },
      body: one('SELECT hex(zeroblob(10000000))'),
    });
    const sock = net.connect({ port: node.port, host: '127.0.0.1' });
    await new Promise((res) => sock.once('connect', res));
    sock.pause();
    for (let i = 0; i < 16; i++) sock.write(req);
    let peak = before;
    for (let i = 0; i < 40; i++) {
      await sleep(100);
      peak = Math.max(peak, rssKb(pid));
    }
    sock.destroy();
    const grownMb = (peak - before) / 1024;
    assert.ok(grownMb < 120, `server RSS grew by ${grownMb.toFixed(0)} MB for one client that does not read`);
  });
});
