// SPDX-License-Identifier: MIT
// The front door's WebSocket path against regions that misbehave, deterministically: hand-made
// regions (a TCP server that answers the upgrade 101 and then does what the case needs) behind
// `edgelite router`, and a client from the `ws` package. A region that stops reading: the door
// refuses requests with WS_ROUTER_LIMIT past its bound instead of buffering them without end.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import WebSocket from 'ws';

import { startRouter } from './lib/router.mjs';

// A region that answers the upgrade and then stops reading its socket.
async function stalledRegion() {
  const socks = [];
  const srv = net.createServer((s) => {
    socks.push(s);
    let got = '';
    const on = (d) => {
      got += d;
      if (!got.includes('\r\n\r\n')) return;
      s.off('data', on);
      s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Protocol: hrana3\r\n\r\n');
      s.pause();
    };
    s.on('data', on);
    s.on('error', () => {});
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { port: srv.address().port, close: () => { for (const s of socks) s.destroy(); srv.close(); } };
}

function doorConfig(dir, ports) {
  const file = path.join(dir, 'door.yaml');
  fs.writeFileSync(file, `cluster: { name: x, secret: "0123456789abcdef0123" }\nregions:\n` +
    ports.map((p, i) => `  - { id: r${i}, url: "http://127.0.0.1:${p}", priority: ${i + 1} }`).join('\n') +
    `\nrouter: { probe_interval_ms: 600000, request_timeout_ms: 60000, rtt_slack_ms: 0 }\n`);
  return file;
}

async function metric(url, name) {
  const text = await (await fetch(url + '/metrics')).text();
  for (const line of text.split('\n')) if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  return NaN;
}

async function openWs(url) {
  const ws = new WebSocket(url.replace('http', 'ws'), ['hrana3']);
  await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  return ws;
}

describe('router_door_ws_edge', { timeout: 120000 }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-door-ws-edge-'));
  const cleanup = [];
  after(() => {
    for (const f of cleanup.reverse()) f();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a region that stops reading: requests past 8 MiB waiting are refused WS_ROUTER_LIMIT', async () => {
    const region = await stalledRegion();
    cleanup.push(region.close);
    const door = await startRouter(doorConfig(dir, [region.port]));
    cleanup.push(() => door.proc.kill('SIGKILL'));
    const ws = await openWs(door.url);
    cleanup.push(() => ws.terminate());
    const answers = [];
    ws.on('message', (m) => answers.push(JSON.parse(String(m))));
    ws.send(JSON.stringify({ type: 'hello', jwt: null }));
    const big = 'x'.repeat(1000 * 1000);
    const N = 40; // 40 MB: more than the bound and what the sockets' buffers hold
    for (let i = 1; i <= N; i++) {
      ws.send(JSON.stringify({ type: 'request', request_id: i,
        request: { type: 'execute', stream_id: 1, stmt: { sql: `INSERT INTO t VALUES ('${big}')` } } }));
    }
    // until the answers stop coming (the rest wait for the region)
    for (let seen = -1; seen !== answers.length;) {
      seen = answers.length;
      await new Promise((r) => setTimeout(r, 1500));
    }
    const refused = answers.filter((a) => a.type === 'response_error' && a.error.code === 'WS_ROUTER_LIMIT');
    console.log(`# ${N} requests of 1 MB to a region that does not read: ${refused.length} refused`);
    assert.ok(refused.length >= 10, `refused ${refused.length} (answers ${JSON.stringify(answers).slice(0, 300)})`);
    assert.equal(refused.length, answers.length);
    assert.equal(await metric(door.url, 'edgelite_router_ws_upstream_full_total'), refused.length);
  });
});
