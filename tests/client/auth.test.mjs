// SPDX-License-Identifier: MIT
// JWT auth (--auth-jwt-key): EdDSA tokens over http:// and ws://, read-only claims, expiry, bad tokens.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { createClient } from '@libsql/client';

import { makeKeyPair, nowS, signJwt, writeKey } from './lib/jwt.mjs';
import { get, pipeline, runEdge, startNode, stmt, tmpDir } from './lib/node.mjs';
import { openHranaWs } from './lib/ws.mjs';

const T = { timeout: 20000 };

async function countRows(url, token, table) {
  const c = createClient({ url, authToken: token });
  try {
    const rs = await c.execute(`SELECT count(*) AS n FROM ${table}`);
    return Number(rs.rows[0].n);
  } finally {
    c.close();
  }
}

function assert401Json(r) {
  assert.equal(r.status, 401, `expected 401, got ${r.status}: ${r.text}`);
  const body = JSON.parse(r.text);
  assert.ok(typeof body.message === 'string' || typeof body.error === 'string', `401 body: ${r.text}`);
}

describe('auth with a PEM (SPKI) Ed25519 key', { timeout: 120000 }, () => {
  let node;
  let dir;
  let keys;
  let other;
  let rw;
  let ro;
  before(async () => {
    dir = tmpDir('edgelite-auth-');
    keys = makeKeyPair();
    other = makeKeyPair();
    const keyFile = writeKey(dir, 'jwt.pem', keys, 'pem');
    node = await startNode({ args: ['--auth-jwt-key', keyFile] });
    rw = signJwt(keys.privateKey, { a: 'rw', exp: nowS() + 3600 });
    ro = signJwt(keys.privateKey, { a: 'ro', exp: nowS() + 3600 });
    const c = createClient({ url: node.url, authToken: rw });
    try {
      await c.execute('CREATE TABLE auth_t (id INTEGER PRIMARY KEY, v TEXT)');
      await c.execute("INSERT INTO auth_t VALUES (1, 'one')");
    } finally {
      c.close();
    }
  });
  after(async () => {
    if (node) await node.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('/health and /version stay open', T, async () => {
    assert.equal((await get(node, '/health')).status, 200);
    assert.equal((await get(node, '/version')).status, 200);
  });

  test('a pipeline without a token is 401 with a JSON body', T, async () => {
    for (const p of ['/v2/pipeline', '/v3/pipeline']) {
      const r = await pipeline(node.url + p, { requests: [{ type: 'execute', stmt: stmt('SELECT 1') }, { type: 'close' }] });
      assert401Json(r);
    }
  });

  test('invalid, forged, expired and wrongly signed tokens are 401', T, async () => {
    const bad = {
      garbage: 'not-a-jwt',
      empty: '',
      twoParts: 'abc.def',
      wrongKey: signJwt(other.privateKey, { a: 'rw' }),
      expired: signJwt(keys.privateKey, { a: 'rw', exp: nowS() - 3600 }),
      algNone: `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"a":"rw"}').toString('base64url')}.`,
      algHs: signJwt(keys.privateKey, { a: 'rw' }, { alg: 'HS256', typ: 'JWT' }),
      tampered: (() => {
        const [h, , s] = rw.split('.');
        return `${h}.${Buffer.from(JSON.stringify({ a: 'rw', exp: nowS() + 999999 })).toString('base64url')}.${s}`;
      })(),
      truncatedSig: rw.slice(0, -4),
    };
    for (const [name, tok] of Object.entries(bad)) {
      const r = await pipeline(`${node.url}/v2/pipeline`,
        { requests: [{ type: 'execute', stmt: stmt("INSERT INTO auth_t VALUES (NULL, 'bad')") }, { type: 'close' }] },
        { authorization: `Bearer ${tok}` });
      assert.equal(r.status, 401, `${name}: got ${r.status} ${r.text}`);
    }
    const basic = await pipeline(`${node.url}/v2/pipeline`, { requests: [{ type: 'close' }] }, { authorization: 'Basic dXNlcjpwYXNz' });
    assert.equal(basic.status, 401);
    assert.equal(await countRows(node.url, rw, 'auth_t'), 1, 'no bad token changed data');
  });

  test('the "Bearer" scheme is case-insensitive', T, async () => {
    const r = await pipeline(`${node.url}/v2/pipeline`,
      { requests: [{ type: 'execute', stmt: stmt('SELECT 1') }, { type: 'close' }] }, { authorization: `bearer ${rw}` });
    assert.equal(r.status, 200, r.text);
  });

  for (const scheme of ['http', 'ws']) {
    const url = () => (scheme === 'ws' ? node.wsUrl : node.url);

    test(`${scheme}: a read-write token reads and writes`, T, async () => {
      const c = createClient({ url: url(), authToken: rw });
      try {
        await c.execute({ sql: 'INSERT INTO auth_t (v) VALUES (?)', args: [`rw-${scheme}`] });
        const rs = await c.execute({ sql: 'SELECT count(*) AS n FROM auth_t WHERE v = ?', args: [`rw-${scheme}`] });
        assert.equal(Number(rs.rows[0].n), 1);
      } finally {
        c.close();
      }
    });

    test(`${scheme}: a token without "a" claim and without exp has full access`, T, async () => {
      const c = createClient({ url: url(), authToken: signJwt(keys.privateKey, {}) });
      try {
        await c.execute({ sql: 'INSERT INTO auth_t (v) VALUES (?)', args: [`noclaim-${scheme}`] });
        await c.execute({ sql: 'DELETE FROM auth_t WHERE v = ?', args: [`noclaim-${scheme}`] });
      } finally {
        c.close();
      }
    });

    test(`${scheme}: a read-only token (a=ro) reads but cannot write`, T, async () => {
      const before = await countRows(node.url, rw, 'auth_t');
      const c = createClient({ url: url(), authToken: ro });
      try {
        const rs = await c.execute('SELECT v FROM auth_t WHERE id = 1');
        assert.equal(rs.rows[0].v, 'one');
        await assert.rejects(c.execute("INSERT INTO auth_t (v) VALUES ('ro')"));
        await assert.rejects(c.execute("UPDATE auth_t SET v = 'changed' WHERE id = 1"));
        await assert.rejects(c.execute('DROP TABLE auth_t'));
        await assert.rejects(c.execute('CREATE TABLE ro_made (a)'));
        await assert.rejects(c.batch(["INSERT INTO auth_t (v) VALUES ('ro-batch')"], 'write'));
        await assert.rejects(c.executeMultiple("INSERT INTO auth_t (v) VALUES ('ro-multi');"));
        const tx = await c.transaction('write').catch(() => null);
        if (tx) {
          await assert.rejects(tx.execute("INSERT INTO auth_t (v) VALUES ('ro-tx')").then(() => tx.commit()));
          tx.close();
        }
      } finally {
        c.close();
      }
      assert.equal(await countRows(node.url, rw, 'auth_t'), before);
      const c2 = createClient({ url: node.url, authToken: rw });
      try {
        const rs = await c2.execute("SELECT v FROM auth_t WHERE id = 1");
        assert.equal(rs.rows[0].v, 'one');
        const t = await c2.execute("SELECT count(*) AS n FROM sqlite_schema WHERE name = 'ro_made'");
        assert.equal(Number(t.rows[0].n), 0);
      } finally {
        c2.close();
      }
    });

    test(`${scheme}: no token, an expired token and a foreign key's token are refused`, T, async () => {
      const toks = [undefined, signJwt(keys.privateKey, { a: 'rw', exp: nowS() - 3600 }), signJwt(other.privateKey, { a: 'rw' })];
      for (const tok of toks) {
        const c = createClient({ url: url(), authToken: tok });
        try {
          await assert.rejects(c.execute('SELECT 1'), (e) => {
            if (scheme === 'ws') assert.match(String(e.code), /^AUTH_/, e.message);
            return true;
          });
        } finally {
          c.close();
        }
      }
    });
  }

  test('ws: a bad jwt in hello gets hello_error with an AUTH_ code and the socket closes', T, async () => {
    const s = await openHranaWs(node.wsUrl, ['hrana2']);
    try {
      s.send({ type: 'hello', jwt: signJwt(other.privateKey, { a: 'rw' }) });
      s.send({ type: 'request', request_id: 0, request: { type: 'open_stream', stream_id: 0 } });
      const m = await s.next();
      assert.equal(m.type, 'hello_error');
      assert.match(String(m.error.code), /^AUTH_/);
      const closed = await Promise.race([s.closed, new Promise((r) => setTimeout(() => r(null), 5000))]);
      assert.ok(closed, 'the server closes the socket after hello_error');
    } finally {
      await s.close();
    }
  });

  test('ws: hello with a valid jwt, then requests work', T, async () => {
    const s = await openHranaWs(node.wsUrl, ['hrana2']);
    try {
      s.send({ type: 'hello', jwt: ro });
      assert.equal((await s.next()).type, 'hello_ok');
      await s.request({ type: 'open_stream', stream_id: 0 });
      const r = await s.request({ type: 'execute', stream_id: 0, stmt: stmt('SELECT count(*) FROM auth_t') });
      assert.equal(r.type, 'response_ok', JSON.stringify(r));
      const w = await s.request({ type: 'execute', stream_id: 0, stmt: stmt("INSERT INTO auth_t (v) VALUES ('ws-ro')") });
      assert.equal(w.type, 'response_error', 'a read-only token cannot write');
    } finally {
      await s.close();
    }
  });
});

describe('auth with a raw base64url Ed25519 key', { timeout: 60000 }, () => {
  let node;
  let dir;
  let keys;
  before(async () => {
    dir = tmpDir('edgelite-auth-raw-');
    keys = makeKeyPair();
    node = await startNode({ args: ['--auth-jwt-key', writeKey(dir, 'jwt.b64', keys, 'raw')] });
  });
  after(async () => {
    if (node) await node.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('tokens of that key work, others are refused', T, async () => {
    const good = createClient({ url: node.url, authToken: signJwt(keys.privateKey, { a: 'rw' }) });
    try {
      await good.execute('CREATE TABLE raw_t (a)');
      await good.execute('INSERT INTO raw_t VALUES (1)');
    } finally {
      good.close();
    }
    const bad = createClient({ url: node.url, authToken: signJwt(makeKeyPair().privateKey, { a: 'rw' }) });
    try {
      await assert.rejects(bad.execute('INSERT INTO raw_t VALUES (2)'));
    } finally {
      bad.close();
    }
    assert.equal(await countRows(node.url, signJwt(keys.privateKey, { a: 'ro' }), 'raw_t'), 1);
  });
});

describe('edgelite token keygen / create end-to-end', { timeout: 60000 }, () => {
  let node;
  let dir;
  after(async () => {
    if (node) await node.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('CLI-made tokens work with the real client; --read-only cannot write', { timeout: 40000 }, async () => {
    dir = tmpDir('edgelite-token-');
    const prefix = path.join(dir, 'k');
    const kg = await runEdge(['token', 'keygen', '--out', prefix]);
    assert.equal(kg.code, 0, `keygen failed: ${kg.stderr}`);
    assert.ok(fs.existsSync(`${prefix}.key`), 'keygen writes PREFIX.key');
    const pubs = fs.readdirSync(dir).filter((f) => f !== 'k.key' && f.startsWith('k.'));
    assert.ok(pubs.length >= 1, `keygen writes a public key file next to PREFIX.key (found ${fs.readdirSync(dir)})`);
    const pub = path.join(dir, pubs.includes('k.pub') ? 'k.pub' : pubs[0]);

    const lastLine = (s) => s.trim().split('\n').pop().trim();
    const mk = async (extra) => {
      const r = await runEdge(['token', 'create', '--key', `${prefix}.key`, ...extra]);
      assert.equal(r.code, 0, `token create failed: ${r.stderr}`);
      const tok = lastLine(r.stdout);
      assert.match(tok, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, `not a JWT: ${r.stdout}`);
      return tok;
    };
    const rwTok = await mk(['--expires', '1h']);
    const roTok = await mk(['--read-only']);
    const payload = JSON.parse(Buffer.from(rwTok.split('.')[1], 'base64url').toString());
    assert.ok(payload.exp > nowS() + 3000 && payload.exp <= nowS() + 3700, `--expires 1h sets exp: ${JSON.stringify(payload)}`);
    assert.equal(JSON.parse(Buffer.from(roTok.split('.')[1], 'base64url').toString()).a, 'ro');

    node = await startNode({ args: ['--auth-jwt-key', pub] });
    for (const url of [node.url, node.wsUrl]) {
      const c = createClient({ url, authToken: rwTok });
      try {
        await c.execute('CREATE TABLE IF NOT EXISTS cli_t (a)');
        await c.execute('INSERT INTO cli_t VALUES (1)');
      } finally {
        c.close();
      }
      const r = createClient({ url, authToken: roTok });
      try {
        await assert.rejects(r.execute('INSERT INTO cli_t VALUES (2)'));
        const rs = await r.execute('SELECT count(*) AS n FROM cli_t');
        assert.equal(Number(rs.rows[0].n), url === node.url ? 1 : 2);
      } finally {
        r.close();
      }
    }
  });
});
