// SPDX-License-Identifier: MIT
// TLS between regions (issue 9 item 3): region URLs are https://, every region serves TLS with a
// certificate of the cluster's CA (cluster.ca_file), and the peer links (WebSocket), seeding and
// status checks speak TLS and verify the peer's certificate and its IP SAN; a region proves itself
// to its peers with its certificate as a client certificate. Three regions converge. A fourth region
// holding the secret and trusting the right CA, but whose own certificate another CA signed, is
// refused both ways: its peers' links to it fail the certificate check, its links to them are
// refused for its client certificate (both visible in /v1/status), and none of its updates is
// applied elsewhere (nor theirs there). A peer link without a client certificate gets 403.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { httpsRequest, makeCa, makeServerCert, tlsRegions, until } from './lib/tls.mjs';

const IDS = ['a', 'b', 'c', 'd']; // d: the region with a foreign certificate
let tr;
let ca;
let rogue;

const url = (id) => tr.url(id);
const status = (id, trust) => tr.status(id, trust);

async function sql(id, sqlText, trust = ca.cert) {
  const r = await httpsRequest(`${url(id)}/v2/pipeline`, {
    ca: trust, method: 'POST',
    body: { requests: [{ type: 'execute', stmt: { sql: sqlText } }, { type: 'close' }] },
  });
  assert.equal(r.status, 200, `${id}: ${sqlText}: ${r.text}`);
  const res = r.json.results[0];
  assert.equal(res.type, 'ok', `${id}: ${sqlText}: ${JSON.stringify(res)}`);
  return res.response.result.rows.map((row) => row.map((v) => v.value));
}

describe('TLS between regions', () => {
  before(async () => {
    tr = await tlsRegions('edgelite-tlspeers-', IDS);
    ca = tr.ca;
    rogue = makeCa(tr.dir, 'rogue');
    for (const id of IDS) makeServerCert(tr.dir, id === 'd' ? rogue : ca, `region-${id}`);
    tr.writeConfig('tlspeers', (id) => `region-${id}`);
    await tr.spawn('a');
    await sql('a', 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    await sql('a', "INSERT INTO t VALUES (1, 'from a')");
    // b and c start empty: they seed from a's snapshot over TLS.
    await tr.spawn('b');
    await tr.spawn('c');
    await tr.spawn('d');
  });

  after(async () => { if (tr) await tr.stop(); });

  test('three regions over https:// connect and converge', async () => {
    for (const id of ['a', 'b', 'c']) {
      await until(`${id}'s links to the other two`, async () => {
        const st = await status(id);
        const up = st.peers.filter((p) => p.region !== 'd' && p.connected);
        return up.length === 2 ? st : null;
      });
    }
    await until('table t in b and c', async () => {
      for (const id of ['b', 'c']) {
        const r = await sql(id, "SELECT count(*) FROM sqlite_master WHERE name = 't'");
        if (r[0][0] !== '1') return null;
      }
      return true;
    });
    await sql('b', "INSERT INTO t VALUES (2, 'from b')");
    await sql('c', "INSERT INTO t VALUES (3, 'from c')");
    const want = JSON.stringify([['1', 'from a'], ['2', 'from b'], ['3', 'from c']]);
    for (const id of ['a', 'b', 'c']) {
      await until(`every row in ${id}`, async () =>
        JSON.stringify(await sql(id, 'SELECT id, v FROM t ORDER BY id')) === want);
    }
  });

  test('a region with a certificate of another CA is refused both ways', async () => {
    // Its peers' links to it fail the certificate check, and say so in /v1/status.
    for (const id of ['a', 'b', 'c']) {
      const link = await until(`${id}'s link to d failing on its certificate`, async () => {
        const p = (await status(id)).peers.find((x) => x.region === 'd');
        return p && !p.connected && /certificate/i.test(p.last_error ?? '') ? p : null;
      });
      assert.equal(link.connected, false);
    }
    // d trusts their certificates, but they refuse its client certificate.
    const dst = await until("d's links refused by a, b, c", async () => {
      const st = await status('d', rogue.cert);
      const bad = st.peers.filter((x) => !x.connected && /certificate|alert|unknown ca/i.test(x.last_error ?? ''));
      return bad.length === 3 ? st : null;
    });
    assert.ok(dst.peers.every((p) => !p.connected));
    // d was never seeded from them (its snapshot request was refused too), and its DDL, forwarded
    // to the primary a over the same verified TLS, is refused.
    assert.deepEqual(await sql('d', "SELECT count(*) FROM sqlite_master WHERE name = 't'", rogue.cert), [['0']]);
    const ddl = await httpsRequest(`${url('d')}/v2/pipeline`, {
      ca: rogue.cert, method: 'POST',
      body: { requests: [{ type: 'execute', stmt: { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY)' } }] },
    });
    assert.equal(ddl.status, 503, ddl.text);
    assert.ok(['PRIMARY_UNREACHABLE', 'STRONG_NEEDS_PRIMARY'].includes(ddl.json.code), ddl.text);
    // An update made in d (a CRDT counter: it replicates like rows, as log entries) never reaches the
    // others, while one made in a after it reaches b and c.
    const inc = (id, name, trust) => httpsRequest(`${url(id)}/v1/crdt/${name}`, {
      ca: trust, method: 'POST', body: { type: 'g-counter', op: 'increment', amount: 5 },
    });
    assert.equal((await inc('d', 'from_d', rogue.cert)).status, 200);
    assert.equal((await inc('a', 'from_a', ca.cert)).status, 200);
    await until("a's counter in b and c", async () => {
      for (const id of ['b', 'c']) {
        const r = await httpsRequest(`${url(id)}/v1/crdt/from_a`, { ca: ca.cert });
        if (r.status !== 200 || Number(r.json.value) !== 5) return null;
      }
      return true;
    });
    for (const id of ['a', 'b', 'c']) {
      const r = await httpsRequest(`${url(id)}/v1/crdt/from_d`, { ca: ca.cert });
      assert.ok(r.status === 404 || Number(r.json?.value) === 0, `${id} has d's update: ${r.status} ${r.text}`);
      const vv = (await status(id)).version_vector;
      assert.ok(!vv.d, `${id} applied entries of d: ${JSON.stringify(vv)}`);
      assert.deepEqual(await sql(id, 'SELECT count(*) FROM t'), [['3']]);
    }
    const mine = await httpsRequest(`${url('d')}/v1/crdt/from_d`, { ca: rogue.cert });
    assert.equal(Number(mine.json.value), 5);
    // A peer link without any client certificate is refused before the peer handshake.
    const up = await httpsRequest(`${url('a')}/v1/peer`, {
      ca: ca.cert,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13',
        'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'sec-websocket-protocol': 'edgelite-peer1', 'x-edge-region': 'b' },
    });
    assert.equal(up.status, 403, up.text);
    assert.equal(up.json.code, 'PEER_CERT_REQUIRED');
    for (const id of IDS) assert.equal(tr.procs[id].exitCode, null, `region ${id} is still running`);
  });
});
