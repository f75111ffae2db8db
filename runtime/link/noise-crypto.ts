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
 * A message that arrives split over TCP reads (nearly every one: a full Noise message is 64 KiB,
 * and so is a read) reaches us as a Uint8ArrayList of pieces, and yamux hands a message to send
 * as a list of its header and data. Neither is joined into a buffer of its own: the pieces are
 * copied straight into `dst` (the tag apart) or into the ciphertext buffer, which is then
 * decrypted or encrypted in place. That is one 64 KiB allocation less per message each way.
 *
 * Smaller messages (yamux window updates, handshakes) stay on the default (AssemblyScript), as
 * does everything else of the interface. If sodium-native does not load or fails its check, the
 * default is used as it is.
 */
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { createRequire } from 'node:module';
import { Uint8ArrayList } from 'uint8arraylist';

/** The sodium-native functions used here (each throws on a wrong tag or bad sizes). */
interface SodiumAead {
  crypto_aead_chacha20poly1305_ietf_encrypt(c: Uint8Array, m: Uint8Array, ad: Uint8Array | null, nsec: null, npub: Uint8Array, k: Uint8Array): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(m: Uint8Array, nsec: null, c: Uint8Array, ad: Uint8Array | null, npub: Uint8Array, k: Uint8Array): number;
  crypto_aead_chacha20poly1305_ietf_decrypt_detached(
    m: Uint8Array,
    nsec: null,
    c: Uint8Array,
    mac: Uint8Array,
    ad: Uint8Array | null,
    npub: Uint8Array,
    k: Uint8Array,
  ): void;
}

/** Below this the default's AssemblyScript ChaCha is used (the same threshold as the default's own switch). */
const NATIVE_FROM_BYTES = 1200;
const TAG_BYTES = 16;

/** One contiguous buffer (a Uint8ArrayList of several pieces is copied once). */
const flat = (b: Uint8Array | { subarray(): Uint8Array }): Uint8Array => (b instanceof Uint8Array ? b : b.subarray());

/** Copies the first `n` bytes of `pieces` into `dst` from 0, without joining them first. */
function copyPieces(pieces: Iterable<Uint8Array>, dst: Uint8Array, n: number): void {
  let at = 0;
  for (const piece of pieces) {
    if (at >= n) break;
    const take = Math.min(piece.byteLength, n - at);
    dst.set(take === piece.byteLength ? piece : piece.subarray(0, take), at);
    at += take;
  }
}

/** More than one piece (a single piece is a view of its buffer already, with nothing to join). */
function several(pieces: Iterable<Uint8Array>): boolean {
  let count = 0;
  for (const _ of pieces) if (++count > 1) return true;
  return false;
}

export function sodiumNoiseCrypto(sodium: SodiumAead): ICryptoInterface {
  return {
    ...defaultCrypto,
    chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
      if (plaintext.byteLength < NATIVE_FROM_BYTES) return defaultCrypto.chaCha20Poly1305Encrypt(plaintext, nonce, ad, k);
      const n = plaintext.byteLength;
      const c = Buffer.allocUnsafeSlow(n + TAG_BYTES);
      if (plaintext instanceof Uint8Array) {
        sodium.crypto_aead_chacha20poly1305_ietf_encrypt(c, plaintext, ad, null, nonce, k);
      } else {
        // in place: libsodium XORs the stream from m into c (the same bytes here), then MACs c
        copyPieces(plaintext, c, n);
        sodium.crypto_aead_chacha20poly1305_ietf_encrypt(c, c.subarray(0, n), ad, null, nonce, k);
      }
      return c;
    },
    chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
      if (ciphertext.byteLength < NATIVE_FROM_BYTES) return defaultCrypto.chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst);
      const n = ciphertext.byteLength - TAG_BYTES;
      if (dst !== undefined && dst.byteLength === n && !(ciphertext instanceof Uint8Array) && several(ciphertext)) {
        // the body's pieces straight into dst, the tag apart, then checked and decrypted in place.
        // Noise has filled dst with those bytes already (its own copy of the body), but that is
        // its internal habit, not its interface: copying again costs a memcpy, not an allocation
        copyPieces(ciphertext, dst, n);
        sodium.crypto_aead_chacha20poly1305_ietf_decrypt_detached(dst, null, dst, ciphertext.subarray(n), ad, nonce, k);
        return dst;
      }
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

/** What Noise hands the cipher: one buffer, or a Uint8ArrayList of pieces (its own copy of the package, v2). */
type NoiseBytes = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0];

/**
 * `b` as a list of three pieces, split where `cut1` and `cut2` say (as TCP reads split a
 * message). A v3 Uint8ArrayList: the code here reads a list only through what v2 and v3 share
 * (iteration over the pieces, byteLength, subarray).
 */
export function inPieces(b: Uint8Array, cut1: number, cut2: number): NoiseBytes {
  return new Uint8ArrayList(b.slice(0, cut1), b.slice(cut1, cut2), b.slice(cut2)) as unknown as NoiseBytes;
}

/**
 * A known answer against the default (both directions, in place, whole and in pieces), so a
 * wrong binding is never used.
 */
function check(c: ICryptoInterface): void {
  const k = new Uint8Array(32).map((_, i) => i);
  const n = new Uint8Array(12).fill(7);
  const ad = new Uint8Array(32).fill(3);
  const m = new Uint8Array(4000).map((_, i) => i * 31);
  const want = flat(defaultCrypto.chaCha20Poly1305Encrypt(m, n, ad, k));
  const got = flat(c.chaCha20Poly1305Encrypt(m, n, ad, k));
  if (Buffer.compare(want, got) !== 0) throw new Error('ChaCha20-Poly1305 differs from the default');
  if (Buffer.compare(want, flat(c.chaCha20Poly1305Encrypt(inPieces(m, 12, 1500), n, ad, k))) !== 0) {
    throw new Error('ChaCha20-Poly1305 differs from the default on a message in pieces');
  }
  // the tag split over two pieces, as a read boundary may fall inside it
  const back2 = flat(c.chaCha20Poly1305Decrypt(inPieces(want, 1000, want.length - 5), n, ad, k, new Uint8Array(m.length)));
  if (Buffer.compare(back2, m) !== 0) throw new Error('ChaCha20-Poly1305 decryption of a message in pieces failed');
  const back = flat(c.chaCha20Poly1305Decrypt(got, n, ad, k, got.subarray(0, m.length)));
  if (Buffer.compare(back, m) !== 0) throw new Error('ChaCha20-Poly1305 in-place decryption failed');
  const bad = flat(defaultCrypto.chaCha20Poly1305Encrypt(m, n, ad, k));
  bad[bad.length - 1]! ^= 1;
  for (const input of [bad.slice(), inPieces(bad, 100, 2000)]) {
    let refused = false;
    try {
      c.chaCha20Poly1305Decrypt(input, n, ad, k, input instanceof Uint8Array ? input.subarray(0, m.length) : new Uint8Array(m.length));
    } catch {
      refused = true;
    }
    if (!refused) throw new Error('ChaCha20-Poly1305 accepted a bad tag');
  }
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
