// SPDX-License-Identifier: MIT
// TCP proxies that stand in for a link between regions in the tests of what crosses it: one that
// passes bytes through a test's own handlers (tcpProxy: to rewrite an answer in transit), and one
// that records every byte the client sent and the plain HTTP requests among them (recordingProxy).

import net from 'node:net';

/**
 * A TCP proxy from 127.0.0.1 (a free port) to 127.0.0.1:upstreamPort. For each connection,
 * onConnection({ client, up }) may return { fromClient(d), fromUpstream(d) }: a handler given
 * forwards (or rewrites) the bytes itself, a missing one forwards them as they are. Either
 * socket's error or close ends both. Resolves { port, close() }; close() destroys every
 * connection and stops listening.
 */
export async function tcpProxy(upstreamPort, onConnection = () => ({})) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const up = net.connect(upstreamPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(up);
    const h = onConnection({ client, up });
    client.on('data', h.fromClient ?? ((d) => up.write(d)));
    up.on('data', h.fromUpstream ?? ((d) => client.write(d)));
    const end = () => { client.destroy(); up.destroy(); sockets.delete(client); sockets.delete(up); };
    client.on('error', end); up.on('error', end); client.on('close', end); up.on('close', end);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * A startCluster peerUrl by which region src reaches every other region through a proxy of its own,
 * make(upstreamPort) (e.g. recordingProxy), kept in into[regionId]; the other regions dial directly.
 */
export function peerUrlVia(src, into, make) {
  return async (from, r) => {
    if (from !== src) return undefined;
    into[r.id] = await make(r.port);
    return `http://127.0.0.1:${into[r.id].port}`;
  };
}

/** Close every proxy of into (after the cluster is gone). */
export async function closeAll(into) {
  for (const px of Object.values(into)) await px.close();
}

/**
 * A tcpProxy that keeps every byte the client sent (sent(): one Buffer), and parses the plain HTTP
 * requests among them into requests ({ method, target, headers (lower-case names), body }); a
 * connection upgraded to WebSocket is not parsed further.
 */
export async function recordingProxy(upstreamPort) {
  const raw = [];
  const requests = [];
  const px = await tcpProxy(upstreamPort, ({ up }) => {
    let buf = Buffer.alloc(0);
    let upgraded = false;
    return {
      fromClient(d) {
        raw.push(Buffer.from(d));
        up.write(d);
        if (upgraded) return;
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const head = buf.subarray(0, end).toString('latin1');
          const m = /^content-length:\s*(\d+)/im.exec(head);
          const len = m ? Number(m[1]) : 0;
          if (buf.length < end + 4 + len) return;
          const [line, ...hl] = head.split('\r\n');
          const [method, target] = line.split(' ');
          const headers = {};
          for (const h of hl) {
            const i = h.indexOf(':');
            headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
          }
          requests.push({ method, target, headers, body: Buffer.from(buf.subarray(end + 4, end + 4 + len)) });
          buf = buf.subarray(end + 4 + len);
          if (/^upgrade:\s*websocket/im.test(head)) { upgraded = true; return; }
        }
      },
    };
  });
  return { ...px, sent: () => Buffer.concat(raw), requests };
}
