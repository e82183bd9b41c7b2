// SPDX-License-Identifier: MIT
// clients/js/session-store.mjs with the real express and express-session (issue 11, item 7): two express
// apps, one per region of a 2-region cluster, share sessions through edgelite in real HTTP round trips
// (login at one, read and update at the other); the store's get/set/destroy/touch/length/clear.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import express from 'express';
import session from 'express-session';

import { createEdgeliteStore } from '../../clients/js/session-store.mjs';
import { startCluster } from './lib/cluster.mjs';
import { sess, writeKeyFile } from './lib/sessions.mjs';

const EdgeliteStore = createEdgeliteStore(session);
const p = (fn) => new Promise((resolve, reject) => fn((e, v) => (e ? reject(e) : resolve(v))));

describe('sessions_express', { timeout: 120000 }, () => {
  let cluster;
  let keyDir;
  const servers = [];
  const apps = {};

  const makeApp = (region) => {
    const app = express();
    const store = new EdgeliteStore({ url: cluster.url(region), prefix: 'xs.' });
    app.use(session({ store, secret: 'test-secret', resave: false, saveUninitialized: false,
      cookie: { maxAge: 600000 } }));
    app.post('/login/:user', (req, res) => { req.session.user = req.params.user; req.session.n = 0; res.json({ ok: true }); });
    app.post('/count', (req, res) => {
      if (!req.session.user) return res.status(401).json({ error: 'login first' });
      req.session.n += 1;
      res.json({ user: req.session.user, n: req.session.n, region });
    });
    app.get('/me', (req, res) => res.json({ user: req.session.user ?? null, n: req.session.n ?? null }));
    app.post('/logout', (req, res) => req.session.destroy((e) => (e ? res.status(500).end() : res.json({ ok: true }))));
    return { app, store };
  };

  before(async () => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-sesskeys-'));
    const { file } = writeKeyFile(keyDir, [1]);
    cluster = await startCluster({ regions: 2, sessions: { key_file: file, migrate_after: 3 } });
    for (const region of ['a', 'b']) {
      const { app, store } = makeApp(region);
      const server = await new Promise((resolve) => { const s = app.listen(0, '127.0.0.1', () => resolve(s)); });
      servers.push(server);
      apps[region] = { store, url: `http://127.0.0.1:${server.address().port}` };
    }
  });
  after(async () => {
    for (const s of servers) await new Promise((resolve) => s.close(resolve));
    if (cluster) await cluster.destroy();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  });

  const req = async (region, method, pth, cookie) => {
    const res = await fetch(apps[region].url + pth, { method, headers: cookie ? { cookie } : {},
      signal: AbortSignal.timeout(10000) });
    return { status: res.status, json: await res.json(), cookie: res.headers.get('set-cookie')?.split(';')[0] };
  };

  test('a session made by express in one region is used and updated by express in another', async () => {
    const login = await req('a', 'POST', '/login/ann');
    assert.equal(login.status, 200);
    assert.match(login.cookie, /^connect\.sid=/);
    const cookie = login.cookie;
    const sid = decodeURIComponent(cookie.split('=')[1]).slice(2).split('.')[0];
    const stored = await sess.get(cluster.url('a'), `xs.${sid}`);
    assert.equal(stored.status, 200, stored.text);
    assert.equal(stored.json.data.user, 'ann');
    assert.equal(stored.json.home, 'a');
    assert.ok(await cluster.waitFor(async () => (await sess.get(cluster.url('b'), `xs.${sid}`)).status === 200, 10000, 50));
    let r = await req('b', 'GET', '/me', cookie);
    assert.deepEqual(r.json, { user: 'ann', n: 0 });
    for (let i = 1; i <= 3; i++) {
      r = await req('b', 'POST', '/count', cookie);
      assert.equal(r.status, 200);
      assert.equal(r.json.n, i);
    }
    r = await req('a', 'GET', '/me', cookie);
    assert.deepEqual(r.json, { user: 'ann', n: 3 });
    r = await req('b', 'POST', '/logout', cookie);
    assert.equal(r.status, 200);
    assert.ok(await cluster.waitFor(async () => (await req('a', 'GET', '/me', cookie)).json.user === null, 10000, 50));
  });

  test('the store answers get, set, touch, destroy, length and clear', async () => {
    const { store } = apps.a;
    await p((cb) => store.clear(cb));
    assert.equal(await p((cb) => store.length(cb)), 0);
    const cookie = { originalMaxAge: 60000, maxAge: 60000, expires: new Date(Date.now() + 60000).toISOString() };
    await p((cb) => store.set('one', { cookie, v: 1 }, cb));
    // A 5 s maxAge: the node slides a TTL by steps of at least max(1 s, ttl/10).
    const short = { originalMaxAge: 5000, maxAge: 5000, expires: new Date(Date.now() + 5000).toISOString() };
    await p((cb) => store.set('two', { cookie: short, v: 2 }, cb));
    await p((cb) => store.set('one', { cookie, v: 11 }, cb));
    assert.deepEqual(await p((cb) => store.get('one', cb)), { cookie, v: 11 });
    assert.equal(await p((cb) => store.get('missing', cb)), null);
    assert.equal(await p((cb) => store.length(cb)), 2);
    const before = (await sess.get(cluster.url('a'), 'xs.two')).json.expires_at;
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await p((cb) => store.touch('two', { cookie: short, v: 2 }, cb));
    assert.ok((await sess.get(cluster.url('a'), 'xs.two')).json.expires_at > before, 'touch slid the TTL');
    await p((cb) => store.destroy('one', cb));
    assert.equal(await p((cb) => store.get('one', cb)), null);
    await p((cb) => store.destroy('one', cb)); // twice is fine
    assert.equal(await p((cb) => store.length(cb)), 1);
    // Other sessions (another prefix) are not the store's.
    assert.equal((await sess.create(cluster.url('a'), { id: 'other', data: {} })).status, 201);
    await p((cb) => store.clear(cb));
    assert.equal(await p((cb) => store.length(cb)), 0);
    assert.equal((await sess.get(cluster.url('a'), 'other')).status, 200);
  });
});
