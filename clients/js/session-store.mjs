// SPDX-License-Identifier: MIT
// An express-session store backed by an edgelite node's /v1/sessions (docs/sessions.md).
//
//   import session from 'express-session';
//   import { createEdgeliteStore } from './session-store.mjs';
//   const EdgeliteStore = createEdgeliteStore(session);
//   app.use(session({ store: new EdgeliteStore({ url: 'http://127.0.0.1:8081' }), secret, ... }));
//
// Each express session is one edgelite session with id `${prefix}${sid}`: stored in every region,
// compressed and encrypted by the node, written at its home region and moved to where it is used. The
// TTL is the cookie's maxAge (else options.ttlS, else the node's sessions.ttl_s). Uses the global fetch
// (Node 18+); no dependency besides express-session itself, which the caller passes to
// createEdgeliteStore so that this file does not pin its version.

const DEFAULT_PREFIX = 'sess.';

export function createEdgeliteStore(session) {
  const Store = session.Store;

  class EdgeliteStore extends Store {
    /**
     * options: url (the node, required), prefix (default 'sess.'), ttlS (when the cookie has no maxAge),
     * token (a JWT for nodes with auth), timeoutMs (per request, default 5000)
     */
    constructor(options = {}) {
      super(options);
      if (!options.url) throw new TypeError('EdgeliteStore: options.url is required');
      this.url = options.url.replace(/\/+$/, '');
      this.prefix = options.prefix ?? DEFAULT_PREFIX;
      this.ttlS = options.ttlS;
      this.token = options.token;
      this.timeoutMs = options.timeoutMs ?? 5000;
    }

    async _call(method, path, body) {
      const headers = {};
      if (this.token) headers.authorization = `Bearer ${this.token}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(this.url + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const text = await res.text();
      let json;
      try { json = JSON.parse(text); } catch { json = undefined; }
      return { status: res.status, json, text };
    }

    _id(sid) { return this.prefix + sid; }

    _ttl(sess) {
      const ms = sess?.cookie?.maxAge ?? sess?.cookie?.originalMaxAge;
      if (typeof ms === 'number' && ms > 0) return Math.max(1, Math.ceil(ms / 1000));
      return this.ttlS;
    }

    _fail(what, r) {
      const e = new Error(`edgelite session store: ${what}: HTTP ${r.status} ${r.json?.code ?? ''} ${r.json?.error ?? r.text}`);
      e.status = r.status;
      e.code = r.json?.code;
      return e;
    }

    _wrap(promise, cb) {
      promise.then((v) => cb && cb(null, v), (e) => cb && cb(e));
    }

    get(sid, cb) {
      this._wrap((async () => {
        const r = await this._call('GET', `/v1/sessions/${encodeURIComponent(this._id(sid))}`);
        if (r.status === 404) return null;
        if (r.status !== 200) throw this._fail('get', r);
        return r.json.data;
      })(), cb);
    }

    set(sid, sess, cb) {
      this._wrap((async () => {
        const id = this._id(sid);
        const ttl = this._ttl(sess);
        const body = { data: sess, ...(ttl ? { ttl_s: ttl } : {}) };
        // Replace, or create when it does not exist (yet, or any more); a create racing another
        // request's create of the same id falls back to replacing.
        for (let attempt = 0; attempt < 3; attempt++) {
          const put = await this._call('PUT', `/v1/sessions/${encodeURIComponent(id)}`, body);
          if (put.status === 200) return;
          if (put.status !== 404) throw this._fail('set', put);
          const post = await this._call('POST', '/v1/sessions', { id, ...body });
          if (post.status === 201) return;
          if (post.status !== 409) throw this._fail('set', post);
        }
        throw new Error('edgelite session store: set: the session kept appearing and disappearing');
      })(), cb);
    }

    // A read slides the TTL at the node (by its home's clock), so touching is reading.
    touch(sid, sess, cb) {
      this._wrap((async () => {
        const r = await this._call('GET', `/v1/sessions/${encodeURIComponent(this._id(sid))}`);
        if (r.status !== 200 && r.status !== 404) throw this._fail('touch', r);
      })(), cb);
    }

    destroy(sid, cb) {
      this._wrap((async () => {
        const r = await this._call('DELETE', `/v1/sessions/${encodeURIComponent(this._id(sid))}`);
        if (r.status !== 200 && r.status !== 404) throw this._fail('destroy', r);
      })(), cb);
    }

    async _ids() {
      const ids = [];
      let after = '';
      for (let page = 0; page < 100000; page++) {
        const q = `prefix=${encodeURIComponent(this.prefix)}&after=${encodeURIComponent(after)}&limit=1000`;
        const r = await this._call('GET', `/v1/sessions?${q}`);
        if (r.status !== 200) throw this._fail('list', r);
        ids.push(...r.json.ids);
        if (r.json.ids.length < 1000) break;
        after = r.json.ids[r.json.ids.length - 1];
      }
      return ids;
    }

    length(cb) { this._wrap(this._ids().then((ids) => ids.length), cb); }

    all(cb) {
      this._wrap((async () => {
        const out = {};
        for (const id of await this._ids()) {
          const r = await this._call('GET', `/v1/sessions/${encodeURIComponent(id)}`);
          if (r.status === 200) out[id.slice(this.prefix.length)] = r.json.data;
        }
        return out;
      })(), cb);
    }

    clear(cb) {
      this._wrap((async () => {
        for (const id of await this._ids()) {
          const r = await this._call('DELETE', `/v1/sessions/${encodeURIComponent(id)}`);
          if (r.status !== 200 && r.status !== 404) throw this._fail('clear', r);
        }
      })(), cb);
    }
  }

  return EdgeliteStore;
}
