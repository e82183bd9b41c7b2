// SPDX-License-Identifier: MIT
// Helpers of the sessions tests (issue 11): a key file, JSON calls to /v1/sessions, a recording TCP proxy.

import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/** Write a sessions key file with the given ids (fresh random keys unless given); returns { file, keys }. */
export function writeKeyFile(dir, ids = [1], keys = {}) {
  const out = { ...keys };
  for (const id of ids) if (!out[id]) out[id] = crypto.randomBytes(32).toString('hex');
  const file = path.join(dir, `sessions-${crypto.randomBytes(4).toString('hex')}.keys`);
  fs.writeFileSync(file, ids.map((id) => `${id} ${out[id]}`).join('\n') + '\n', { mode: 0o600 });
  return { file, keys: out };
}

/** One HTTP call; never throws on HTTP errors. Returns { status, json, text, headers }. */
export async function call(base, method, p, body, headers = {}, timeoutMs = 15000) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(timeoutMs) };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(base + p, init);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text, headers: res.headers };
}

export const sess = {
  create: (base, body, h) => call(base, 'POST', '/v1/sessions', body, h),
  get: (base, id, h) => call(base, 'GET', `/v1/sessions/${id}`, undefined, h),
  put: (base, id, body, h) => call(base, 'PUT', `/v1/sessions/${id}`, body, h),
  patch: (base, id, body, h) => call(base, 'PATCH', `/v1/sessions/${id}`, body, h),
  del: (base, id, h) => call(base, 'DELETE', `/v1/sessions/${id}`, undefined, h),
  stats: async (base) => (await call(base, 'GET', '/v1/sessions/stats')).json,
};

/**
 * What a client sends on one connection, as readable bytes: HTTP as is, and after a WebSocket upgrade each
 * frame's payload unmasked (a client masks every frame, RFC 6455 5.3, which would hide plaintext from a grep).
 */
function clientStream() {
  let buf = Buffer.alloc(0);
  let ws = false;
  const out = [];
  return {
    out,
    push(d) {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!ws) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.subarray(0, end + 4);
          out.push(Buffer.from(head));
          buf = buf.subarray(end + 4);
          if (/^upgrade:\s*websocket/im.test(head.toString('latin1'))) { ws = true; continue; }
          // A plain request: its body (Content-Length) follows as is.
          const m = /^content-length:\s*(\d+)/im.exec(head.toString('latin1'));
          const n = m ? Number(m[1]) : 0;
          if (n > 0) {
            if (buf.length < n) { buf = Buffer.concat([head, buf]); out.pop(); return; }
            out.push(Buffer.from(buf.subarray(0, n)));
            buf = buf.subarray(n);
          }
          continue;
        }
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        const masked = (buf[1] & 0x80) !== 0;
        const need = off + (masked ? 4 : 0) + len;
        if (buf.length < need) return;
        const key = masked ? buf.subarray(off, off + 4) : null;
        const payload = Buffer.from(buf.subarray(off + (masked ? 4 : 0), need));
        if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
        out.push(payload);
        buf = buf.subarray(need);
      }
    },
  };
}

/** A TCP proxy on 127.0.0.1 to upstreamPort that keeps every byte it carries (both directions, unmasked). */
export async function recordingProxy(upstreamPort) {
  const chunks = [];
  const streams = [];
  const sockets = new Set();
  const server = net.createServer((client) => {
    const up = net.connect(upstreamPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(up);
    const cs = clientStream();
    streams.push(cs);
    client.on('data', (d) => { cs.push(d); up.write(d); });
    up.on('data', (d) => { chunks.push(Buffer.from(d)); client.write(d); });
    const end = () => { client.destroy(); up.destroy(); sockets.delete(client); sockets.delete(up); };
    client.on('error', end); up.on('error', end); client.on('close', end); up.on('close', end);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    bytes: () => Buffer.concat([...chunks, ...streams.flatMap((cs) => cs.out)]),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
