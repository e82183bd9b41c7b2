// SPDX-License-Identifier: MIT
// The front door's WebSocket path to https:// regions (issue 12): the door's WebSocket to a region
// speaks TLS, verified as its HTTP pools are (cluster.ca_file, the URL's host). The real
// @libsql/client over ws:// through the door reaches a TLS region; a region whose certificate
// names another host is refused and the session goes to the next region, with no request reaching
// it; a door that trusts another CA reaches no region and closes the session. The door's first
// probes wait (router.first_probe_delay_ms), so that the session itself meets the bad certificate:
// before, the probes could mark the region down first and the session never tried it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { EDGE_BIN, freePort, sleep } from './lib/cluster.mjs';
import { tmpDir } from './lib/node.mjs';
import { startRouter } from './lib/router.mjs';
import { httpsRequest, makeCa, makeServerCert } from './lib/tls.mjs';

const IDS = ['a', 'b'];
let dir;
let ca;
let rogue;
const port = {};
const procs = {};

function spawnRegion(id, config) {
  const proc = spawn(EDGE_BIN, ['serve', '--config', config, '--region', id, '--log-level', 'error'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  procs[id] = proc;
  let err = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err = (err + d).slice(-16384); });
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`region ${id}: not ready in 20 s\n${err}`)), 20000);
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      out += d;
      if (/edgelite: listening on https:\/\//.test(out)) { clearTimeout(t); resolve(); }
    });
    proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`region ${id} exited ${code}\n${err}`)); });
  });
}

const url = (id) => `https://127.0.0.1:${port[id]}`;

async function routerMetric(rurl, name) {
  const text = await (await fetch(rurl + '/metrics')).text();
  for (const line of text.split('\n')) if (line.startsWith(name + ' ')) return Number(line.slice(name.length + 1));
  return NaN;
}

async function wsSessions(rurl) {
  const text = await (await fetch(rurl + '/metrics')).text();
  const out = {};
  for (const m of text.matchAll(/edgelite_router_region_ws_sessions_total\{region="(\w+)"\} (\d+)/g)) out[m[1]] = Number(m[2]);
  return out;
}

describe('router_door_tls: WebSocket through the door to https:// regions', { timeout: 120000 }, () => {
  let secret;
  const routerConf = (caFile) => {
    const file = path.join(dir, `router-${path.basename(caFile)}.yaml`);
    fs.writeFileSync(file, `cluster: { name: doortls, secret: "${secret}", ca_file: ${caFile} }\nregions:\n` +
      IDS.map((id, i) => `  - { id: ${id}, url: "${url(id)}", priority: ${i + 1} }\n`).join('') +
      'router: { probe_interval_ms: 100, first_probe_delay_ms: 600000, request_timeout_ms: 5000, ' +
      'rtt_slack_ms: 0 }\n');
    return file;
  };
  before(async () => {
    dir = tmpDir('edgelite-doortls-');
    ca = makeCa(dir, 'ca');
    rogue = makeCa(dir, 'rogue');
    makeServerCert(dir, ca, 'region-a');
    makeServerCert(dir, ca, 'region-b', 'IP:127.0.0.2'); // the right CA, the wrong host
    for (const id of IDS) {
      port[id] = await freePort();
      fs.mkdirSync(path.join(dir, `data-${id}`));
    }
    secret = crypto.randomBytes(12).toString('hex');
    fs.writeFileSync(path.join(dir, 'cluster.yaml'),
      `cluster: { name: doortls, secret: "${secret}", ca_file: ca.crt }\nregions:\n` +
      IDS.map((id, i) => `  - { id: ${id}, listen: "127.0.0.1:${port[id]}", url: "${url(id)}", ` +
        `data_dir: "${path.join(dir, `data-${id}`)}", priority: ${i + 1}, ` +
        `tls_cert: region-${id}.crt, tls_key: region-${id}.key }\n`).join('') +
      'replication: { consistency_level: eventual, sync_interval_ms: 200 }\n');
    for (const id of IDS) await spawnRegion(id, path.join(dir, 'cluster.yaml'));
    const r = await httpsRequest(`${url('a')}/v2/pipeline`, { ca: ca.cert, method: 'POST',
      body: { requests: [{ type: 'execute', stmt: { sql: 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)' } },
        { type: 'close' }] } });
    assert.equal(r.status, 200, r.text);
  });
  after(async () => {
    for (const p of Object.values(procs)) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    await sleep(100);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('@libsql/client over ws:// reaches a TLS region; a certificate for another host is refused', async () => {
    const { createClient } = await import('@libsql/client');
    // b first: its certificate does not name 127.0.0.1, so the session goes to a
    const rt = await startRouter(routerConf('ca.crt'), ['--client-region', 'b']);
    try {
      const cl = createClient({ url: rt.url.replace('http://', 'ws://') });
      try {
        await cl.execute({ sql: 'INSERT INTO t (id, v) VALUES (?, ?)', args: [1, 'over tls'] });
        const rs = await cl.execute('SELECT v FROM t WHERE id = 1');
        assert.equal(rs.rows[0].v, 'over tls');
        const tx = await cl.transaction('write');
        await tx.execute("UPDATE t SET v = 'tx' WHERE id = 1");
        await tx.commit();
      } finally {
        cl.close();
      }
      assert.deepEqual(await wsSessions(rt.url), { a: 1, b: 0 });
      // the session did try b first (no probe had marked it down), and was refused by its certificate
      assert.equal(await routerMetric(rt.url, 'edgelite_router_ws_refused_retries_total'), 1);
      assert.match(rt.stderr(), /WebSocket to region b: TLS/);
      // and nothing of the session ran in b: its statements are none of the client's
      const st = await httpsRequest(`${url('b')}/v1/stats/statements?limit=1000`, { ca: ca.cert, anyHost: true });
      assert.equal(st.status, 200, st.text);
      assert.deepEqual(st.json.statements.filter((x) => /\bt\b/.test(x.query)), [], st.text);
    } finally {
      rt.proc.kill('SIGKILL');
    }
  });

  test('a door trusting another CA reaches no region over WebSocket', async () => {
    const { createClient } = await import('@libsql/client');
    const rt = await startRouter(routerConf('rogue.crt'), ['--client-region', 'a']);
    try {
      const cl = createClient({ url: rt.url.replace('http://', 'ws://') });
      try {
        await assert.rejects(cl.execute('SELECT 1'));
      } finally {
        cl.close();
      }
      assert.deepEqual(await wsSessions(rt.url), { a: 0, b: 0 });
      assert.equal(await routerMetric(rt.url, 'edgelite_router_ws_refused_retries_total'), 2); // both tried
    } finally {
      rt.proc.kill('SIGKILL');
    }
  });
});
