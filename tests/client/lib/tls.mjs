// SPDX-License-Identifier: MIT
// TLS test material made at test time with the openssl CLI: a CA, server certificates it signs for
// 127.0.0.1 (an IP SAN), and a second, unrelated CA with its own server certificate (a region the
// cluster must refuse). Plus an https/wss-capable JSON request helper that trusts a given CA.

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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
 * connection or TLS failure. Bounded by timeoutMs.
 */
export function httpsRequest(url, { ca, method = 'GET', body, headers = {}, timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = https.request(url, {
      method, ca: ca ? fs.readFileSync(ca) : undefined, agent: false, timeout: timeoutMs,
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
