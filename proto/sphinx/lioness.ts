import type { SphinxSuite } from './suite.ts';

/**
 * LIONESS (Anderson & Biham, "Two practical and provably secure block ciphers: BEAR and LION",
 * FSE 1996): a wide-block cipher (an SPRP) over the whole payload, so a flipped bit anywhere
 * turns the whole block into noise at the next decryption. Instantiated with ChaCha20 as the
 * stream cipher S and HMAC-SHA256 as the keyed hash H; the 32-byte left half is the stream key.
 *
 *   encrypt: R ^= S(L ^ K1); L ^= H(K2, R); R ^= S(L ^ K3); L ^= H(K4, R)
 *   decrypt: the same four rounds in reverse order.
 *
 * Keys: 128 bytes = K1 || K2 || K3 || K4, 32 bytes each. Works in place.
 */
export const LIONESS_LEFT = 32;

function xorInto(dst: Uint8Array, a: Uint8Array, b: Uint8Array, n: number): void {
  for (let i = 0; i < n; i++) dst[i] = a[i]! ^ b[i]!;
}

function roundStream(suite: SphinxSuite, block: Uint8Array, k: Uint8Array, tmp: Uint8Array): void {
  const L = block.subarray(0, LIONESS_LEFT);
  xorInto(tmp, L, k, LIONESS_LEFT);
  suite.xorStream(tmp, block.subarray(LIONESS_LEFT));
}

function roundHash(suite: SphinxSuite, block: Uint8Array, k: Uint8Array): void {
  const h = suite.hmac(k, block.subarray(LIONESS_LEFT));
  for (let i = 0; i < LIONESS_LEFT; i++) block[i]! ^= h[i]!;
}

function split(keys: Uint8Array): [Uint8Array, Uint8Array, Uint8Array, Uint8Array] {
  if (keys.length !== 128) throw new RangeError('LIONESS needs 128 bytes of key');
  return [keys.subarray(0, 32), keys.subarray(32, 64), keys.subarray(64, 96), keys.subarray(96, 128)];
}

export function lionessEncrypt(suite: SphinxSuite, keys: Uint8Array, block: Uint8Array): void {
  if (block.length <= LIONESS_LEFT) throw new RangeError('LIONESS block must be longer than 32 bytes');
  const [k1, k2, k3, k4] = split(keys);
  const tmp = new Uint8Array(LIONESS_LEFT);
  roundStream(suite, block, k1, tmp);
  roundHash(suite, block, k2);
  roundStream(suite, block, k3, tmp);
  roundHash(suite, block, k4);
}

export function lionessDecrypt(suite: SphinxSuite, keys: Uint8Array, block: Uint8Array): void {
  if (block.length <= LIONESS_LEFT) throw new RangeError('LIONESS block must be longer than 32 bytes');
  const [k1, k2, k3, k4] = split(keys);
  const tmp = new Uint8Array(LIONESS_LEFT);
  roundHash(suite, block, k4);
  roundStream(suite, block, k3, tmp);
  roundHash(suite, block, k2);
  roundStream(suite, block, k1, tmp);
}
