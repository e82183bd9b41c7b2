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
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { EDGE_BIN, freePort, sleep } from './lib/cluster.mjs';
import { tmpDir } from './lib/node.mjs';
import { httpsRequest, makeCa, makeServerCert } from './lib/tls.mjs';

const IDS = ['a', 'b', 'c', 'd']; // d: the region with a foreign certificate
let dir;
let ca;
let rogue;
const port = {};
const procs = {};
const errs = {};

function spawnRegion(id, config) {
  const proc = spawn(EDGE_BIN, ['serve', '--config', config, '--region', id, '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  procs[id] = proc;
  errs[id] = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { errs[id] = (errs[id] + d).slice(-64 * 1024); });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`region ${id}: not ready in 20 s\n${errs[id]}`)), 20000);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      out += d;
      if (/edgelite: listening on https:\/\//.test(out)) { clearTimeout(t); resolve(); }
    });
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`region ${id} exited ${code}\n${errs[id]}`)); });
  });
}

const url = (id) => `https://127.0.0.1:${port[id]}`;

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

async function status(id, trust = ca.cert) {
  const r = await httpsRequest(`${url(id)}/v1/status`, { ca: trust });
  assert.equal(r.status, 200);
  return r.json;
}

/** Poll fn until it returns a truthy value; bounded by count and time. */
async function until(what, fn, timeoutMs = 60000) {
  const t0 = Date.now();
  let last;
  for (let i = 0; i < 600 && Date.now() - t0 < timeoutMs; i++) {
    try { last = await fn(); } catch (e) { last = e; }
    if (last && !(last instanceof Error)) return last;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}

describe('TLS between regions', () => {
  before(async () => {
    dir = tmpDir('edgelite-tlspeers-');
    ca = makeCa(dir, 'ca');
    rogue = makeCa(dir, 'rogue');
    for (const id of IDS) {
      port[id] = await freePort();
      fs.mkdirSync(path.join(dir, `data-${id}`));
      makeServerCert(dir, id === 'd' ? rogue : ca, `region-${id}`);
    }
    const secret = crypto.randomBytes(12).toString('hex');
    const conf = (caFile) => `cluster: { name: tlspeers, secret: "${secret}", ca_file: ${caFile} }\nregions:\n` +
      IDS.map((id, i) => `  - { id: ${id}, listen: "127.0.0.1:${port[id]}", url: "${url(id)}", ` +
        `data_dir: "${path.join(dir, `data-${id}`)}", priority: ${i + 1}, ` +
        `tls_cert: region-${id}.crt, tls_key: region-${id}.key }\n`).join('') +
      'replication: { consistency_level: eventual, sync_interval_ms: 200 }\n';
    fs.writeFileSync(path.join(dir, 'cluster.yaml'), conf('ca.crt'));
    await spawnRegion('a', path.join(dir, 'cluster.yaml'));
    await sql('a', 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    await sql('a', "INSERT INTO t VALUES (1, 'from a')");
    // b and c start empty: they seed from a's snapshot over TLS.
    await spawnRegion('b', path.join(dir, 'cluster.yaml'));
    await spawnRegion('c', path.join(dir, 'cluster.yaml'));
    await spawnRegion('d', path.join(dir, 'cluster.yaml'));
  });

  after(async () => {
    for (const p of Object.values(procs)) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    await sleep(100);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

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
    for (const id of IDS) assert.equal(procs[id].exitCode, null, `region ${id} is still running`);
  });
});
