// SPDX-License-Identifier: MIT
// Ed25519 (EdDSA) JWTs for the auth tests, made with node's crypto only.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A fresh Ed25519 key pair with the public key as PEM (SPKI) and as raw base64url (32 bytes). */
export function makeKeyPair() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const pem = publicKey.export({ type: 'spki', format: 'pem' });
  const der = publicKey.export({ type: 'spki', format: 'der' });
  // An Ed25519 SPKI is a fixed 12-byte prefix followed by the 32-byte key.
  const raw = der.subarray(der.length - 32);
  return { publicKey, privateKey, pem, rawB64url: b64url(raw) };
}

/** Write the public key to `dir/name` as PEM or raw base64url; returns the path. */
export function writeKey(dir, name, keys, form = 'pem') {
  const p = path.join(dir, name);
  fs.writeFileSync(p, form === 'pem' ? keys.pem : keys.rawB64url + '\n');
  return p;
}

/** Sign `claims` as a compact JWT. header overrides let tests forge bad tokens. */
export function signJwt(privateKey, claims = {}, header = { alg: 'EdDSA', typ: 'JWT' }) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const sig = crypto.sign(null, Buffer.from(input), privateKey);
  return `${input}.${b64url(sig)}`;
}

export const nowS = () => Math.floor(Date.now() / 1000);
