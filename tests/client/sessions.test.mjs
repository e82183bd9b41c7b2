// SPDX-License-Identifier: MIT
// Distributed sessions (issue 11) on a real 3-region cluster: a session created in one region is read in
// all, writes elsewhere are forwarded to its home, compare-and-set, bad input changes nothing, migration
// after exactly sessions.migrate_after remote accesses with no update lost to the handover, refusal by a
// target at capacity, no plaintext in any database file or on the wire between regions, and, last, the
// home down: stale reads marked, writes refused with a clear error.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { call, recordingProxy, sess, writeKeyFile } from './lib/sessions.mjs';

describe('sessions', { timeout: 120000 }, () => {
  let cluster;
  let keyDir;
  const proxies = [];
  const url = (id) => cluster.url(id);
  const metric = (id, name) => cluster.metric(id, name);

  before(async () => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-sesskeys-'));
    const { file } = writeKeyFile(keyDir, [1]);
    cluster = await startCluster({
      regions: 3,
      sessions: { key_file: file, migrate_after: 3, max_bytes: 2048, touch_interval_ms: 50 },
      capacity: { c: { max_sessions: 1 } },
      // Every region reaches every other through a recording proxy: the wire test reads what crossed.
      peerUrl: async (src, r) => {
        const px = await recordingProxy(r.port);
        proxies.push(px);
        return `http://127.0.0.1:${px.port}`;
      },
    });
    // Every link up before the first read: a read at a replica whose link to the home is not
    // up yet is rightly marked stale, and polling until it is not would count accesses towards
    // migrate_after. Waiting on /v1/status is no session access.
    const linked = await cluster.waitFor(async () => {
      for (const id of ['a', 'b', 'c']) {
        const st = await cluster.status(id);
        const peers = st?.peers ?? st?.replication?.peers ?? [];
        if (peers.length !== 2 || !peers.every((p) => p.connected === true)) return undefined;
      }
      return true;
    }, 20000, 50);
    assert.ok(linked, 'the peer links never all came up');
  });
  after(async () => {
    if (cluster) await cluster.destroy();
    for (const px of proxies) await px.close();
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  });

  const waitGet = async (id, sid, pred = (r) => r.status === 200, timeoutMs = 10000) =>
    cluster.waitFor(async () => {
      const r = await sess.get(url(id), sid);
      return pred(r) ? r : undefined;
    }, timeoutMs, 30);

  test('created in one region, read in every region', async () => {
    const c = await sess.create(url('a'), { id: 'read-all', data: { user: 'ann', roles: ['x'] }, ttl_s: 600 });
    assert.equal(c.status, 201, c.text);
    assert.equal(c.json.id, 'read-all');
    assert.equal(c.json.home, 'a');
    assert.match(c.json.bookmark, /^a:\d+$/);
    for (const id of ['a', 'b', 'c']) {
      const r = await waitGet(id, 'read-all');
      assert.ok(r, `region ${id} never saw the session`);
      assert.deepEqual(r.json.data, { user: 'ann', roles: ['x'] });
      assert.equal(r.json.home, 'a');
      assert.equal(r.json.version, 1);
      assert.equal(r.json.stale, false);
    }
    // A random 128-bit id when none is given.
    const g = await sess.create(url('b'), { data: {} });
    assert.equal(g.status, 201, g.text);
    assert.match(g.json.id, /^[0-9a-f]{32}$/);
    assert.equal(g.json.home, 'b');
  });

  test('a write at a region that is not the home is forwarded there and visible here at once', async () => {
    const c = await sess.create(url('a'), { id: 'fwd', data: { n: 1 } });
    assert.equal(c.status, 201, c.text);
    assert.ok(await waitGet('b', 'fwd'));
    const before = await metric('b', 'edgelite_sessions_forwards_total');
    const p = await sess.put(url('b'), 'fwd', { data: { n: 2 } });
    assert.equal(p.status, 200, p.text);
    assert.equal(p.json.home, 'a');
    assert.equal(p.json.version, 2);
    assert.equal(await metric('b', 'edgelite_sessions_forwards_total'), before + 1);
    // Answered after b applied the home's entry: b's next read has it (no polling).
    const r = await sess.get(url('b'), 'fwd');
    assert.deepEqual(r.json.data, { n: 2 });
    const home = await sess.get(url('a'), 'fwd');
    assert.deepEqual(home.json.data, { n: 2 });
  });

  test('If-Match makes PUT and PATCH a compare-and-set: 412 changes nothing', async () => {
    const c = await sess.create(url('a'), { id: 'cas', data: { a: 1, b: { c: 2 } } });
    assert.equal(c.status, 201, c.text);
    let r = await sess.patch(url('a'), 'cas', { b: { c: null, d: 3 }, e: 4 }, { 'if-match': '1' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.version, 2);
    r = await sess.get(url('a'), 'cas');
    assert.deepEqual(r.json.data, { a: 1, b: { d: 3 }, e: 4 }); // RFC 7396
    r = await sess.put(url('a'), 'cas', { data: { z: 1 } }, { 'if-match': '1' });
    assert.equal(r.status, 412, r.text);
    assert.equal(r.json.code, 'SESSION_VERSION_MISMATCH');
    r = await sess.patch(url('a'), 'cas', { z: 1 }, { 'if-match': '"1"' });
    assert.equal(r.status, 412, r.text);
    // Through a forward too.
    assert.ok(await waitGet('c', 'cas', (x) => x.status === 200 && x.json.version === 2));
    r = await sess.put(url('c'), 'cas', { data: { z: 1 } }, { 'if-match': '7' });
    assert.equal(r.status, 412, r.text);
    r = await sess.get(url('a'), 'cas');
    assert.equal(r.json.version, 2);
    assert.deepEqual(r.json.data, { a: 1, b: { d: 3 }, e: 4 });
    r = await sess.put(url('c'), 'cas', { data: { z: 1 } }, { 'if-match': '2' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.version, 3);
  });

  test('concurrent PUTs: each answers its own version; with If-Match exactly one wins each version', async () => {
    // The home's writer takes concurrent writes together (one savepoint for the run): each still gets
    // its own answer, in the order they were applied.
    const c = await sess.create(url('a'), { id: 'put-race', data: { n: 0 } });
    assert.equal(c.status, 201, c.text);
    const plain = await Promise.all(Array.from({ length: 40 }, (_, i) =>
      sess.put(url('a'), 'put-race', { data: { n: i + 1 } })));
    for (const r of plain) assert.equal(r.status, 200, r.text);
    assert.deepEqual(plain.map((r) => r.json.version).sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i + 2));
    let version = 41;
    for (let round = 0; round < 5; round++) {
      const rs = await Promise.all(Array.from({ length: 24 }, (_, i) =>
        sess.put(url('a'), 'put-race', { data: { round, i } }, { 'if-match': String(version) })));
      const won = rs.filter((r) => r.status === 200);
      assert.equal(won.length, 1, `round ${round}: ${won.length} PUTs won version ${version}`);
      assert.equal(won[0].json.version, version + 1);
      for (const r of rs) if (r.status !== 200) assert.equal(r.json?.code, 'SESSION_VERSION_MISMATCH', r.text);
      const winner = rs.indexOf(won[0]);
      version++;
      const g = await sess.get(url('a'), 'put-race');
      assert.equal(g.json.version, version);
      assert.deepEqual(g.json.data, { round, i: winner });
    }
  });

  test('repeated reads are served from the loop\'s decoded copy; a changed record is read fresh', async () => {
    const c = await sess.create(url('a'), { id: 'cached', data: { v: 1, s: 'x'.repeat(300) } });
    assert.equal(c.status, 201, c.text);
    const hits0 = await metric('a', 'edgelite_sessions_read_cache_hits_total');
    for (let i = 0; i < 6; i++) {
      const r = await sess.get(url('a'), 'cached');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.data, { v: 1, s: 'x'.repeat(300) });
    }
    const hits1 = await metric('a', 'edgelite_sessions_read_cache_hits_total');
    assert.ok(hits1 > hits0, `no read served from the cache (${hits0} -> ${hits1})`);
    assert.ok(await metric('a', 'edgelite_sessions_read_cache_entries') >= 1);
    for (let v = 2; v <= 4; v++) {
      const w = await sess.put(url('a'), 'cached', { data: { v } });
      assert.equal(w.status, 200, w.text);
      for (let i = 0; i < 3; i++) {
        const r = await sess.get(url('a'), 'cached');
        assert.deepEqual(r.json.data, { v }, `read after write ${v}`);
        assert.equal(r.json.version, v);
      }
    }
  });

  test('bad input is a clear 4xx and changes nothing', async () => {
    const c = await sess.create(url('a'), { id: 'bad', data: { keep: true } });
    assert.equal(c.status, 201, c.text);
    const cases = [
      [() => call(url('a'), 'POST', '/v1/sessions', '{"data": {'), 400, 'SESSION_BAD_REQUEST'],
      [() => call(url('a'), 'POST', '/v1/sessions', { data: [1, 2] }), 400, 'SESSION_BAD_REQUEST'],
      [() => call(url('a'), 'POST', '/v1/sessions', { data: {}, ttl_s: -1 }), 400, 'SESSION_BAD_REQUEST'],
      [() => call(url('a'), 'POST', '/v1/sessions', { data: {}, ttl_s: 'x' }), 400, 'SESSION_BAD_REQUEST'],
      [() => call(url('a'), 'POST', '/v1/sessions', { id: '../etc', data: {} }), 400, 'SESSION_BAD_ID'],
      [() => call(url('a'), 'POST', '/v1/sessions', { id: 'bad', data: {} }), 409, 'SESSION_EXISTS'],
      [() => call(url('a'), 'POST', '/v1/sessions', { data: { big: 'x'.repeat(3000) } }), 413, 'SESSION_TOO_LARGE'],
      [() => sess.put(url('a'), 'bad', '{nope'), 400, 'SESSION_BAD_REQUEST'],
      [() => sess.put(url('a'), 'bad', { nodata: 1 }), 400, 'SESSION_BAD_REQUEST'],
      [() => sess.put(url('a'), 'bad', { data: { big: 'y'.repeat(3000) } }), 413, 'SESSION_TOO_LARGE'],
      [() => sess.patch(url('a'), 'bad', '[1'), 400, 'SESSION_BAD_REQUEST'],
      [() => sess.patch(url('a'), 'bad', [1, 2]), 400, 'SESSION_BAD_PATCH'],
      [() => sess.patch(url('a'), 'bad', { big: 'z'.repeat(3000) }), 413, 'SESSION_TOO_LARGE'],
      [() => sess.put(url('a'), 'bad', { data: {} }, { 'if-match': 'abc' }), 400, 'SESSION_BAD_REQUEST'],
      [() => sess.get(url('a'), '_hidden'), 400, 'SESSION_BAD_ID'],
      [() => sess.get(url('a'), 'no-such-session'), 404, 'SESSION_NOT_FOUND'],
      [() => sess.put(url('a'), 'no-such-session', { data: {} }), 404, 'SESSION_NOT_FOUND'],
      [() => sess.del(url('b'), 'no-such-session'), 404, 'SESSION_NOT_FOUND'],
      [() => call(url('a'), 'DELETE', '/v1/sessions'), 405, 'METHOD_NOT_ALLOWED'],
      [() => call(url('a'), 'GET', '/v1/sessions?limit=0'), 400, 'SESSION_BAD_REQUEST'],
      [() => call(url('a'), 'POST', '/v1/_sessions/access', { from: 'b', ids: ['bad'] }), 401, 'AUTH_CLUSTER'],
    ];
    for (const [fn, status, code] of cases) {
      const r = await fn();
      assert.equal(r.status, status, `${code}: ${r.text}`);
      assert.equal(r.json?.code, code, r.text);
    }
    const r = await sess.get(url('a'), 'bad');
    assert.equal(r.json.version, 1);
    assert.deepEqual(r.json.data, { keep: true });
    assert.equal((await sess.get(url('a'), 'no-such-session')).status, 404);
  });

  test('migration after exactly migrate_after consecutive remote accesses', async () => {
    const c = await sess.create(url('a'), { id: 'mig', data: { v: 0 } });
    assert.equal(c.status, 201, c.text);
    assert.ok(await waitGet('b', 'mig'));
    const outA = await metric('a', 'edgelite_sessions_migrations_out_total');
    const inB = await metric('b', 'edgelite_sessions_migrations_in_total');
    // waitGet read it once at b already; one more makes two: not enough.
    assert.equal((await sess.get(url('b'), 'mig')).status, 200);
    await sleep(600); // reports go out every touch_interval_ms (50 ms here)
    assert.equal(await metric('a', 'edgelite_sessions_migrations_out_total'), outA, 'moved after 2 accesses');
    // A read at the home in between restarts the count.
    assert.equal((await sess.get(url('a'), 'mig')).status, 200);
    assert.equal((await sess.get(url('b'), 'mig')).status, 200);
    assert.equal((await sess.get(url('b'), 'mig')).status, 200);
    await sleep(600);
    assert.equal(await metric('a', 'edgelite_sessions_migrations_out_total'), outA, 'the home read did not reset');
    // The third consecutive one moves it.
    assert.equal((await sess.get(url('b'), 'mig')).status, 200);
    const moved = await cluster.waitFor(async () =>
      (await metric('a', 'edgelite_sessions_migrations_out_total')) === outA + 1, 10000, 50);
    assert.ok(moved, 'no migration after 3 accesses');
    assert.ok(await cluster.waitFor(async () =>
      (await metric('b', 'edgelite_sessions_migrations_in_total')) === inB + 1, 10000, 50));
    for (const id of ['a', 'b', 'c']) {
      const r = await waitGet(id, 'mig', (x) => x.status === 200 && x.json.home === 'b');
      assert.ok(r, `region ${id} does not see home b`);
      assert.equal(r.json.epoch, 2);
      assert.deepEqual(r.json.data, { v: 0 });
    }
    // Writes at b are local now; a forwards to b.
    const fb = await metric('b', 'edgelite_sessions_forwards_total');
    assert.equal((await sess.put(url('b'), 'mig', { data: { v: 1 } })).status, 200);
    assert.equal(await metric('b', 'edgelite_sessions_forwards_total'), fb);
    const w = await sess.patch(url('a'), 'mig', { w: 2 });
    assert.equal(w.status, 200, w.text);
    assert.equal(w.json.home, 'b');
    assert.deepEqual((await sess.get(url('b'), 'mig')).json.data, { v: 1, w: 2 });
  });

  test('no update is lost or doubled while the home moves', async () => {
    // Two writers at b, forwarded to the home a; b's accesses move the home to b while writes are in
    // flight, so some find the row moved (421) and are retried at b once the handover arrived there.
    const c = await sess.create(url('a'), { id: 'race', data: {} });
    assert.equal(c.status, 201, c.text);
    assert.ok(await waitGet('b', 'race'));
    const outA = await metric('a', 'edgelite_sessions_migrations_out_total');
    const N = 30;
    const writer = (region, prefix) => (async () => {
      const results = [];
      for (let i = 0; i < N; i++) {
        results.push(await sess.patch(url(region), 'race', { [`${prefix}${i}`]: i }));
      }
      return results;
    })();
    const [r1, r2] = await Promise.all([writer('b', 'x'), writer('b', 'y')]);
    for (const r of [...r1, ...r2]) assert.equal(r.status, 200, r.text);
    assert.ok(await cluster.waitFor(async () =>
      (await metric('a', 'edgelite_sessions_migrations_out_total')) === outA + 1, 10000, 50), 'it did not move');
    // After the move, a's writes are forwarded to b.
    const last = await sess.patch(url('a'), 'race', { z: 1 });
    assert.equal(last.status, 200, last.text);
    assert.equal(last.json.home, 'b');
    const outB = await metric('b', 'edgelite_sessions_migrations_out_total');
    // Wait until every region has applied every write (the same version vector in /v1/status), which
    // is no session access. Polling with GET would be one: every read at a or c is reported to the
    // home b, and three in a row from one region (migrate_after) move the home there while the test
    // waits for it to be b.
    const vvs = async () => Promise.all(['a', 'b', 'c'].map(async (id) =>
      JSON.stringify((await cluster.status(id))?.version_vector ?? null)));
    assert.ok(await cluster.waitFor(async () => new Set(await vvs()).size === 1, 10000, 30),
      `the regions never converged: ${await vvs()}`);
    // Then one read in each region: a's forwarded write and this read are two accesses from a, the
    // read at the home b starts the count again, c's read is one: nothing can move the home.
    const want = { z: 1 };
    for (let i = 0; i < N; i++) { want[`x${i}`] = i; want[`y${i}`] = i; }
    for (const id of ['a', 'b', 'c']) {
      const r = await sess.get(url(id), 'race');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.version, 2 * N + 2);
      assert.equal(r.json.home, 'b');
      assert.deepEqual(r.json.data, want);
    }
    // The handover to b was the only migration, also once these reads' reports reached b.
    await sleep(300);
    assert.equal(await metric('a', 'edgelite_sessions_migrations_out_total'), outA + 1);
    assert.equal(await metric('b', 'edgelite_sessions_migrations_out_total'), outB);
    // Every version was taken exactly once.
    const versions = [...r1, ...r2, last].map((r) => r.json.version).sort((x, y) => x - y);
    assert.deepEqual(versions, Array.from({ length: 2 * N + 1 }, (_, i) => i + 2));
  });

  test('a target region at capacity refuses the migration, counted by reason', async () => {
    // c may be home of one session: give it one, then draw another toward it.
    const own = await sess.create(url('c'), { id: 'cap-own', data: {} });
    assert.equal(own.status, 201, own.text);
    const c = await sess.create(url('a'), { id: 'cap', data: { x: 1 } });
    assert.equal(c.status, 201, c.text);
    assert.ok(await waitGet('c', 'cap-own'));
    const r0 = await metric('a', 'edgelite_sessions_migrations_refused_total{reason="capacity"}');
    assert.ok(await waitGet('c', 'cap'));
    for (let i = 0; i < 2; i++) assert.equal((await sess.get(url('c'), 'cap')).status, 200);
    assert.ok(await cluster.waitFor(async () =>
      (await metric('a', 'edgelite_sessions_migrations_refused_total{reason="capacity"}')) === r0 + 1, 10000, 50),
    'no refusal counted');
    const s = await sess.stats(url('a'));
    assert.equal(s.migrations.refused.capacity, r0 + 1);
    assert.equal((await sess.get(url('a'), 'cap')).json.home, 'a');
    await sleep(300);
    assert.equal((await sess.get(url('c'), 'cap')).json.home, 'a');
  });

  test('no session plaintext in any database file or on the wire between regions', async () => {
    const marker = 'Zebra-Plaintext-7f3a9c';
    const control = 'Control-Plaintext-51d2e8';
    const c = await sess.create(url('a'), { id: 'secret', data: { note: marker.repeat(3) } });
    assert.equal(c.status, 201, c.text);
    assert.ok(await waitGet('b', 'secret'));
    assert.equal((await sess.put(url('b'), 'secret', { data: { note: marker, v: 2 } })).status, 200);
    // The control: the same path for a user table's row, which is not encrypted, must show up.
    await cluster.createTable('plain_t', 'CREATE TABLE plain_t (id INTEGER PRIMARY KEY, v TEXT)');
    const w = await cluster.sql('a', 'INSERT INTO plain_t (id, v) VALUES (1, ?)', [control]);
    assert.ok(w.ok, JSON.stringify(w.error));
    for (const id of ['a', 'b', 'c']) {
      assert.ok(await waitGet(id, 'secret', (x) => x.status === 200 && x.json.version === 2));
      assert.ok(await cluster.waitFor(async () => (await cluster.rows(id, 'SELECT count(*) FROM plain_t'))[0][0] === 1));
    }
    const wire = Buffer.concat(proxies.map((px) => px.bytes()));
    assert.ok(wire.includes(control), 'the recording proxies saw the control row');
    assert.ok(!wire.includes(marker), 'session plaintext crossed the wire');
    let sawControl = false;
    for (const id of ['a', 'b', 'c']) {
      const dir = cluster.regions[id].dataDir;
      for (const f of fs.readdirSync(dir)) {
        if (!f.startsWith('edgelite.db')) continue;
        const bytes = fs.readFileSync(path.join(dir, f));
        if (bytes.includes(control)) sawControl = true;
        assert.ok(!bytes.includes(marker), `session plaintext in ${id}/${f}`);
      }
    }
    assert.ok(sawControl, 'the control row is in some database file');
  });

  test('home down: reads elsewhere are served and marked stale, writes fail clearly', async () => {
    const c = await sess.create(url('a'), { id: 'down', data: { k: 'v' } });
    assert.equal(c.status, 201, c.text);
    assert.ok(await waitGet('b', 'down'));
    await cluster.kill('a');
    const r = await waitGet('b', 'down', (x) => x.status === 200 && x.json.stale === true, 10000);
    assert.ok(r, 'never marked stale');
    assert.deepEqual(r.json.data, { k: 'v' });
    assert.equal(r.headers.get('x-edge-stale'), '1');
    const w = await sess.put(url('b'), 'down', { data: { k: 'w' } });
    assert.equal(w.status, 503, w.text);
    assert.equal(w.json.code, 'SESSION_HOME_UNREACHABLE');
    assert.equal(w.json.home, 'a');
    assert.match(w.json.error, /home region a/);
    // Nothing changed.
    assert.deepEqual((await sess.get(url('b'), 'down')).json.data, { k: 'v' });
    // Sessions homed elsewhere still take writes.
    const g = await sess.create(url('b'), { id: 'down-b', data: {} });
    assert.equal(g.status, 201, g.text);
    assert.equal((await sess.put(url('b'), 'down-b', { data: { ok: 1 } })).status, 200);
    await cluster.restart('a');
    const back = await cluster.waitFor(async () => {
      const x = await sess.put(url('b'), 'down', { data: { k: 'w' } });
      return x.status === 200 ? x : undefined;
    }, 15000, 200);
    assert.ok(back, 'writes did not resume after the home came back');
    assert.ok(await waitGet('b', 'down', (x) => x.status === 200 && x.json.stale === false));
  });
});
