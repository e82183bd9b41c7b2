// SPDX-License-Identifier: MIT
// edgelite real-time client: a zero-dependency ES module for browsers and Node.js 18+ (docs/realtime.md).
//
//   import { edgeliteRealtime } from './realtime.mjs';
//   const feed = edgeliteRealtime(['http://eu:8080', 'http://us:8080'], { token });
//   const sub = feed.subscribe('orders', { from: 'now', where: { status: 'open' } }, (ev) => console.log(ev));
//   feed.join('room1', (payload) => ...); feed.broadcast('room1', { hi: 1 });
//   ... sub.bookmark (where it is), sub.unsubscribe(), feed.close()
//
// It reconnects by itself with exponential back-off (and jitter), moving to the next URL of the list after a
// failure, and resumes every subscription from the last bookmark it delivered: across a reconnect, a slow-consumer
// close, or the loss of a region, each change is delivered once. On `resync_required` (the log no longer holds the
// gap) it calls options.onResync(sub, bookmark) — reload your state there — and goes on from the new bookmark.
//
// Node.js before 22 has no global WebSocket: pass one (options.WebSocket, e.g. the `ws` package's). The token is
// sent in the first message (browsers cannot set headers on a WebSocket).

const PROTOCOL = 'edgelite-realtime1';

export function edgeliteRealtime(urls, options = {}) {
  const list = (Array.isArray(urls) ? urls : [urls]).map((u) => u.replace(/^http/, 'ws').replace(/\/$/, '') + '/v1/realtime');
  const WS = options.WebSocket ?? globalThis.WebSocket;
  if (!WS) throw new Error('edgeliteRealtime: no WebSocket implementation (pass options.WebSocket)');
  const minDelay = options.minDelayMs ?? 100;
  const maxDelay = options.maxDelayMs ?? 5000;
  const listeners = { open: [], close: [], error: [], ready: [], resync: [] };
  const subs = new Map(); // id -> sub
  const channels = new Map(); // name -> [cb]
  let nextId = 1;
  let ws = null;
  let urlIndex = 0;
  let attempt = 0;
  let closedByUser = false;
  let timer = null;
  let open = false;

  const emit = (name, ...args) => { for (const f of listeners[name]) { try { f(...args); } catch { /* the app's */ } } };
  const send = (o) => { if (open) ws.send(JSON.stringify(o)); };

  function subscribeMsg(sub) {
    const m = { type: 'subscribe', id: sub.id, tables: sub.tables, from: sub.bookmark ?? sub.from };
    if (sub.where) m.where = sub.where;
    if (sub.keys) m.keys = sub.keys;
    return m;
  }

  function onEvent(ev) {
    const sub = subs.get(ev.sub);
    if (!sub) return;
    if (ev.bookmark) sub.bookmark = ev.bookmark;
    sub.onEvent(ev);
  }

  function onMessage(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    switch (m.type) {
      case 'change': onEvent(m); break;
      case 'batch': for (const e of m.events) { if (e.type === 'broadcast') onMessage(JSON.stringify(e)); else onEvent(e); } break;
      case 'ready': {
        const sub = subs.get(m.sub);
        if (sub) { sub.bookmark = m.bookmark; sub.ready = true; emit('ready', sub, m.bookmark); }
        break;
      }
      case 'resync_required': {
        const sub = subs.get(m.sub);
        if (!sub) break;
        sub.bookmark = m.bookmark;
        emit('resync', sub, m.bookmark);
        if (options.onResync) options.onResync(sub, m.bookmark);
        send(subscribeMsg(sub));
        break;
      }
      case 'broadcast': for (const f of channels.get(m.channel) ?? []) f(m.payload, m.channel); break;
      case 'error':
        // SLOW_CONSUMER: the server closes; the reconnect resumes from sub.bookmark (already the error's).
        if (m.code === 'SLOW_CONSUMER' && subs.get(m.sub) && m.bookmark) subs.get(m.sub).bookmark = m.bookmark;
        emit('error', m);
        break;
      default: break;
    }
  }

  function connect() {
    timer = null;
    const url = list[urlIndex % list.length];
    let sock;
    try { sock = new WS(url, [PROTOCOL]); } catch (e) { emit('error', { code: 'CONNECT', message: String(e) }); return retry(); }
    ws = sock;
    sock.onopen = () => {
      open = true;
      attempt = 0;
      if (options.token) sock.send(JSON.stringify({ type: 'auth', jwt: options.token }));
      for (const sub of subs.values()) { sub.ready = false; sock.send(JSON.stringify(subscribeMsg(sub))); }
      for (const name of channels.keys()) sock.send(JSON.stringify({ type: 'join', channel: name }));
      emit('open', url);
    };
    sock.onmessage = (e) => {
      const d = e.data;
      if (typeof d === 'string') onMessage(d);
      else if (d && typeof d.toString === 'function') onMessage(d.toString());
    };
    sock.onerror = () => { /* onclose follows */ };
    sock.onclose = (e) => {
      const was = open;
      open = false;
      if (ws === sock) ws = null;
      emit('close', { code: e?.code, reason: e?.reason, url });
      if (!closedByUser) {
        if (!was || (e && e.code !== 4008)) urlIndex++; // a region that fails: try the next one
        retry();
      }
    };
  }

  function retry() {
    if (closedByUser || timer) return;
    const d = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt++, 16));
    timer = setTimeout(connect, d / 2 + Math.random() * d / 2);
  }

  const feed = {
    /** Subscribe to table(s); onEvent(change) for each event. Returns { id, bookmark, ready, unsubscribe() }. */
    subscribe(tables, opts = {}, onEvent = () => {}) {
      if (typeof opts === 'function') { onEvent = opts; opts = {}; }
      const sub = {
        id: nextId++, tables: Array.isArray(tables) ? tables : [tables], where: opts.where, keys: opts.keys,
        from: opts.from ?? 'now', bookmark: null, ready: false, onEvent,
        unsubscribe() { subs.delete(sub.id); send({ type: 'unsubscribe', id: sub.id }); },
      };
      subs.set(sub.id, sub);
      send(subscribeMsg(sub));
      return sub;
    },
    /** Receive the broadcasts of a channel. */
    join(channel, cb) {
      if (!channels.has(channel)) { channels.set(channel, []); send({ type: 'join', channel }); }
      channels.get(channel).push(cb);
    },
    /** Send a broadcast (at most once, every region; needs a read-write token). */
    broadcast(channel, payload) { send({ type: 'broadcast', channel, payload }); },
    on(name, f) { listeners[name].push(f); return feed; },
    get connected() { return open; },
    close() {
      closedByUser = true;
      if (timer) clearTimeout(timer);
      if (ws) ws.close();
    },
  };
  connect();
  return feed;
}

export default edgeliteRealtime;
