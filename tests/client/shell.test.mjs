// SPDX-License-Identifier: MIT
// `edgelite shell` and `edgelite status`, driven through pipes (node built-ins only).
// Two groups: against a scripted mock node (protocol corners a real node cannot be
// made to produce on demand: expired streams, chunked bodies, unreachable peers),
// and against a real `edgelite serve` on loopback port 0.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const EDGE_BIN = process.env.EDGE_BIN || resolve(here, '../../build/edgelite');

// Run the binary with stdin from `input`; resolves {code, stdout, stderr}. Async so a
// mock server in this process keeps answering while the child runs.
function run(args, { input = '', env = {} } = {}) {
  return new Promise((ok, fail) => {
    const clean = { ...process.env };
    for (const k of ['EDGE_URL', 'TURSO_URL', 'EDGE_AUTH_TOKEN', 'TURSO_AUTH_TOKEN']) delete clean[k];
    const child = spawn(EDGE_BIN, args, { env: { ...clean, HOME: tmpdir(), ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', fail);
    child.on('close', (code) => ok({ code, stdout, stderr }));
    // A command that never reads stdin may exit before we finish writing: not an error.
    child.stdin.on('error', (e) => { if (e.code !== 'EPIPE') fail(e); });
    child.stdin.end(input);
  });
}

const shell = (url, input, env) => run(url ? ['shell', url] : ['shell'], { input, env });

// ---------------------------------------------------------------------------------
// A scripted node: canned Hrana answers keyed by the SQL text, plus /v1/status.
function startMock(status) {
  const state = { requests: [], expireNext: false, nextBaton: 1, live: new Set(), statusHits: 0 };
  const value = {
    int: (v) => ({ type: 'integer', value: String(v) }),
    text: (v) => ({ type: 'text', value: v }),
  };
  function execute(sql) {
    if (/^\s*SELECT mix/i.test(sql)) {
      return {
        cols: ['i', 'f', 't', 'n', 'b', 'big'].map((name) => ({ name, decltype: null })),
        rows: [[value.int(42), { type: 'float', value: 1.5 }, value.text('héllo'), { type: 'null' },
          { type: 'blob', base64: Buffer.from([1, 2, 255]).toString('base64') },
          { type: 'blob', base64: Buffer.alloc(40, 0xab).toString('base64') }]],
        affected_row_count: 0,
      };
    }
    if (/^\s*SELECT one/i.test(sql)) {
      return { cols: [{ name: 'x' }], rows: [[value.int(1)]], affected_row_count: 0 };
    }
    if (/FAIL/.test(sql)) return { error: { message: 'no such table: nope', code: 'SQLITE_ERROR' } };
    return { cols: [], rows: [], affected_row_count: 0 };
  }
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/v1/status') {
        state.statusHits++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(typeof status === 'function' ? status() : status));
        return;
      }
      if (req.method !== 'POST' || req.url !== '/v2/pipeline') {
        res.writeHead(404).end();
        return;
      }
      const msg = JSON.parse(body);
      state.requests.push({ msg, auth: req.headers.authorization });
      if (msg.baton != null) {
        if (state.expireNext || !state.live.has(msg.baton)) {
          state.expireNext = false;
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ message: 'The stream has expired due to inactivity', code: 'STREAM_EXPIRED' }));
          return;
        }
        state.live.delete(msg.baton);
      }
      let closed = false;
      const results = msg.requests.map((r) => {
        if (r.type === 'close') { closed = true; return { type: 'ok', response: { type: 'close' } }; }
        const out = execute(r.stmt.sql);
        if (out.error) return { type: 'error', error: out.error };
        return { type: 'ok', response: { type: 'execute', result: out } };
      });
      const baton = closed ? null : `b${state.nextBaton++}`;
      if (baton) state.live.add(baton);
      // Two writes and no length: node sends the body chunked.
      const text = JSON.stringify({ baton, base_url: null, results });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(text.slice(0, 10));
      res.end(text.slice(10));
    });
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => {
    ok({ server, state, url: `http://127.0.0.1:${server.address().port}` });
  }));
}

