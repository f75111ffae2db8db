import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { inPieces, linkNoiseCrypto } from './noise-crypto.ts';

const flat = (b: Uint8Array | { subarray(): Uint8Array }): Uint8Array => (b instanceof Uint8Array ? b : b.subarray());

describe("the link's Noise crypto", () => {
  const k = new Uint8Array(32).fill(9);
  const n = new Uint8Array(12).fill(1);
  const ad = new Uint8Array(32).fill(2);

  it('loads libsodium here and matches the default byte for byte, small and large, in place', () => {
    const { crypto, fallbackReason } = linkNoiseCrypto();
    expect(fallbackReason).toBeUndefined();
    for (const size of [0, 100, 1199, 1200, 2100, 65519]) {
      const m = new Uint8Array(size).map((_, i) => i * 7);
      const c = flat(crypto.chaCha20Poly1305Encrypt(m, n, ad, k));
      expect(Buffer.from(c)).toEqual(Buffer.from(flat(defaultCrypto.chaCha20Poly1305Encrypt(m, n, ad, k))));
      const dst = c.subarray(0, size);
      const p = flat(crypto.chaCha20Poly1305Decrypt(c, n, ad, k, dst));
      expect(Buffer.from(p)).toEqual(Buffer.from(m));
      if (size >= 1200) expect(p.buffer).toBe(c.buffer); // decrypted where Noise asked, no new buffer
    }
  });

  it('refuses a bad tag', () => {
    const { crypto } = linkNoiseCrypto();
    const m = new Uint8Array(3000).fill(5);
    const c = flat(crypto.chaCha20Poly1305Encrypt(m, n, ad, k));
    c[10]! ^= 1;
    expect(() => crypto.chaCha20Poly1305Decrypt(c, n, ad, k, c.subarray(0, 3000))).toThrow();
    expect(() => crypto.chaCha20Poly1305Decrypt(c, n, ad, k)).toThrow();
  });

  it('takes a message in pieces (split TCP reads, a yamux header) without joining it: same bytes as the default, decrypted into dst', () => {
    const { crypto } = linkNoiseCrypto();
    fc.assert(
      fc.property(
        fc.integer({ min: 1200, max: 65519 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (size, a, b) => {
          const m = new Uint8Array(size).map((_, i) => (i * 13 + size) & 0xff);
          const want = flat(defaultCrypto.chaCha20Poly1305Encrypt(m, n, ad, k));
          // cuts anywhere, also inside the tag of the ciphertext
          const [c1, c2] = [Math.floor(a * size), Math.floor(b * size)].sort((x, y) => x - y) as [number, number];
          expect(Buffer.from(flat(crypto.chaCha20Poly1305Encrypt(inPieces(m, c1, c2), n, ad, k)))).toEqual(Buffer.from(want));
          const [d1, d2] = [Math.floor(a * want.length), Math.floor(b * want.length)].sort((x, y) => x - y) as [number, number];
          const dst = new Uint8Array(size);
          const p = crypto.chaCha20Poly1305Decrypt(inPieces(want, d1, d2), n, ad, k, dst);
          expect(p).toBe(dst);
          expect(Buffer.from(dst)).toEqual(Buffer.from(m));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('refuses a message in pieces with a flipped bit in its body or its tag', () => {
    const { crypto } = linkNoiseCrypto();
    const m = new Uint8Array(5000).map((_, i) => i);
    const good = flat(defaultCrypto.chaCha20Poly1305Encrypt(m, n, ad, k));
    for (const at of [0, 2500, good.length - 16, good.length - 1]) {
      const bad = good.slice();
      bad[at]! ^= 0x40;
      expect(() => crypto.chaCha20Poly1305Decrypt(inPieces(bad, 1000, good.length - 8), n, ad, k, new Uint8Array(5000))).toThrow();
    }
  });

  it('falls back to the default, with the reason, when sodium-native does not load', () => {
    const r = linkNoiseCrypto(() => {
      throw new Error('no binary');
    });
    expect(r.crypto).toBe(defaultCrypto);
    expect(r.fallbackReason).toMatch(/no binary/);
  });
});
