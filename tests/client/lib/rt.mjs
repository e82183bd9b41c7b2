// SPDX-License-Identifier: MIT
// A raw client of the real-time feed (/v1/realtime, subprotocol edgelite-realtime1) on the `ws`
// package, for protocol tests: every frame is parsed, batches are unpacked into their events.

import WebSocket from 'ws';

export const RT_PROTOCOL = 'edgelite-realtime1';

/**
 * Open /v1/realtime at base (http://host:port). Resolves once open with:
 *   send(obj|string), sendBinary(buf)
 *   next(ms)            the next message (a batch frame yields its events one by one)
 *   waitFor(pred, ms)   the next message satisfying pred (others are kept in `seen`)
 *   events              every change event received so far, in order
 *   frames              count of frames received; batches: count of batch frames
 *   closed              promise of {code, reason}
 *   pause()/resume()    stop/restart reading the socket (a slow consumer)
 */
export function openRt(base, { token = null, headers = {}, timeoutMs = 5000, protocols = [RT_PROTOCOL] } = {}) {
  const url = base.replace(/^http/, 'ws') + '/v1/realtime';
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { headers: h, perMessageDeflate: false });
    const queue = [];
    const waiters = [];
    let closeInfo = null;
    let resolveClosed;
    const closed = new Promise((r) => { resolveClosed = r; });
    const s = {
      ws, closed, events: [], frames: 0, batches: 0,
      get closeInfo() { return closeInfo; },
      send(o) { ws.send(typeof o === 'string' ? o : JSON.stringify(o)); },
      sendBinary(b) { ws.send(b, { binary: true }); },
      pause() { ws._socket.pause(); },
      resume() { ws._socket.resume(); },
      next(ms = 5000) {
        if (queue.length) return Promise.resolve(queue.shift());
        if (closeInfo) return Promise.reject(new Error(`socket closed (${closeInfo.code} ${closeInfo.reason})`));
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
      async waitFor(pred, ms = 10000) {
        const end = Date.now() + ms;
        for (;;) {
          const left = end - Date.now();
          if (left <= 0) throw new Error('waitFor: timed out');
          const m = await s.next(left);
          if (pred(m)) return m;
        }
      },
      /** Subscribe and wait for `ready` (the backlog, if any, lands in events first). */
      async subscribe(req, ms = 10000) {
        s.send({ type: 'subscribe', ...req });
        const m = await s.waitFor((x) => x.type === 'ready' || x.type === 'error' || x.type === 'resync_required', ms);
        return m;
      },
      async close() {
        if (!closeInfo) ws.close();
        await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
        if (!closeInfo) ws.terminate();
      },
    };
    const push = (m) => {
      if (m.type === 'change') s.events.push(m);
      const w = waiters.shift();
      if (w) w.resolve(m); else queue.push(m);
    };
    ws.on('message', (data, isBinary) => {
      s.frames++;
      let m;
      try { m = JSON.parse(data.toString('utf8')); } catch { m = { type: '__unparsable__', isBinary }; }
      if (m.type === 'batch') {
        s.batches++;
        for (const e of m.events) push(e);
      } else {
        push(m);
      }
    });
    ws.on('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString() };
      for (const w of waiters.splice(0)) w.reject(new Error(`socket closed (${code})`));
      resolveClosed(closeInfo);
    });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('realtime socket did not open')); }, timeoutMs);
    ws.on('unexpected-response', (req, res) => {
      clearTimeout(timer);
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => { const e = new Error(`HTTP ${res.statusCode}`); e.status = res.statusCode; e.body = body; reject(e); });
    });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
    ws.on('open', () => { clearTimeout(timer); resolve(s); });
  });
}

/** Parse a bookmark "a:3,b:5" into {a: 3, b: 5}. */
export function parseBookmark(bm) {
  const out = {};
  if (!bm) return out;
  for (const p of bm.split(',')) {
    const i = p.lastIndexOf(':');
    out[p.slice(0, i)] = Number(p.slice(i + 1));
  }
  return out;
}