describe('shell and status against a scripted node', () => {
  let mock;
  let deadPort;
  before(async () => {
    // A port that refuses connections: bind, note it, close.
    const tmp = createServer();
    await new Promise((ok) => tmp.listen(0, '127.0.0.1', ok));
    deadPort = tmp.address().port;
    await new Promise((ok) => tmp.close(ok));
    mock = await startMock(() => ({
      region: 'eu-west', role: 'primary', primary: 'eu-west', version: '0.1.0', uptime_s: 3725,
      db_size_bytes: 8192, version_vector: { 'eu-west': 12, 'us-east': 7 },
      peers: [
        { region: 'us-east', url: mock.url, connected: true, rtt_ms: 71, lag_ms: 120, pending: 3, acked: 9 },
        { region: 'ap-south', url: `http://127.0.0.1:${deadPort}`, connected: false },
      ],
    }));
  });
  after(() => mock.server.close());

  test('values render: integer, float, text, NULL, blob, truncated blob', async () => {
    const r = await shell(mock.url, 'SELECT mix;\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\|\s+42 \|/);
    assert.match(r.stdout, /\| 1\.5 \|/);
    assert.match(r.stdout, /héllo/);
    assert.match(r.stdout, /\| NULL /);
    assert.match(r.stdout, /x'0102ff'/);
    assert.match(r.stdout, new RegExp(`x'${'ab'.repeat(32)}'\\.\\.\\.`));
    assert.match(r.stdout, /\(1 row\)/);
  });

  test('one stream per session: batons are echoed, close is sent at exit', async () => {
    mock.state.requests.length = 0;
    const r = await shell(mock.url, 'SELECT one;\nSELECT one; SELECT one;\n');
    assert.equal(r.code, 0, r.stderr);
    const reqs = mock.state.requests.map((x) => x.msg);
    assert.equal(reqs.length, 4);
    assert.equal(reqs[0].baton, null);
    // Each request carries the baton of the previous response.
    for (let i = 1; i < 4; i++) assert.match(reqs[i].baton, /^b\d+$/);
    assert.notEqual(reqs[1].baton, reqs[2].baton);
    assert.notEqual(reqs[2].baton, reqs[3].baton);
    assert.equal(reqs[0].requests[0].stmt.sql, 'SELECT one;');
    assert.equal(reqs[0].requests[0].stmt.want_rows, true);
    assert.deepEqual(reqs[3].requests, [{ type: 'close' }]);
  });

  test('expiry mid-session: retried when idle, reported when a transaction was open', async () => {
    mock.state.requests.length = 0;
    mock.state.expireNext = false;
    // Make every baton unknown right after it is issued.
    const origAdd = mock.state.live.add.bind(mock.state.live);
    mock.state.live.add = () => mock.state.live;
    try {
      const r = await shell(mock.url, 'SELECT one;\nSELECT one;\n');
      assert.equal(r.code, 0, r.stderr);
      assert.equal((r.stdout.match(/\(1 row\)/g) || []).length, 2);
      const tx = await shell(mock.url, 'BEGIN;\nINSERT INTO t VALUES(1);\n');
      assert.equal(tx.code, 1);
      assert.match(tx.stderr, /transaction was rolled back/);
    } finally {
      mock.state.live.add = origAdd;
    }
  });

  test('SQL errors go to stderr with their code and make the exit status 1', async () => {
    const r = await shell(mock.url, 'SELECT FAIL;\nSELECT one;\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Error: SQLITE_ERROR: no such table: nope$/m);
    assert.match(r.stdout, /\(1 row\)/);
  });

  test('token from --auth-token, EDGE_AUTH_TOKEN and TURSO_AUTH_TOKEN', async () => {
    mock.state.requests.length = 0;
    await run(['shell', mock.url, '--auth-token', 'tok1'], { input: 'SELECT one;\n' });
    await shell(mock.url, 'SELECT one;\n', { EDGE_AUTH_TOKEN: 'tok2' });
    await shell(mock.url, 'SELECT one;\n', { TURSO_AUTH_TOKEN: 'tok3' });
    await shell(mock.url, 'SELECT one;\n');
    const auths = mock.state.requests.filter((x) => x.msg.requests[0].type === 'execute').map((x) => x.auth);
    assert.deepEqual(auths, ['Bearer tok1', 'Bearer tok2', 'Bearer tok3', undefined]);
  });

  test('output modes csv, json and line', async () => {
    const r = await shell(mock.url, '.mode csv\nSELECT one;\n.mode json\nSELECT one;\n.mode line\nSELECT one;\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^x\n1\n/);
    assert.match(r.stdout, /\[\{"x":1\}\]/);
    assert.match(r.stdout, /^x = 1$/m);
  });

  test('.timing prints the run time; unknown dot command fails', async () => {
    const r = await shell(mock.url, '.timing on\nSELECT one;\n.bogus\n');
    assert.match(r.stdout, /^Run Time: \d+\.\d{3} ms$/m);
    assert.match(r.stderr, /unknown command: \.bogus/);
    assert.equal(r.code, 1);
  });

  test('unreachable node: shell fails, status exits 1', async () => {
    const r = await shell(`http://127.0.0.1:${deadPort}`, 'SELECT 1;\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot reach/);
    const s = await run(['status', `http://127.0.0.1:${deadPort}`]);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /unreachable/);
  });

  test('status: header, one row per region, unreachable peer', async () => {
    const r = await run(['status', mock.url]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^node eu-west at http:\/\/127\.0\.0\.1:\d+, role primary, primary eu-west, version 0\.1\.0, up 1h02m05s, db 8192 bytes$/);
    assert.match(r.stdout, /^version vector: eu-west=12, us-east=7$/m);
    assert.match(r.stdout, /^REGION\s+ROLE\s+CONNECTED\s+RTT\s+LAG\s+PENDING\s+ACKED$/m);
    assert.match(r.stdout, /^eu-west\s+primary\s+self\s+-\s+-\s+-\s+-$/m);
    // us-east points back at the mock, so its own role is "primary".
    assert.match(r.stdout, /^us-east\s+primary\s+yes\s+71 ms\s+120 ms\s+3\s+9$/m);
    assert.match(r.stdout, /^ap-south\s+unreachable\s+no\s+-\s+-\s+-\s+-$/m);
  });

  test('status --json combines the node and its peers', async () => {
    const r = await run(['status', '--json'], { env: { TURSO_URL: mock.url } });
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.url, mock.url);
    assert.equal(doc.status.region, 'eu-west');
    assert.equal(doc.peers.length, 2);
    assert.equal(doc.peers[0].status.region, 'eu-west');
    assert.equal(doc.peers[1].error, 'unreachable');
  });

  test('.status pretty-prints the node status', async () => {
    const r = await shell(mock.url, '.status\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^ {2}"region": "eu-west",$/m);
  });
});

// ---------------------------------------------------------------------------------
// A real node.
function startNode() {
  const dir = mkdtempSync(join(tmpdir(), 'edgelite-shell-'));
  const child = spawn(EDGE_BIN, ['serve', '--listen', '127.0.0.1:0', '--data', dir],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((ok, fail) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`node did not start within 20 s: ${out}${err}`));
    }, 20000);
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      const m = /edgelite: listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok({ child, dir, url: m[1] });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`node exited with ${code}: ${out}${err}`));
    });
  });
}

