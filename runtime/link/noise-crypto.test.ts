import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { describe, expect, it } from 'vitest';
import { linkNoiseCrypto } from './noise-crypto.ts';

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

  it('falls back to the default, with the reason, when sodium-native does not load', () => {
    const r = linkNoiseCrypto(() => {
      throw new Error('no binary');
    });
    expect(r.crypto).toBe(defaultCrypto);
    expect(r.fallbackReason).toMatch(/no binary/);
  });
});
