// SPDX-License-Identifier: MIT
// A minimal Hrana-over-WebSocket peer built on the `ws` package, for raw protocol tests.

import WebSocket from 'ws';

/**
 * Open a WebSocket offering `protocols`. Resolves once open with a session object:
 *   protocol           the subprotocol the server chose
 *   send(obj)          send one JSON text frame
 *   next(timeoutMs)    the next parsed message (rejects on timeout or close)
 *   request(req)       send {type:"request"} with a fresh request_id and wait for its response message
 *   closed             promise resolving to {code, reason} when the socket closes
 *   close()            close and wait (bounded)
 */
export function openHranaWs(url, protocols = ['hrana2'], { timeoutMs = 5000, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers, perMessageDeflate: false });
    const queue = [];
    const waiters = [];
    let closeInfo = null;
    let nextId = 0;
    const pendingById = new Map();
    let resolveClosed;
    const closed = new Promise((r) => { resolveClosed = r; });

    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`WebSocket ${url} did not open within ${timeoutMs} ms`));
    }, timeoutMs);

    ws.on('message', (data, isBinary) => {
      let msg;
      try {
        msg = JSON.parse(data.toString('utf8'));
      } catch {
        msg = { type: '__unparsable__', isBinary, raw: data.toString('utf8') };
      }
      if ((msg.type === 'response_ok' || msg.type === 'response_error') && pendingById.has(msg.request_id)) {
        const p = pendingById.get(msg.request_id);
        pendingById.delete(msg.request_id);
        p.resolve(msg);
        return;
      }
      const w = waiters.shift();
      if (w) w.resolve(msg); else queue.push(msg);
    });
    ws.on('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString() };
      for (const w of waiters.splice(0)) w.reject(new Error(`socket closed (${code})`));
      for (const p of pendingById.values()) p.reject(new Error(`socket closed (${code})`));
      pendingById.clear();
      resolveClosed(closeInfo);
    });
    ws.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    ws.on('open', () => {
      clearTimeout(timer);
      const session = {
        ws,
        protocol: ws.protocol,
        closed,
        get closeInfo() { return closeInfo; },
        send(obj) { ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); },
        next(ms = 5000) {
          if (queue.length) return Promise.resolve(queue.shift());
          if (closeInfo) return Promise.reject(new Error(`socket closed (${closeInfo.code})`));
          return new Promise((res, rej) => {
            const w = { resolve: (m) => { clearTimeout(t); res(m); }, reject: (e) => { clearTimeout(t); rej(e); } };
            const t = setTimeout(() => {
              const i = waiters.indexOf(w);
              if (i >= 0) waiters.splice(i, 1);
              rej(new Error(`no message within ${ms} ms`));
            }, ms);
            waiters.push(w);
          });
        },
        request(req, ms = 10000) {
          const id = nextId++;
          return new Promise((res, rej) => {
            const t = setTimeout(() => {
              pendingById.delete(id);
              rej(new Error(`no response to request ${id} (${req.type}) within ${ms} ms`));
            }, ms);
            pendingById.set(id, {
              resolve: (m) => { clearTimeout(t); res(m); },
              reject: (e) => { clearTimeout(t); rej(e); },
            });
            ws.send(JSON.stringify({ type: 'request', request_id: id, request: req }));
          });
        },
        async close(ms = 3000) {
          if (!closeInfo) ws.close();
          const t = new Promise((r) => setTimeout(r, ms));
          await Promise.race([closed, t]);
          if (!closeInfo) ws.terminate();
        },
      };
      resolve(session);
    });
  });
}
