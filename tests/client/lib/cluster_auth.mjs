// SPDX-License-Identifier: MIT
// The caller's side of X-Edge-Cluster-Auth (challenge-response between regions), as repl/http_auth.c
// does it (repl/proto.h gives the MACs' layout), for the tests that make or check such requests.

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
