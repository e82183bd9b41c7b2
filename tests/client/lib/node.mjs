// SPDX-License-Identifier: MIT
// Starting and stopping real edgelite nodes for the client tests, plus raw HTTP helpers.
//
// Every node gets a fresh data directory under os.tmpdir() and an ephemeral port (port 0): the node
// prints "edgelite: listening on http://127.0.0.1:PORT" once it accepts connections, and that line is
// the only readiness signal we trust. Nodes that a test forgets to stop are killed when node exits, so
// a failing suite never leaves processes behind.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
// tests/client/lib -> repository root
const repoRoot = path.resolve(here, '..', '..', '..');

/** Path of the edgelite binary: $EDGE_BIN, else ../../build/edgelite relative to tests/client. */
export const EDGE_BIN = process.env.EDGE_BIN
  ? path.resolve(process.env.EDGE_BIN)
  : path.resolve(repoRoot, 'build', 'edgelite');

const READY_RE = /edgelite: listening on (https?:\/\/([^\s:]+):(\d+))/;
const live = new Set();

process.on('exit', () => {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

/** A fresh, empty temporary directory. */
export function tmpDir(prefix = 'edgelite-test-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait until proc exits (timeoutMs at most): { code, signal, timedOut }. */
export function waitExit(proc, timeoutMs) {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode, timedOut: false });
  }
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve({ code: null, signal: null, timedOut: true }), timeoutMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, timedOut: false });
    });
  });
}

function spawnNode(dataDir, args, env, readyTimeoutMs) {
  const argv = ['serve', '--listen', '127.0.0.1:0', '--data', dataDir, ...args];
  const proc = spawn(EDGE_BIN, argv, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);
  const out = { stdout: '', stderr: '' };
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  // Keep only the tail: a node under load logs a lot and we only need the last words for diagnostics.
  const cap = (s) => (s.length > 256 * 1024 ? s.slice(-128 * 1024) : s);
  proc.stderr.on('data', (d) => { out.stderr = cap(out.stderr + d); });
  proc.on('exit', () => live.delete(proc));

  const ready = new Promise((resolve, reject) => {
    let done = false;
    const finish = (err, val) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) reject(err); else resolve(val);
    };
    const describe = (why) => new Error(
      `edgelite node did not become ready (${why})\n  cmd: ${EDGE_BIN} ${argv.join(' ')}\n` +
      `  stdout: ${out.stdout.slice(-2000)}\n  stderr: ${out.stderr.slice(-4000)}`);
    const timer = setTimeout(() => {
      try { proc.kill('SIGKILL'); } catch { /* gone */ }
      finish(describe(`no "listening" line within ${readyTimeoutMs} ms`));
    }, readyTimeoutMs);
    proc.stdout.on('data', (d) => {
      out.stdout = cap(out.stdout + d);
      const m = READY_RE.exec(out.stdout);
      if (m) finish(null, { url: m[1], host: m[2], port: Number(m[3]) });
    });
    proc.once('error', (e) => finish(describe(`spawn failed: ${e.message}`)));
    proc.once('exit', (code, signal) => {
      // Let the stderr pipe drain so the message shows why it died.
      setTimeout(() => finish(describe(`exited with code ${code} signal ${signal}`)), 50);
    });
  });
  return { proc, out, ready };
}

/**
 * Start `EDGE_BIN serve --listen 127.0.0.1:0 --data <dir> ...args`.
 * opts: { args: [], env: {}, dataDir (default: fresh tmp dir), readyTimeoutMs (default 10000) }.
 * Returns { url, wsUrl, port, dataDir, proc, stderr(), stop(), kill(sig), restart(), destroy() }.
 */
