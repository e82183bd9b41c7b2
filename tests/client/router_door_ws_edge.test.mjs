// SPDX-License-Identifier: MIT
// The front door's WebSocket path against regions that misbehave, deterministically: hand-made
// regions (a TCP server that answers the upgrade 101 and then does what the case needs) behind
// `edgelite router`, and a client from the `ws` package. A region that stops reading: the door
// refuses requests with WS_ROUTER_LIMIT past its bound instead of buffering them without end.
// A client whose first messages arrive in the same packet as its upgrade request gets them
// answered (they used to reach the door's HTTP handler and close the session 1011). A region's
// binary frame reaches the client as binary, an invalid close code as 1011; the regions' own
// upgrades (/v1/peer, /v1/realtime) are not relayed; a request id in the door's own range is refused.
// A region that accepts TCP and never answers the upgrade: past router.connect_timeout_ms the
// session's first requests go to the next region, and with none left the client is closed 1011; a
// session moving to it is closed 1011 at the move's deadline (router.request_timeout_ms) when its
// connect_timeout_ms would reach further.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import WebSocket, { WebSocketServer } from 'ws';

import { startCluster } from './lib/cluster.mjs';
import { startRouter } from './lib/router.mjs';

// A region that answers the upgrade and then stops reading its socket (upgrades(): how many
// WebSocket upgrade requests it answered; the door's probe gets the same answer on its own connection).
async function stalledRegion() {
  const socks = [];
  let upgrades = 0;
  const srv = net.createServer((s) => {
    socks.push(s);
    let got = '';
    const on = (d) => {
      got += d;
      if (!got.includes('\r\n\r\n')) return;
      s.off('data', on);
      if (/^upgrade: websocket/im.test(got)) upgrades++;
      s.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Protocol: hrana3\r\n\r\n');
      s.pause();
    };
    s.on('data', on);
    s.on('error', () => {});
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { port: srv.address().port, upgrades: () => upgrades,
    close: () => { for (const s of socks) s.destroy(); srv.close(); } };
}

// A region speaking just enough Hrana: hello_ok, and response_ok to every request (what it
// received is kept, with the close code or frame type it is told to send in `script`).
async function scriptedRegion(script = {}) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', handleProtocols: (ps) => [...ps][0] });
  const got = [];
  wss.on('connection', (ws, req) => {
    got.push({ path: req.url });
    ws.on('message', (m, binary) => {
      const x = JSON.parse(String(m));
      got.push(x);
      if (x.type === 'hello') ws.send(JSON.stringify({ type: 'hello_ok' }));
      else if (script.onRequest) script.onRequest(ws, x);
      else ws.send(JSON.stringify({ type: 'response_ok', request_id: x.request_id, response: { type: 'open_stream' } }));
    });
  });
  await new Promise((r) => wss.once('listening', r));
  return { port: wss.address().port, got, close: () => { for (const c of wss.clients) c.terminate(); wss.close(); } };
}

// A masked client text frame (RFC 6455 5.3).
function frame(text) {
  const p = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const head = p.length < 126 ? Buffer.from([0x81, 0x80 | p.length]) : Buffer.from([0x81, 0x80 | 126, p.length >> 8, p.length & 255]);
  return Buffer.concat([head, mask, Buffer.from(p.map((b, i) => b ^ mask[i & 3]))]);
}

// A raw client: the upgrade request and the given Hrana messages in one packet; `got` collects every byte the
// door sends back (the 101 included). It answers nothing, so a close frame from the door waits for it.
async function rawUpgrade(port, cleanup, messages) {
  const sock = net.connect(port, '127.0.0.1');
  cleanup.push(() => sock.destroy());
  await new Promise((r) => sock.once('connect', r));
  const raw = { sock, got: Buffer.alloc(0) };
  sock.on('data', (d) => { raw.got = Buffer.concat([raw.got, d]); });
  sock.write(Buffer.concat([
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
      'Sec-WebSocket-Protocol: hrana3\r\n\r\n'),
    ...messages.map((m) => frame(JSON.stringify(m)))]));
  return raw;
}

