// SPDX-License-Identifier: MIT
// The peer protocol's wire primitives for tests that speak it by hand
// (src/repl/proto.h, docs/internals/peer-protocol.md): unsigned varints and
// length-prefixed strings.
export function uvarint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}

// [value, offset after it]; throws on a varint longer than 10 bytes or cut short.
export function readUvarint(buf, off) {
  let v = 0;
  let shift = 0;
  for (let i = 0; i < 10 && off < buf.length; i++) {
    const b = buf[off++];
    v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(b & 0x80)) return [v, off];
  }
  throw new Error('bad varint');
}

export const str = (s) => Buffer.concat([uvarint(Buffer.byteLength(s)), Buffer.from(s)]);