export async function startNode(opts = {}) {
  const args = opts.args ?? [];
  const env = opts.env ?? {};
  const readyTimeoutMs = opts.readyTimeoutMs ?? 10000;
  const ownsDir = !opts.dataDir;
  const dataDir = opts.dataDir ?? tmpDir('edgelite-data-');

  const node = {
    dataDir,
    args,
    proc: null,
    url: null,
    wsUrl: null,
    port: 0,
    _out: null,

    stderr() { return node._out ? node._out.stderr : ''; },
    stdout() { return node._out ? node._out.stdout : ''; },

    async _launch() {
      const { proc, out, ready } = spawnNode(dataDir, args, env, readyTimeoutMs);
      node.proc = proc;
      node._out = out;
      const r = await ready;
      node.url = r.url;
      node.port = r.port;
      node.wsUrl = r.url.replace(/^http/, 'ws'); // https -> wss
      return node;
    },

    /** SIGTERM, wait up to timeoutMs for a graceful exit, SIGKILL otherwise. Returns {code, signal, timedOut}. */
    async stop(timeoutMs = 10000) {
      const p = node.proc;
      if (!p) return { code: null, signal: null, timedOut: false };
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
      const r = await waitExit(p, timeoutMs);
      if (r.timedOut) {
        p.kill('SIGKILL');
        await waitExit(p, 5000);
      }
      return r;
    },

    /** Send a signal and wait (up to timeoutMs) for the process to exit. Returns {code, signal, timedOut}. */
    async kill(signal = 'SIGKILL', timeoutMs = 10000) {
      const p = node.proc;
      if (p.exitCode === null && p.signalCode === null) p.kill(signal);
      const r = await waitExit(p, timeoutMs);
      if (r.timedOut) {
        p.kill('SIGKILL');
        await waitExit(p, 5000);
      }
      return r;
    },

    /** Start again on the same data directory (stops the current process first if it still runs). */
    async restart() {
      await node.stop();
      return node._launch();
    },

    /** Stop and remove the data directory (only if startNode created it). */
    async destroy() {
      await node.stop();
      if (ownsDir) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  try {
    await node._launch();
  } catch (e) {
    if (ownsDir) fs.rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  return node;
}

/** Run the edgelite binary to completion (for sub-commands such as `token`). */
export function runEdge(args, { timeoutMs = 15000, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(EDGE_BIN, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(proc);
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d) => { stdout += d; });
    proc.stderr.on('data', (d) => { stderr += d; });
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('error', (e) => { clearTimeout(t); live.delete(proc); reject(e); });
    proc.once('close', (code, signal) => {
      clearTimeout(t);
      live.delete(proc);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function parseHttpResponse(buf) {
  const sep = buf.indexOf('\r\n\r\n');
  if (sep < 0) return null;
  const head = buf.subarray(0, sep).toString('latin1');
  const lines = head.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) return { status: 0, headers: {}, body: Buffer.alloc(0), complete: true, bad: true };
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = buf.subarray(sep + 4);
  const status = Number(m[1]);
  if (status === 101 || status === 204 || status === 304) {
    return { status, headers, body: Buffer.alloc(0), complete: true };
  }
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    return { status, headers, body: rest.subarray(0, n), complete: rest.length >= n };
  }
  if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    const parts = [];
    for (let guard = 0; guard < 100000; guard++) {
      const e = rest.indexOf('\r\n');
      if (e < 0) return { status, headers, body: Buffer.concat(parts), complete: false };
      const size = parseInt(rest.subarray(0, e).toString('latin1'), 16);
      if (Number.isNaN(size)) return { status, headers, body: Buffer.concat(parts), complete: true, bad: true };
      if (size === 0) return { status, headers, body: Buffer.concat(parts), complete: true };
      if (rest.length < e + 2 + size + 2) return { status, headers, body: Buffer.concat(parts), complete: false };
      parts.push(rest.subarray(e + 2, e + 2 + size));
      rest = rest.subarray(e + 2 + size + 2);
    }
  }
  // No framing: the body runs until the server closes.
  return { status, headers, body: rest, complete: false };
}

/**
 * Send raw bytes to 127.0.0.1:port and collect the response until it is complete, the server closes,
 * or timeoutMs passes. Never rejects: write errors (server closed early) are reported in `error`.
 * Returns { status (0 = none), headers, body: Buffer, text, json (or undefined), raw, closed, timedOut, error }.
 */
export function rawHttp(port, request, { timeoutMs = 5000, host = '127.0.0.1', endAfterWrite = false } = {}) {
  const bytes = Buffer.isBuffer(request) ? request : Buffer.from(request, 'latin1');
  return new Promise((resolve) => {
    const chunks = [];
    let error = null;
    let settled = false;
    const sock = net.connect({ port, host });
    const finish = (closed, timedOut) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const raw = Buffer.concat(chunks);
      const p = parseHttpResponse(raw) || { status: 0, headers: {}, body: Buffer.alloc(0) };
      const text = p.body.toString('utf8');
      let json;
      try { json = JSON.parse(text); } catch { json = undefined; }
      sock.destroy();
      resolve({ status: p.status, headers: p.headers, body: p.body, text, json, raw, closed, timedOut, error });
    };
    const timer = setTimeout(() => finish(false, true), timeoutMs);
    sock.on('data', (d) => {
      chunks.push(d);
      const p = parseHttpResponse(Buffer.concat(chunks));
      if (p && p.complete) finish(false, false);
    });
    sock.on('error', (e) => { error = e; });
    sock.on('close', () => finish(true, false));
    sock.on('connect', async () => {
      // Large requests go out in chunks, and stop as soon as the server answers: a server that refuses
      // an oversized body early closes the connection, and a reset would discard its answer on our side.
      const step = 64 * 1024;
      for (let off = 0; off < bytes.length && !settled && !error && chunks.length === 0; off += step) {
        const part = bytes.subarray(off, Math.min(off + step, bytes.length));
        await new Promise((res) => sock.write(part, (e) => { if (e) error = e; res(); }));
      }
      if (!error && !settled && endAfterWrite) sock.end();
    });
  });
}

/** Build a raw HTTP/1.1 request (Buffer) with Content-Length set from the body unless given. */
export function httpRequest(method, target, { headers = {}, body = '' } = {}) {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const h = { Host: '127.0.0.1', Connection: 'close', ...headers };
  if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-length') && (b.length > 0 || method === 'POST')) {
    h['Content-Length'] = String(b.length);
  }
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(h)) head += `${k}: ${v}\r\n`;
  return Buffer.concat([Buffer.from(head + '\r\n', 'latin1'), b]);
}