// A region that accepts TCP connections and never answers anything (upgrades(): how many WebSocket
// upgrade requests it was sent; the door's probes come on a connection of their own).
async function silentRegion() {
  const socks = [];
  let upgrades = 0;
  const srv = net.createServer((s) => {
    socks.push(s);
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (/^upgrade: websocket/im.test(got) && got.includes('\r\n\r\n')) { upgrades++; got = ''; }
    });
    s.on('error', () => {});
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { port: srv.address().port, upgrades: () => upgrades,
    close: () => { for (const s of socks) s.destroy(); srv.close(); } };
}

// A region whose GET /health answers 200 and whose WebSocket upgrade hangs (upgrades(): how many upgrade
// requests it was sent); answer(): from then on it answers the upgrade and the hello as a region would.
async function hangingUpgradeRegion() {
  const srv = http.createServer((req, res) => { res.writeHead(200); res.end(); });
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (ps) => [...ps][0] });
  const socks = [];
  let upgrades = 0;
  let answering = false;
  srv.on('upgrade', (req, sock, head) => {
    upgrades++;
    socks.push(sock);
    sock.on('error', () => {});
    if (!answering) return;
    wss.handleUpgrade(req, sock, head, (ws) => ws.on('message', (m) => {
      if (JSON.parse(String(m)).type === 'hello') ws.send(JSON.stringify({ type: 'hello_ok' }));
    }));
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { port: srv.address().port, upgrades: () => upgrades, answer: () => { answering = true; },
    close: () => { for (const s of socks) s.destroy(); for (const c of wss.clients) c.terminate(); srv.close(); } };
}

function doorConfig(dir, ports, extra = '', requestTimeoutMs = 60000, probeIntervalMs = 600000) {
  const file = path.join(dir, 'door.yaml');
  fs.writeFileSync(file, `cluster: { name: x, secret: "0123456789abcdef0123" }\nregions:\n` +
    ports.map((p, i) => `  - { id: r${i}, url: "http://127.0.0.1:${p}", priority: ${i + 1} }`).join('\n') +
    `\nrouter: { probe_interval_ms: ${probeIntervalMs}, request_timeout_ms: ${requestTimeoutMs}, rtt_slack_ms: 0${extra} }\n`);
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
  // A door in front of these regions and a session through it that has sent its hello; answers: every
  // message the client got, parsed.
  async function session(ports, extra = '', args = [], requestTimeoutMs = undefined) {
    const door = await startRouter(doorConfig(dir, ports, extra, requestTimeoutMs), args);
    cleanup.push(() => door.proc.kill('SIGKILL'));
    const ws = await openWs(door.url);
    cleanup.push(() => ws.terminate());
    const answers = [];
    ws.on('message', (m) => answers.push(JSON.parse(String(m))));
    ws.send(JSON.stringify({ type: 'hello', jwt: null }));
    return { door, ws, answers };
  }
  // A new session through the door at url that sends its hello: the type of the first answer, or the close
  // code if the door closed it instead
  async function helloType(url) {
    const ws = await openWs(url);
    cleanup.push(() => ws.terminate());
    const got = new Promise((r) => {
      ws.once('message', (x) => r(JSON.parse(String(x)).type));
      ws.once('close', (code) => r(code));
      setTimeout(() => r('nothing'), 15000).unref();
    });
    ws.send(JSON.stringify({ type: 'hello', jwt: null }));
    return got;
  }
  // A door whose preferred region r0 answers /health but hangs on the upgrade (connect_timeout_ms 1 s),
  // with a real node as r1: r0 is the client's region, so the door prefers it whenever it is up, and its
  // probes (every 100 ms) say it is up again right after each failed upgrade
  async function hangingFirstDoor() {
    const hang = await hangingUpgradeRegion();
    cleanup.push(hang.close);
    const c = await startCluster({ regions: 1 });
    cleanup.push(() => c.destroy());
    const door = await startRouter(doorConfig(dir, [hang.port, c.regions.a.port],
      ', connect_timeout_ms: 1000', 60000, 100), ['--client-region', 'r0']);
    cleanup.push(() => door.proc.kill('SIGKILL'));
    return { hang, door };
  }
  after(() => {
    for (const f of cleanup.reverse()) f();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a region that stops reading: requests past 8 MiB waiting are refused WS_ROUTER_LIMIT', async () => {
    const region = await stalledRegion();
    cleanup.push(region.close);
    const { door, ws, answers } = await session([region.port]);
    // the session up at the door first: the region runs in this process, and building the 40 MB
    // below holds it for seconds under load, past the door's connect_timeout_ms (2 s) for the 101
    const name = 'edgelite_router_region_ws_sessions_total{region="r0"}';
    for (const t0 = Date.now(); await metric(door.url, name) !== 1 && Date.now() - t0 < 15000;) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(region.upgrades(), 1);
    const big = 'x'.repeat(1000 * 1000);
    const N = 40; // 40 MB: more than the bound and what the sockets' buffers hold
    for (let i = 1; i <= N; i++) {
      ws.send(JSON.stringify({ type: 'request', request_id: i,
        request: { type: 'execute', stream_id: 1, stmt: { sql: `INSERT INTO t VALUES ('${big}')` } } }));
    }
    // until the answers stop coming (the rest wait for the region); none yet is not "stopped" (under
    // load the first refusal may take longer than one pause)
    const t0 = Date.now();
    for (let seen = -1; seen !== answers.length || (answers.length === 0 && Date.now() - t0 < 30000);) {
      seen = answers.length;
      await new Promise((r) => setTimeout(r, 1500));
    }
    const refused = answers.filter((a) => a.type === 'response_error' && a.error.code === 'WS_ROUTER_LIMIT');
    console.log(`# ${N} requests of 1 MB to a region that does not read: ${refused.length} refused`);
    assert.ok(refused.length >= 10, `refused ${refused.length} (answers ${JSON.stringify(answers).slice(0, 300)})`);
    assert.equal(refused.length, answers.length);
    // (a refusal counted may still be on its way to the client)
    assert.ok(await metric(door.url, 'edgelite_router_ws_upstream_full_total') >= refused.length);
    // hellos the region does not answer: past 64 waiting the door closes the session 1008
    const closed = new Promise((r) => { ws.once('close', (code) => r(code)); setTimeout(() => r('still open'), 15000); });
    for (let i = 0; i < 70; i++) ws.send(JSON.stringify({ type: 'hello', jwt: null }));
    assert.equal(await closed, 1008);
  });

  test('a region that never answers the upgrade: the session\'s first request goes to the next one', async () => {
    const silent = await silentRegion();
    cleanup.push(silent.close);
    const region = await scriptedRegion();
    cleanup.push(region.close);
    // r0 (the silent one) is the client's region: the door tries it first
    // connect_timeout_ms 1000: a loaded machine (the test's own regions run in this process) can take
    // a few hundred ms for a real 101, which must not count as the silent region's timeout
    const { door, ws, answers } = await session([silent.port, region.port], ', connect_timeout_ms: 1000',
      ['--client-region', 'r0']);
    ws.send(JSON.stringify({ type: 'request', request_id: 1, request: { type: 'open_stream', stream_id: 1 } }));
    // well past the 1000 ms deadline, far short of the door's request_timeout_ms (60 s): on the old code
    // the session waited on the silent region for good
    const t0 = Date.now();
    while (answers.length < 2 && Date.now() - t0 < 15000) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(answers.map((a) => a.type), ['hello_ok', 'response_ok'], JSON.stringify(answers));
    assert.equal(answers[1].request_id, 1);
    assert.equal(silent.upgrades(), 1, 'the door did not try the silent region first');
    assert.deepEqual(region.got.slice(1).map((x) => x.type), ['hello', 'request']);
    assert.ok(await metric(door.url, 'edgelite_router_ws_connect_timeouts_total') >= 1);
    ws.terminate();

    // the silent region alone: the client gets a clear close, not a session that waits for good
    const silent2 = await silentRegion();
    cleanup.push(silent2.close);
    const { ws: ws2 } = await session([silent2.port], ', connect_timeout_ms: 1000');
    const closed = new Promise((r) => {
      ws2.once('close', (code, reason) => r({ code, reason: String(reason) }));
      setTimeout(() => r('still open'), 15000).unref();
    });
    const c = await closed;
    assert.equal(c.code, 1011, JSON.stringify(c));
    assert.match(c.reason, /no region/);
    assert.equal(silent2.upgrades(), 1);
  });

  test('a region whose /health answers and whose upgrade hangs is backed off for new sessions', async () => {
    const { hang, door } = await hangingFirstDoor();
    const m = (name, region) => metric(door.url, region ? `${name}{region="${region}"}` : name);
    const r0Up = async () => (await (await fetch(door.url + '/v1/router/regions')).json()).regions
      .find((x) => x.id === 'r0').up;
    const hello = () => helloType(door.url);
    // the first session pays router.connect_timeout_ms once, then its hello is answered by the node
    assert.equal(await hello(), 'hello_ok');
    assert.equal(hang.upgrades(), 1);
    assert.equal(await m('edgelite_router_ws_connect_timeouts_total'), 1);
    for (const t0 = Date.now(); !(await r0Up()) && Date.now() - t0 < 5000;) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await r0Up(), true, 'the probes did not mark r0 up again');
    // 5 new sessions at once, within r0's 1 s back-off: all in the node, r0 not tried; on the old code
    // each of them went to r0 first and waited for its connect_timeout_ms (6 upgrades, 6 timeouts)
    assert.deepEqual(await Promise.all([1, 2, 3, 4, 5].map(() => hello())), Array(5).fill('hello_ok'));
    assert.equal(hang.upgrades(), 1, 'new sessions tried r0 in its back-off');
    assert.equal(await m('edgelite_router_ws_connect_timeouts_total'), 1);
    assert.equal(await m('edgelite_router_region_ws_backoff_ms', 'r0'), 1000);
    assert.equal(await m('edgelite_router_region_ws_backoff_skipped_total', 'r0'), 5);
    assert.equal(await m('edgelite_router_region_ws_sessions_total', 'r1'), 6);
    // past the interval r0 is tried again; it fails again: the interval doubles
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(await hello(), 'hello_ok');
    assert.equal(hang.upgrades(), 2);
    assert.equal(await m('edgelite_router_region_ws_backoff_ms', 'r0'), 2000);
    // r0 answers upgrades now: past the 2 s the next session is r0's and its 101 clears the back-off
    hang.answer();
    await new Promise((r) => setTimeout(r, 2200));
    assert.equal(await hello(), 'hello_ok');
    assert.equal(hang.upgrades(), 3);
    assert.equal(await m('edgelite_router_region_ws_sessions_total', 'r0'), 1);
    assert.equal(await m('edgelite_router_region_ws_backoff_ms', 'r0'), 0);

    // a region in back-off that is the only one left is still tried (never refuse every session for it)
    const alone = await hangingUpgradeRegion();
    cleanup.push(alone.close);
    const door2 = await startRouter(doorConfig(dir, [alone.port], ', connect_timeout_ms: 300', 60000, 100));
    cleanup.push(() => door2.proc.kill('SIGKILL'));
    for (const n of [1, 2]) {
      const ws = await openWs(door2.url);
      cleanup.push(() => ws.terminate());
      const closed = new Promise((r) => {
        ws.once('close', (code, reason) => r({ code, reason: String(reason) }));
        setTimeout(() => r('still open'), 15000).unref();
      });
      ws.send(JSON.stringify({ type: 'hello', jwt: null }));
      const cl = await closed;
      assert.equal(cl.code, 1011, JSON.stringify(cl));
      assert.match(cl.reason, /no region/);
      assert.equal(alone.upgrades(), n);
    }
    assert.equal(await metric(door2.url, 'edgelite_router_region_ws_backoff_skipped_total{region="r0"}'), 0);
  });

  test('a back-off starts from 1 s again after 30 s without a failure', async () => {
    const { hang, door } = await hangingFirstDoor();
    const backoffMs = () => metric(door.url, 'edgelite_router_region_ws_backoff_ms{region="r0"}');
    const hello = () => helloType(door.url);
    assert.equal(await hello(), 'hello_ok');
    assert.equal(await backoffMs(), 1000);
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(await hello(), 'hello_ok');
    assert.equal(hang.upgrades(), 2);
    assert.equal(await backoffMs(), 2000, 'a failure right after the interval doubles it');
    // the 2 s run out, then 30 s more with no session trying r0: the next failure is a new series
    await new Promise((r) => setTimeout(r, 2000 + 30500));
    assert.equal(await hello(), 'hello_ok');
    assert.equal(hang.upgrades(), 3);
    assert.equal(await backoffMs(), 1000, 'the old series went on (4000 on the old code)');
  });

  test('a move to a region that never answers the upgrade ends within router.request_timeout_ms', async () => {
    const silent = await silentRegion();
    cleanup.push(silent.close);
    // the session's region answers the hello, then drops the connection at the first request
    const region = await scriptedRegion({ onRequest: (ws) => ws.terminate() });
    cleanup.push(region.close);
    // each step's own deadline (connect_timeout_ms) is far past the test: only the move's deadline
    // (request_timeout_ms, 1 s) can end the wait for the silent region; no probes (the scripted
    // region answers /health 426), so r0, the client's region, takes the session
    const { door, ws, answers } = await session([region.port, silent.port],
      ', connect_timeout_ms: 600000, first_probe_delay_ms: 600000', ['--client-region', 'r0'], 1000);
    const t0 = Date.now();
    while (answers.length < 1 && Date.now() - t0 < 15000) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(answers.map((a) => a.type), ['hello_ok']);
    const t1 = Date.now();
    const closed = new Promise((r) => {
      ws.once('close', (code, reason) => r({ code, reason: String(reason), ms: Date.now() - t1 }));
      setTimeout(() => r('still open'), 15000).unref();
    });
    ws.send(JSON.stringify({ type: 'request', request_id: 1, request: { type: 'open_stream', stream_id: 1 } }));
    // on the old code the move waited on the silent region for its 600 s connect_timeout_ms
    const c = await closed;
    assert.equal(c.code, 1011, JSON.stringify(c));
    assert.match(c.reason, /request_timeout_ms/);
    assert.equal(silent.upgrades(), 1, 'the move did not try the silent region');
    assert.equal(await metric(door.url, 'edgelite_router_ws_connect_timeouts_total'), 1);
    // cut short by the move's deadline, not by its own: the silent region is not marked down for it
    const regions = (await (await fetch(door.url + '/v1/router/regions')).json()).regions;
    assert.equal(regions.find((x) => x.id === 'r1').up, true, JSON.stringify(regions));
  });

  test('messages in the same packet as the upgrade request are answered', async () => {
    const region = await scriptedRegion();
    cleanup.push(region.close);
    const door = await startRouter(doorConfig(dir, [region.port]));
    cleanup.push(() => door.proc.kill('SIGKILL'));
    const port = Number(new URL(door.url).port);
    const raw = await rawUpgrade(port, cleanup, [{ type: 'hello', jwt: null },
      { type: 'request', request_id: 1, request: { type: 'open_stream', stream_id: 1 } }]);
    const t0 = Date.now();
    while (!raw.got.includes('"request_id":1') && !raw.got.includes(Buffer.from([0x88])) && Date.now() - t0 < 10000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const text = raw.got.toString('latin1');
    assert.match(text, /^HTTP\/1\.1 101/);
    assert.ok(text.includes('hello_ok'), text);
    assert.ok(text.includes('"response_ok"') && text.includes('"request_id":1'), text);
    assert.deepEqual(region.got.slice(1).map((x) => x.type), ['hello', 'request']);
  });

  test('a region\'s frame type and close code are checked; /v1/peer is not relayed', async () => {
    const region = await scriptedRegion({
      onRequest(ws, x) {
        if (x.request_id === 1) ws.send(Buffer.from([0xff, 0x00, 0x01]), { binary: true });
        else ws._socket.write(Buffer.from([0x88, 0x02, 0x03, 0xe7])); // close 999 (ws refuses to send it)
      },
    });
    cleanup.push(region.close);
    const door = await startRouter(doorConfig(dir, [region.port]));
    cleanup.push(() => door.proc.kill('SIGKILL'));
    const ws = await openWs(door.url);
    cleanup.push(() => ws.terminate());
    const msgs = [];
    ws.on('message', (m, binary) => msgs.push({ m, binary }));
    const closed = new Promise((r) => ws.once('close', (code) => r(code)));
    ws.send(JSON.stringify({ type: 'hello', jwt: null }));
    ws.send(JSON.stringify({ type: 'request', request_id: 1, request: { type: 'open_stream', stream_id: 1 } }));
    const t0 = Date.now();
    while (msgs.length < 2 && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
    assert.equal(msgs.length, 2);
    assert.equal(msgs[1].binary, true);
    assert.deepEqual([...msgs[1].m], [0xff, 0x00, 0x01]);
    // a request id in the door's own range (its replayed requests) is refused, not relayed
    const reserved = -(2 ** 40) - 3;
    ws.send(JSON.stringify({ type: 'request', request_id: reserved, request: { type: 'open_stream', stream_id: 9 } }));
    while (msgs.length < 3 && Date.now() - t0 < 10000) await new Promise((r) => setTimeout(r, 50));
    const answer = JSON.parse(String(msgs[2].m));
    assert.equal(answer.request_id, reserved);
    assert.equal(answer.error.code, 'REQUEST_ID_RESERVED');
    assert.ok(!region.got.some((x) => x.request_id === reserved));
    ws.send(JSON.stringify({ type: 'request', request_id: 2, request: { type: 'open_stream', stream_id: 2 } }));
    assert.equal(await closed, 1011); // the region's 999 is not a code to send on
    for (const p of ['/v1/peer', '/v1/realtime']) {
      const w = new WebSocket(door.url.replace('http', 'ws') + p, ['hrana3']);
      const status = await new Promise((r) => {
        w.once('unexpected-response', (req, res) => r(res.statusCode));
        w.once('open', () => r('open'));
        w.once('error', () => r('error'));
      });
      w.terminate();
      assert.equal(status, 404, p);
    }
    assert.equal(region.got.filter((x) => x.path !== undefined).length, 1); // the session only
  });
  test('router.first_probe_delay_ms holds the probes, not the check of sessions on a down region', async () => {
    // r0 answers the upgrade and the hello, then nothing; a plain HTTP request to it is reset (so the
    // door marks it down from a request, with no probe yet)
    const srv = http.createServer((req) => req.socket.destroy());
    const wss = new WebSocketServer({ noServer: true, handleProtocols: (ps) => [...ps][0] });
    const hung = [];
    srv.on('upgrade', (req, sock, head) => wss.handleUpgrade(req, sock, head, (ws) => {
      ws.on('message', (m) => {
        const x = JSON.parse(String(m));
        if (x.type === 'hello') ws.send(JSON.stringify({ type: 'hello_ok' }));
        else hung.push(x);
      });
    }));
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    cleanup.push(() => { for (const c of wss.clients) c.terminate(); srv.close(); });
    const region = await scriptedRegion();
    cleanup.push(region.close);
    const file = path.join(dir, 'door-first-probe.yaml');
    fs.writeFileSync(file, `cluster: { name: x, secret: "0123456789abcdef0123" }\nregions:\n` +
      [srv.address().port, region.port].map((p, i) => `  - { id: r${i}, url: "http://127.0.0.1:${p}", ` +
        `priority: ${i + 1} }`).join('\n') +
      '\nrouter: { probe_interval_ms: 100, first_probe_delay_ms: 600000, request_timeout_ms: 1000, ' +
      'rtt_slack_ms: 0 }\n');
    const door = await startRouter(file, ['--client-region', 'r0']);
    cleanup.push(() => door.proc.kill('SIGKILL'));
    const ws = await openWs(door.url);
    cleanup.push(() => ws.terminate());
    const answers = [];
    ws.on('message', (m) => answers.push(JSON.parse(String(m))));
    ws.send(JSON.stringify({ type: 'hello', jwt: null }));
    ws.send(JSON.stringify({ type: 'request', request_id: 1, request: { type: 'open_stream', stream_id: 1 } }));
    for (const t0 = Date.now(); hung.length < 1 && Date.now() - t0 < 10000;) await new Promise((r) => setTimeout(r, 20));
    assert.equal(hung.length, 1, 'the session\'s request did not reach r0');
    // a read over HTTP: r0 resets it, the door marks r0 down and answers from r1
    await fetch(door.url + '/v2/pipeline', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ baton: null, requests: [{ type: 'execute', stmt: { sql: 'SELECT 1' } }] }) });
    const regions = (await (await fetch(door.url + '/v1/router/regions')).json()).regions;
    assert.equal(regions.find((x) => x.id === 'r0').up, false, JSON.stringify(regions));
    // r0 is down and the session's request has waited past request_timeout_ms (1 s): the next tick
    // (every 100 ms) moves it to r1, which answers; on the old code the tick waited for the first
    // probes (600 s) and the request stayed unanswered
    for (const t0 = Date.now(); answers.length < 2 && Date.now() - t0 < 10000;) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(answers.map((a) => a.type), ['hello_ok', 'response_ok'], JSON.stringify(answers));
    assert.equal(answers[1].request_id, 1);
    assert.equal(await metric(door.url, 'edgelite_router_ws_failovers_total'), 1);
    assert.deepEqual(region.got.slice(1).map((x) => x.type), ['hello', 'request']);
  });
  test('SIGTERM of the door: new connections are refused during the grace, open sessions keep it', async () => {
    const region = await scriptedRegion();
    cleanup.push(region.close);
    const door = await startRouter(doorConfig(dir, [region.port]));
    cleanup.push(() => door.proc.kill('SIGKILL'));
    const port = Number(new URL(door.url).port);
    // a raw client that does not answer the door's close frame at once: the door waits for it (up to 1 s)
    const raw = await rawUpgrade(port, cleanup, [{ type: 'hello', jwt: null }]);
    for (const t0 = Date.now(); !raw.got.includes('hello_ok') && Date.now() - t0 < 10000;) await new Promise((r) => setTimeout(r, 20));
    assert.ok(raw.got.includes('hello_ok'), raw.got.toString('latin1'));
    const exited = new Promise((r) => door.proc.once('exit', (code) => r(code)));
    const mark = raw.got.length;
    door.proc.kill('SIGTERM');
    // the session's close frame 1001 (opcode 8, code 0x03e9): the grace has begun
    const closeFrame = Buffer.from([0x88]);
    for (const t0 = Date.now(); raw.got.indexOf(closeFrame, mark) < 0 && Date.now() - t0 < 10000;) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const at = raw.got.indexOf(closeFrame, mark);
    assert.ok(at >= 0, 'no close frame');
    assert.deepEqual([...raw.got.subarray(at + 2, at + 4)], [0x03, 0xe9]);
    // a new connection now: refused at once (the client goes to another door); on the old code it was
    // accepted and its /health answered 200 (a balancer kept sending clients to the stopping door)
    const seen = await new Promise((r) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('error', (e) => r(e.code));
      c.once('connect', () => {
        c.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
        let a = '';
        c.on('data', (d) => { a += d; });
        setTimeout(() => { c.destroy(); r(`accepted: ${a.split('\r\n')[0]}`); }, 300);
      });
    });
    assert.equal(door.proc.exitCode, null, 'the door exited before the check: no grace to look at');
    assert.equal(seen, 'ECONNREFUSED');
    // the open session still has its grace: its close answered, the door exits 0 at once
    raw.sock.write(Buffer.from([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe9 ^ 2]));
    assert.equal(await exited, 0);
  });

  test('SIGTERM of the door: sessions up and sessions still connecting upstream get a close frame 1001', async () => {
    const region = await scriptedRegion();
    cleanup.push(region.close);
    const silent = await silentRegion();
    cleanup.push(silent.close);
    // a session up in its region (hello answered), and one whose region never answers the upgrade
    for (const [name, port] of [['up', region.port], ['connecting', silent.port]]) {
      const { door, ws, answers } = await session([port], ', connect_timeout_ms: 600000');
      for (const t0 = Date.now(); Date.now() - t0 < 10000;) {
        if (name === 'up' ? answers.length >= 1 : silent.upgrades() >= 1) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.deepEqual(answers.map((a) => a.type), name === 'up' ? ['hello_ok'] : [], name);
      const closed = new Promise((r) => {
        ws.once('close', (code, reason) => r({ code, reason: String(reason) }));
        setTimeout(() => r('still open'), 10000).unref();
      });
      const exited = new Promise((r) => door.proc.once('exit', (code) => r(code)));
      door.proc.kill('SIGTERM');
      // on the old code both got 1006 (the connection closed with no close frame)
      const c = await closed;
      assert.equal(c.code, 1001, `${name}: ${JSON.stringify(c)}`);
      assert.match(c.reason, /stopping/, name);
      assert.equal(await exited, 0, `${name}: the door did not exit cleanly`);
    }
  });
});
