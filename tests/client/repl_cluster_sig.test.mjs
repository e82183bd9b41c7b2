// SPDX-License-Identifier: MIT
// Signed requests between regions (issue 9; docs/internals/peer-protocol.md, "Signed requests"):
// - the session access reports, broadcast relays and the router's read index that region c sends
//   to a and b carry X-Edge-Cluster-Sig, and no byte c sends to them holds the cluster secret
//   (every byte is recorded by a proxy standing in for the link);
// - a captured request replayed, its body altered, sent to another region, signed with another
//   secret or outside the clock window, or one with no signature: 401 AUTH_CLUSTER with a JSON body,
//   and nothing changes (no access counted, no broadcast delivered);
// - X-Edge-Cluster-Secret, even with the right secret, opens none of them (nor /v1/status).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { sleep, startCluster } from './lib/cluster.mjs';
import { send, sign } from './lib/cluster_auth.mjs';
import { closeAll, peerUrlVia, recordingProxy } from './lib/proxy.mjs';
import { openRt } from './lib/rt.mjs';
import { sess, writeKeyFile } from './lib/sessions.mjs';

describe('repl_cluster_sig', { timeout: 180000 }, () => {
  let c;
  let keyDir;
  const rec = {};
  const captured = {};
  before(async () => {
    keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edgelite-sig-'));
    const { file } = writeKeyFile(keyDir, [1]);
    c = await startCluster({
      regions: 3,
      tables: { acct: 'strong' },
      // migrate_after high: the accesses are counted, never acted upon, in this test
      sessions: { key_file: file, migrate_after: 1000, touch_interval_ms: 50 },
      // everything c sends to a and b is recorded
      peerUrl: peerUrlVia('c', rec, recordingProxy),
    });
    await c.createTable('acct', 'CREATE TABLE IF NOT EXISTS acct (id INTEGER PRIMARY KEY, bal INTEGER)');
    assert.ok(await c.waitLinked(), 'the peer links never all came up');
  });
  after(async () => {
    if (c) await c.destroy();
    await closeAll(rec);
    if (keyDir) fs.rmSync(keyDir, { recursive: true, force: true });
  });

  test('access reports, broadcast relays and the read index are signed; the secret never crosses', async () => {
    // an access report: a session homed at a, read at c
    assert.equal((await sess.create(c.url('a'), { id: 'sig1', data: { v: 1 } })).status, 201);
    assert.ok(await c.waitFor(async () => (await sess.get(c.url('c'), 'sig1')).status === 200, 10000, 100));
    assert.ok(await c.waitFor(async () =>
      (await c.metric('a', 'edgelite_sessions_access_reports_received_total')) >= 1, 10000, 50),
    'a never counted c\'s access');
    // a broadcast relay: published at c, delivered at b
    const sub = await openRt(c.url('b'));
    sub.send({ type: 'join', id: 1, channel: 'room-sig' });
    assert.equal((await sub.next()).type, 'joined');
    const pub = await send(c.url('c'), 'POST', '/v1/broadcast/room-sig', {}, JSON.stringify({ payload: { n: 1 } }));
    assert.equal(pub.status, 200, pub.text);
    assert.deepEqual((await sub.waitFor((x) => x.type === 'broadcast', 10000)).payload, { n: 1 });
    await sub.close();
    // the read index: a strong read at c asks the primary a for its commit point
    const ri0 = await c.metric('c', 'edgelite_router_read_index_total');
    const s = await c.sql('c', 'SELECT count(*) FROM acct', [], { 'X-Edge-Consistency': 'strong' });
    assert.equal(s.status, 200, s.text);
    assert.equal(await c.metric('c', 'edgelite_router_read_index_total'), ri0 + 1);

    const sigRe = /^region=c ts=\d+ nonce=[0-9a-f]{64} mac=[0-9a-f]{64}$/;
    const find = (id, method, prefix) => rec[id].requests.find((r) => r.method === method && r.target.startsWith(prefix));
    captured.report = find('a', 'POST', '/v1/_sessions/access');
    captured.relay = find('b', 'POST', '/v1/broadcast-relay/room-sig');
    captured.point = find('a', 'GET', '/v1/router/point');
    for (const [what, r] of Object.entries(captured)) {
      assert.ok(r, `c sent no ${what} request`);
      assert.match(r.headers['x-edge-cluster-sig'] ?? '', sigRe, `${what}: no signature`);
      assert.equal(r.headers['x-edge-cluster-secret'], undefined, `${what}: carries X-Edge-Cluster-Secret`);
    }
    const sent = Buffer.concat([rec.a.sent(), rec.b.sent()]);
    assert.ok(!sent.includes(Buffer.from(c.secret)), 'the cluster secret crossed the wire');
    assert.ok(!/x-edge-cluster-secret/i.test(sent.toString('latin1')), 'a request carried X-Edge-Cluster-Secret');
    assert.ok((await c.metric('a', 'edgelite_cluster_sig_accepted_total')) >= 2);
    assert.ok((await c.metric('b', 'edgelite_cluster_sig_accepted_total')) >= 1);
  });

  test('replayed, altered, misdirected, forged, stale and unsigned requests are 401 and change nothing', async () => {
    assert.ok(captured.report && captured.relay && captured.point, 'the first test captured nothing');
    const reports0 = await c.metric('a', 'edgelite_sessions_access_reports_received_total');
    const replayed0 = await c.metric('a', 'edgelite_cluster_sig_replayed_total');
    const sub = await openRt(c.url('b'));
    sub.send({ type: 'join', id: 1, channel: 'room-sig' });
    assert.equal((await sub.next()).type, 'joined');
    const sig = (r) => ({ 'x-edge-cluster-sig': r.headers['x-edge-cluster-sig'] });
    const rep = captured.report;
    const body = JSON.parse(rep.body.toString());
    const fresh = (o) => sign({ secret: c.secret, cluster: c.name, from: 'c', to: 'a', method: 'POST',
      path: '/v1/_sessions/access', body: rep.body, ...o });
    const cases = [
      ['the report replayed', c.url('a'), 'POST', rep.target, sig(rep), rep.body, /replayed/],
      ['the report with its ids altered', c.url('a'), 'POST', rep.target, sig(rep),
        JSON.stringify({ ...body, ids: [...body.ids, 'sig1', 'sig1'] }), /wrong MAC/],
      ['the relay replayed', c.url('b'), 'POST', captured.relay.target, sig(captured.relay), captured.relay.body,
        /replayed/],
      ['the relay with another payload', c.url('b'), 'POST', captured.relay.target, sig(captured.relay),
        '{"n":666}', /wrong MAC/],
      ['the relay to another channel', c.url('b'), 'POST', '/v1/broadcast-relay/room-other', sig(captured.relay),
        captured.relay.body, /wrong MAC/],
      ['the relay sent to a, not b', c.url('a'), 'POST', captured.relay.target, sig(captured.relay),
        captured.relay.body, /wrong MAC/],
      ['the read index replayed', c.url('a'), 'GET', captured.point.target, sig(captured.point), null, /replayed/],
      ['a report signed with another secret', c.url('a'), 'POST', rep.target,
        { 'x-edge-cluster-sig': fresh({ secret: 'not-the-secret' }) }, rep.body, /wrong MAC/],
      ['a report signed a minute ago', c.url('a'), 'POST', rep.target,
        { 'x-edge-cluster-sig': fresh({ ts: Date.now() - 60000 }) }, rep.body, /clock window/],
      ['a report signed as a itself', c.url('a'), 'POST', rep.target,
        { 'x-edge-cluster-sig': fresh({ from: 'a' }) }, rep.body, /not another region/],
      ['a malformed signature', c.url('a'), 'POST', rep.target, { 'x-edge-cluster-sig': 'region=c ts=x' }, rep.body,
        /malformed/],
      ['an unsigned report', c.url('a'), 'POST', rep.target, {}, rep.body, /no X-Edge-Cluster-Sig/],
      ['an unsigned relay', c.url('b'), 'POST', captured.relay.target, {}, captured.relay.body,
        /no X-Edge-Cluster-Sig/],
    ];
    for (const secretRoute of [['a', 'POST', rep.target, rep.body], ['b', 'POST', captured.relay.target, '{}'],
      ['a', 'GET', '/v1/router/point', null], ['a', 'GET', '/v1/status', null]]) {
      const [id, method, target, b] = secretRoute;
      cases.push([`X-Edge-Cluster-Secret on ${method} ${target}`, c.url(id), method, target,
        { 'x-edge-cluster-secret': c.secret }, b, /X-Edge-Cluster-Secret is not accepted/]);
    }
    for (const [label, base, method, target, headers, b, why] of cases) {
      const r = await send(base, method, target, headers, b);
      assert.equal(r.status, 401, `${label}: ${r.status} ${r.text}`);
      assert.equal(r.json?.code, 'AUTH_CLUSTER', `${label}: ${r.text}`);
      assert.match(r.json?.message ?? r.json?.error ?? '', why, `${label}: ${r.text}`);
    }
    await sleep(300); // a report or relay let in would be counted or delivered by now
    assert.equal(await c.metric('a', 'edgelite_sessions_access_reports_received_total'), reports0,
      'a refused request was counted as an access');
    await assert.rejects(sub.waitFor((x) => x.type === 'broadcast', 300), undefined, 'a refused relay was delivered');
    assert.ok((await c.metric('a', 'edgelite_cluster_sig_replayed_total')) >= replayed0 + 2);

    // the same request freshly signed (as c would) is let in once, and only once
    const h = { 'x-edge-cluster-sig': fresh({}) };
    const ok = await send(c.url('a'), 'POST', rep.target, h, rep.body);
    assert.equal(ok.status, 200, ok.text);
    assert.ok(await c.waitFor(async () =>
      (await c.metric('a', 'edgelite_sessions_access_reports_received_total')) > reports0, 5000, 50));
    assert.equal((await send(c.url('a'), 'POST', rep.target, h, rep.body)).status, 401);
    const relayOk = await send(c.url('b'), 'POST', '/v1/broadcast-relay/room-sig', {
      'x-edge-cluster-sig': sign({ secret: c.secret, cluster: c.name, from: 'a', to: 'b', method: 'POST',
        path: '/v1/broadcast-relay/room-sig', body: Buffer.from('"signed"') }),
    }, '"signed"');
    assert.equal(relayOk.status, 200, relayOk.text);
    assert.equal((await sub.waitFor((x) => x.type === 'broadcast', 5000)).payload, 'signed');
    await sub.close();
  });
});
