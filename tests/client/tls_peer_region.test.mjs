// SPDX-License-Identifier: MIT
// Certificates bound to regions (issue 9; docs/security.md, "A network attacker"): with mutual TLS
// (cluster.ca_file), a client certificate valid under the cluster's CA but naming region b
// (DNS SAN "b") cannot open a peer link as region d: a and b refuse it with CERT_REGION (visible in
// d's /v1/status), and none of d's updates is applied there, while a and b, whose certificates name
// themselves, link and converge.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { EDGE_BIN, freePort, sleep } from './lib/cluster.mjs';
import { tmpDir } from './lib/node.mjs';
import { httpsRequest, makeCa, makeServerCert } from './lib/tls.mjs';

const IDS = ['a', 'b', 'd']; // d runs with b's certificate
let dir;
let ca;
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

async function status(id) {
  const r = await httpsRequest(`${url(id)}/v1/status`, { ca: ca.cert });
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

const inc = (id, name) => httpsRequest(`${url(id)}/v1/crdt/${name}`, {
  ca: ca.cert, method: 'POST', body: { type: 'g-counter', op: 'increment', amount: 5 },
});

describe('TLS certificates bound to regions', () => {
  before(async () => {
    dir = tmpDir('edgelite-tlsregion-');
    ca = makeCa(dir, 'ca');
    for (const id of IDS) {
      port[id] = await freePort();
      fs.mkdirSync(path.join(dir, `data-${id}`));
    }
    makeServerCert(dir, ca, 'region-a', 'IP:127.0.0.1,DNS:a');
    makeServerCert(dir, ca, 'region-b', 'IP:127.0.0.1,DNS:b');
    const certOf = { a: 'region-a', b: 'region-b', d: 'region-b' };
    const secret = crypto.randomBytes(12).toString('hex');
    const conf = `cluster: { name: tlsregion, secret: "${secret}", ca_file: ca.crt }\nregions:\n` +
      IDS.map((id, i) => `  - { id: ${id}, listen: "127.0.0.1:${port[id]}", url: "${url(id)}", ` +
        `data_dir: "${path.join(dir, `data-${id}`)}", priority: ${i + 1}, ` +
        `tls_cert: ${certOf[id]}.crt, tls_key: ${certOf[id]}.key }\n`).join('') +
      'replication: { consistency_level: eventual, sync_interval_ms: 200 }\n';
    fs.writeFileSync(path.join(dir, 'cluster.yaml'), conf);
    for (const id of IDS) await spawnRegion(id, path.join(dir, 'cluster.yaml'));
  });

  after(async () => {
    for (const p of Object.values(procs)) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    await sleep(100);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test("a certificate of region b cannot link as region d", async () => {
    // d's links to a and b are refused for its certificate
    const dst = await until("d's links refused by a and b", async () => {
      const st = await status('d');
      const bad = st.peers.filter((x) => !x.connected && /CERT_REGION/.test(x.last_error ?? ''));
      return bad.length === 2 ? st : null;
    });
    assert.ok(dst.peers.every((p) => !p.connected));
    // a and b link to each other; an update of a reaches b, one of d reaches neither
    assert.equal((await inc('d', 'from_d')).status, 200);
    assert.equal((await inc('a', 'from_a')).status, 200);
    await until("a's counter in b", async () => {
      const r = await httpsRequest(`${url('b')}/v1/crdt/from_a`, { ca: ca.cert });
      return r.status === 200 && Number(r.json.value) === 5;
    });
    await sleep(500);
    for (const id of ['a', 'b']) {
      const r = await httpsRequest(`${url(id)}/v1/crdt/from_d`, { ca: ca.cert });
      assert.ok(r.status === 404 || Number(r.json?.value) === 0, `${id} has d's update: ${r.status} ${r.text}`);
      assert.ok(!(await status(id)).version_vector.d, `${id} applied entries of d`);
    }
    assert.match(errs.a + errs.b, /peer link claiming region d refused: its certificate is not d's/);
    for (const id of IDS) assert.equal(procs[id].exitCode, null, `region ${id} is still running`);
  });
});
