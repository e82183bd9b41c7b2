// SPDX-License-Identifier: MIT
// TLS test material made at test time with the openssl CLI: a CA, server certificates it signs for
// 127.0.0.1 (an IP SAN), and a second, unrelated CA with its own server certificate (a region the
// cluster must refuse). Plus an https/wss-capable JSON request helper that trusts a given CA, and
// the regions of one cluster serving TLS (tlsRegions) for the tests of TLS between regions.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { EDGE_BIN, freePort, sleep } from './cluster.mjs';
import { tmpDir } from './node.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'], timeout: 30000 });
}

/** A CA (`<name>.crt`, `<name>.key`) in dir. Returns { cert, key } paths. */
export function makeCa(dir, name = 'ca') {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=edgelite test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
}

/** A server certificate `<name>.crt`/`<name>.key` signed by ca, for the given SAN (default IP:127.0.0.1). */
export function makeServerCert(dir, ca, name = 'server', san = 'IP:127.0.0.1') {
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
  fs.writeFileSync(path.join(dir, `${name}.ext`),
    `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial',
    '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`], dir);
  return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
}

/**
 * One HTTPS request trusting `ca` (a PEM file). Resolves { status, text, json } or rejects on a
 * connection or TLS failure. Bounded by timeoutMs. anyHost: the certificate need not name the
 * URL's host (to ask a region whose certificate is for another host what it ran).
 */
export function httpsRequest(url, { ca, method = 'GET', body, headers = {}, timeoutMs = 15000,
  anyHost = false } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = https.request(url, {
      method, ca: ca ? fs.readFileSync(ca) : undefined, agent: false, timeout: timeoutMs,
      ...(anyHost ? { checkServerIdentity: () => undefined } : {}),
      headers: { ...(data !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}), ...headers },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms: ${method} ${url}`)));
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

/**
 * Run lib/tls_client.mjs in a child node process (NODE_EXTRA_CA_CERTS is only read at start-up),
 * with env (e.g. { NODE_EXTRA_CA_CERTS: ca }). The child prints one JSON line; resolves it parsed.
 */
export function runClientChild(args, env = {}, timeoutMs = 60000) {
  return new Promise((resolve, reject) => {
    const childEnv = { ...process.env, ...env };
    if (!('NODE_EXTRA_CA_CERTS' in env)) delete childEnv.NODE_EXTRA_CA_CERTS;
    const proc = spawn(process.execPath, [path.join(here, 'tls_client.mjs'), ...args],
      { cwd: path.resolve(here, '..'), env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d) => { out += d; });
    proc.stderr.on('data', (d) => { err += d; });
    const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.once('error', (e) => { clearTimeout(t); reject(e); });
    proc.once('close', (code, signal) => {
      clearTimeout(t);
      const line = out.trim().split('\n').pop();
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`client child: code ${code} signal ${signal}\nstdout: ${out}\nstderr: ${err}`));
      }
    });
  });
}

/** Poll fn until it returns a truthy value (a throw counts as not yet); bounded by count and time. */
export async function until(what, fn, timeoutMs = 60000) {
  const t0 = Date.now();
  let last;
  for (let i = 0; i < 600 && Date.now() - t0 < timeoutMs; i++) {
    try { last = await fn(); } catch (e) { last = e; }
    if (last && !(last instanceof Error)) return last;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
}

/**
 * The regions `ids` of one cluster, each serving TLS: a fresh directory (prefix) holding the cluster's
 * CA (`ca`, ca.crt), a free port and a data directory per region. Nothing runs until spawn.
 * - writeConfig(name, certOf): writes cluster.yaml (cluster.ca_file ca.crt, every region's
 *   tls_cert/tls_key `${certOf(id)}.crt/.key` in the directory, eventual consistency);
 * - spawn(id): starts that region, resolves once it listens on https:// (20 s at most);
 * - status(id, trust = ca.cert): its /v1/status (asserts 200);
 * - stop(): SIGKILLs every region still running and removes the directory.
 * procs[id] is the child process, errs[id] the last 64 KiB of its stderr.
 */
export async function tlsRegions(prefix, ids) {
  const r = { ids, dir: tmpDir(prefix), port: {}, procs: {}, errs: {} };
  r.ca = makeCa(r.dir, 'ca');
  for (const id of ids) {
    r.port[id] = await freePort();
    fs.mkdirSync(path.join(r.dir, `data-${id}`));
  }
  r.config = path.join(r.dir, 'cluster.yaml');
  r.url = (id) => `https://127.0.0.1:${r.port[id]}`;
  r.writeConfig = (name, certOf) => {
    const secret = crypto.randomBytes(12).toString('hex');
    const conf = `cluster: { name: ${name}, secret: "${secret}", ca_file: ca.crt }\nregions:\n` +
      ids.map((id, i) => `  - { id: ${id}, listen: "127.0.0.1:${r.port[id]}", url: "${r.url(id)}", ` +
        `data_dir: "${path.join(r.dir, `data-${id}`)}", priority: ${i + 1}, ` +
        `tls_cert: ${certOf(id)}.crt, tls_key: ${certOf(id)}.key }\n`).join('') +
      'replication: { consistency_level: eventual, sync_interval_ms: 200 }\n';
    fs.writeFileSync(r.config, conf);
  };
  r.spawn = (id) => {
    const proc = spawn(EDGE_BIN, ['serve', '--config', r.config, '--region', id, '--log-level', 'warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    r.procs[id] = proc;
    r.errs[id] = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => { r.errs[id] = (r.errs[id] + d).slice(-64 * 1024); });
    return new Promise((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`region ${id}: not ready in 20 s\n${r.errs[id]}`)), 20000);
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (d) => {
        out += d;
        if (/edgelite: listening on https:\/\//.test(out)) { clearTimeout(t); resolve(); }
      });
      proc.once('exit', (code) => { clearTimeout(t); reject(new Error(`region ${id} exited ${code}\n${r.errs[id]}`)); });
    });
  };
  r.status = async (id, trust = r.ca.cert) => {
    const res = await httpsRequest(`${r.url(id)}/v1/status`, { ca: trust });
    assert.equal(res.status, 200);
    return res.json;
  };
  r.stop = async () => {
    for (const p of Object.values(r.procs)) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    await sleep(100);
    fs.rmSync(r.dir, { recursive: true, force: true });
  };
  return r;
}
