// SPDX-License-Identifier: MIT
// The caller's side of X-Edge-Cluster-Auth (challenge-response between regions) and of X-Edge-Cluster-Sig
// (signed requests), as repl/http_auth.c does it (repl/proto.h gives the MACs' layout), for the tests
// that make, replay or alter such requests.

import crypto from 'node:crypto';

/** The separator byte of the MAC inputs. */
export const z = Buffer.from([0]);

/** HMAC-SHA256 under SHA-256(secret) of parts (strings or Buffers) concatenated. */
export const hmac = (secret, parts) => crypto.createHmac('sha256', crypto.createHash('sha256').update(secret).digest())
  .update(Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)))).digest();

/** GET /v1/cluster/challenge with a fresh (or the given) cnonce: { status, body, cnonce }. */
export async function challenge(base, cnonce = crypto.randomBytes(32)) {
  const res = await fetch(`${base}/v1/cluster/challenge?cnonce=${cnonce.toString('hex')}`,
    { signal: AbortSignal.timeout(5000) });
  const body = await res.json();
  return { status: res.status, body, cnonce };
}

/** The X-Edge-Cluster-Auth value for one request of `region` on the challenge's nonce. */
export function authHeader({ secret, cluster, region, nonceHex, cnonce, method, path }) {
  const ns = Buffer.from(nonceHex, 'hex');
  const mac = hmac(secret, ['edgelite-http1 request', z, ns, cnonce, cluster, z, region, z, method, z, path, z]);
  return `region=${region} nonce=${nonceHex} cnonce=${cnonce.toString('hex')} mac=${mac.toString('hex')}`;
}

/** X-Edge-Cluster-Sig for one request of region `from` to region `to` (a fresh nonce unless given). */
export function sign({ secret, cluster, from, to, method, path: p, query = '', body = Buffer.alloc(0), ts = Date.now(),
  nonce = crypto.randomBytes(32) }) {
  const tsb = Buffer.alloc(8);
  tsb.writeBigUInt64BE(BigInt(ts));
  const mac = hmac(secret, ['edgelite-http1 signed', z, cluster, z, from, z, to, z, method, z, p, z, query, z, tsb,
    nonce, crypto.createHash('sha256').update(body).digest()]);
  return `region=${from} ts=${ts} nonce=${nonce.toString('hex')} mac=${mac.toString('hex')}`;
}

/** One request (no body for GET), 10 s at most: { status, json (null if not JSON), text }. */
export async function send(base, method, target, headers, body) {
  const res = await fetch(base + target, { method, headers, body: method === 'GET' ? undefined : body,
    signal: AbortSignal.timeout(10000) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text };
}
