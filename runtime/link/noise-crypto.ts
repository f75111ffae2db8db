/**
 * The ChaCha20-Poly1305 under the link's Noise sessions (`noise({ crypto })`), on libsodium
 * (sodium-native, already loaded for the Sphinx suite) for messages of 1200 bytes and more, where
 * @chainsafe/libp2p-noise's default uses node:crypto. Same cipher, same bytes on the wire; the
 * gain is memory, not cipher speed: the default allocates a fresh plaintext buffer for every
 * message it decrypts (it ignores the `dst` Noise hands it) and concatenates ciphertext and tag
 * into a second buffer for every message it encrypts. Under load that is ~2 × 64 KiB of
 * short-lived ArrayBuffers per 32 packets, and ArrayBuffer bytes are what start V8's full
 * collections on a busy node (docs/mixnode.md, "Where the time goes"). Here a message is
 * decrypted in place into `dst` (libsodium checks the tag before it decrypts), and encrypted
 * into one buffer of its final size.
 *
 * Smaller messages (yamux window updates, handshakes) stay on the default (AssemblyScript), as
 * does everything else of the interface. If sodium-native does not load or fails its check, the
 * default is used as it is.
 */
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { createRequire } from 'node:module';

/** The two sodium-native functions used here. */
interface SodiumAead {
  crypto_aead_chacha20poly1305_ietf_encrypt(c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, k: Uint8Array): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(m: Uint8Array, nsec: null, c: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array): number;
}

/** Below this the default's AssemblyScript ChaCha is used (the same threshold as the default's own switch). */
const NATIVE_FROM_BYTES = 1200;
const TAG_BYTES = 16;

/** One contiguous buffer (a Uint8ArrayList of several chunks is copied once). */
const flat = (b: Uint8Array | { subarray(): Uint8Array }): Uint8Array => (b instanceof Uint8Array ? b : b.subarray());

export function sodiumNoiseCrypto(sodium: SodiumAead): ICryptoInterface {
  return {
    ...defaultCrypto,
    chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
      if (plaintext.byteLength < NATIVE_FROM_BYTES) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k);
      const m = flat(plaintext);
      const c = Buffer.allocUnsafeSlow(m.byteLength + TAG_BYTES);
      sodium.crypto_aead_chacha20poly1305_ietf_encrypt(c, m, ad, null, nonce, k);
      return c;
    },
    chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
      if (ciphertext.byteLength < NATIVE_FROM_BYTES) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst);
      const c = flat(ciphertext);
      // `dst` is where Noise wants the plaintext (over the ciphertext itself, or a copy of it);
      // libsodium takes m == c and checks the tag before it decrypts; on a wrong one it throws
      // (and zeroes m), and Noise ends the connection
      const m = dst !== undefined && dst.byteLength === c.byteLength - TAG_BYTES ? dst : c.subarray(0, c.byteLength - TAG_BYTES);
      sodium.crypto_aead_chacha20poly1305_ietf_decrypt(m, null, c, ad, nonce, k);
      return m;
    },
  };
}

/** A known answer against the default (both directions, in place), so a wrong binding is never used. */
function check(c: ICryptoInterface): void {
  const k = new Uint8Array(32).map((_, i) => i);
  const n = new Uint8Array(12).fill(7);
  const ad = new Uint8Array(32).fill(3);
  const m = new Uint8Array(4000).map((_, i) => i * 31);
  const want = flat(defaultCrypto.chaCha20Poly1305Encrypt(m, n, ad, k));
  const got = flat(c.chaCha20Poly1305Encrypt(m, n, ad, k));
  if (Buffer.compare(want, got) !== 0) throw new Error('ChaCha20-Poly1305 differs from the default');
  const back = flat(c.chaCha20Poly1305Decrypt(got, n, ad, k, got.subarray(0, m.length)));
  if (Buffer.compare(back, m) !== 0) throw new Error('ChaCha20-Poly1305 in-place decryption failed');
  const bad = flat(defaultCrypto.chaCha20Poly1305Encrypt(m, n, ad, k));
  bad[bad.length - 1]! ^= 1;
  let refused = false;
  try {
    c.chaCha20Poly1305Decrypt(bad, n, ad, k, bad.subarray(0, m.length));
  } catch {
    refused = true;
  }
  if (!refused) throw new Error('ChaCha20-Poly1305 accepted a bad tag');
}

let chosen: { crypto: ICryptoInterface; fallbackReason?: string } | undefined;

/** The Noise crypto the link uses: libsodium-backed when it loads and checks out, else the default (with why). */
export function linkNoiseCrypto(load?: () => SodiumAead): { crypto: ICryptoInterface; fallbackReason?: string } {
  if (load === undefined && chosen !== undefined) return chosen;
  let r: { crypto: ICryptoInterface; fallbackReason?: string };
  try {
    const c = sodiumNoiseCrypto((load ?? (() => createRequire(import.meta.url)('sodium-native') as SodiumAead))());
    check(c);
    r = { crypto: c };
  } catch (e) {
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    r = { crypto: defaultCrypto, fallbackReason: `sodium-native unusable for Noise (${why}); its ChaCha20-Poly1305 stays on node:crypto` };
  }
  if (load === undefined) chosen = r;
  return r;
}