describe('shell and status against a real node', { skip: !existsSync(EDGE_BIN) && `no binary at ${EDGE_BIN}` }, () => {
  let node;
  before(async () => { node = await startNode(); });
  after(() => {
    if (!node) return;
    node.child.removeAllListeners('exit');
    node.child.kill('SIGTERM');
    rmSync(node.dir, { recursive: true, force: true });
  });

  test('create, insert, select through a piped session', async () => {
    const r = await shell(node.url, [
      'CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, score REAL);',
      "INSERT INTO users VALUES (1, 'alice', 9.5), (2, 'bob', NULL);",
      'SELECT id, name, score FROM users ORDER BY id;',
    ].join('\n') + '\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /\| id \| name  \| score \|/);
    assert.match(r.stdout, /\|  1 \| alice \|   9\.5 \|/);
    assert.match(r.stdout, /\|  2 \| bob   \| NULL  \|/);
    assert.match(r.stdout, /\(2 rows\)/);
  });

  test('.tables and .schema', async () => {
    const r = await shell(node.url, 'CREATE TABLE pets(name TEXT);\nCREATE INDEX pets_name ON pets(name);\n.tables\n.schema pets\n');
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    assert.ok(lines.includes('pets'), r.stdout);
    assert.ok(lines.includes('users'), r.stdout);
    assert.ok(!lines.some((l) => /^(sqlite_|_edge_)/.test(l)), r.stdout);
    assert.match(r.stdout, /^CREATE TABLE pets\(name TEXT\);$/m);
    assert.match(r.stdout, /^CREATE INDEX pets_name ON pets\(name\);$/m);
    assert.doesNotMatch(r.stdout, /CREATE TABLE users/);
  });

  test('a statement spread over several lines, with quotes and comments', async () => {
    const r = await shell(node.url, [
      "SELECT 'a;b' AS s, -- a comment; still the same statement",
      '  /* a block; comment */ 2',
      '  AS n',
      ';',
    ].join('\n') + '\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\| a;b \| 2 \|/);
    assert.match(r.stdout, /\(1 row\)/);
  });

  test('an error is reported on stderr and the exit status is 1', async () => {
    const r = await shell(node.url, 'SELECT * FROM no_such_table;\nSELECT 1 AS ok;\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Error: SQLITE_ERROR: no such table: no_such_table$/m);
    assert.match(r.stdout, /\| ok \|/); // the session carries on after an error
  });

  test('BEGIN / INSERT / ROLLBACK across lines leaves no row', async () => {
    const r = await shell(node.url, [
      'CREATE TABLE tx(v INTEGER);',
      'BEGIN;',
      'INSERT INTO tx VALUES (7);',
      'SELECT count(*) AS inside FROM tx;',
      'ROLLBACK;',
      'SELECT count(*) AS after FROM tx;',
    ].join('\n') + '\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\| inside \|\n\+-+\+\n\| {6}1 \|/);
    assert.match(r.stdout, /\| after \|\n\+-+\+\n\| {5}0 \|/);
  });

  test('EDGE_URL and TURSO_URL (libsql://) select the node', async () => {
    const a = await shell(null, 'SELECT 41 + 1 AS answer;\n', { EDGE_URL: node.url });
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /\| {5}42 \|/);
    const libsql = node.url.replace(/^http:/, 'libsql:');
    const b = await shell(null, 'SELECT 43 AS answer;\n', { TURSO_URL: libsql });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /\| {5}43 \|/);
  });

  test('status prints the node region', async () => {
    const st = await (await fetch(`${node.url}/v1/status`)).json();
    assert.equal(typeof st.region, 'string');
    const r = await run(['status', node.url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^node ${st.region} at `, 'm'));
    assert.match(r.stdout, new RegExp(`^${st.region}\\s+\\S+\\s+self`, 'm'));
  });
});
