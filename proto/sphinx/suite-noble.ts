import { x25519 } from '@noble/curves/ed25519.js';
import { chacha20 } from '@noble/ciphers/chacha.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { shake256 } from '@noble/hashes/sha3.js';
import { randomBytes } from '@noble/hashes/utils.js';
import { type PreparedPoint, type PreparedScalar, type SphinxSuite } from './suite.ts';

/** Pure-JS suite (@noble): slower, but runs wherever there is no node:crypto. */
const NONCE = new Uint8Array(12);

function isZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

export const nobleSuite: SphinxSuite = {
  name: 'noble',
  publicKey(scalar) {
    return x25519.getPublicKey(scalar);
  },
  prepareScalar(scalar) {
    return Uint8Array.from(scalar) as unknown as PreparedScalar;
  },
  preparePoint(point) {
    return Uint8Array.from(point) as unknown as PreparedPoint;
  },
  dh(scalar, point) {
    let out: Uint8Array;
    try {
      out = x25519.scalarMult(scalar as unknown as Uint8Array, point as unknown as Uint8Array);
    } catch {
      return null; // noble throws on the all-zero result
    }
    return isZero(out) ? null : out;
  },
  kdf(domain, secret, length) {
    const input = new Uint8Array(domain.length + secret.length);
    input.set(domain, 0);
    input.set(secret, domain.length);
    return shake256(input, { dkLen: length });
  },
  hmac(key, a, b) {
    const h = hmac.create(sha256, key);
    h.update(a);
    if (b) h.update(b);
    return h.digest();
  },
  xorStream(key, data) {
    chacha20(key, NONCE, data, data);
  },
  stream(key, out) {
    out.fill(0);
    chacha20(key, NONCE, out, out);
  },
  random(length) {
    return randomBytes(length);
  },
};