/**
 * POST a Hrana pipeline with fetch. `url` is the full endpoint (e.g. `${node.url}/v2/pipeline`);
 * an object body is JSON-encoded, a string or Buffer is sent as is.
 * Returns { status, headers, text, json (or undefined) }.
 */
export async function pipeline(url, body, headers = {}) {
  const payload = typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: payload,
    signal: AbortSignal.timeout(30000),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

/** GET a path on a node with fetch. Returns { status, headers, text }. */
export async function get(node, p, headers = {}) {
  const res = await fetch(node.url + p, { headers, signal: AbortSignal.timeout(10000) });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** True when GET /health answers 200 (the node is alive and serving). */
export async function healthy(node) {
  try {
    const r = await get(node, '/health');
    return r.status === 200;
  } catch {
    return false;
  }
}

// Hrana value constructors for raw pipelines.
export const V = {
  null: () => ({ type: 'null' }),
  int: (n) => ({ type: 'integer', value: String(n) }),
  float: (x) => ({ type: 'float', value: x }),
  text: (s) => ({ type: 'text', value: s }),
  blob: (b) => ({ type: 'blob', base64: Buffer.from(b).toString('base64') }),
};

/** A Hrana Stmt for raw pipelines. */
export function stmt(sql, args = [], extra = {}) {
  return { sql, args, named_args: [], want_rows: true, ...extra };
}
