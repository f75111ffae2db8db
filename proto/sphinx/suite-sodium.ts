import { nodeSuite } from './suite-node.ts';
import { type PreparedPoint, type PreparedScalar, type SphinxSuite } from './suite.ts';

/**
 * The libsodium functions this suite calls, as sodium-native (v5) exposes them: outputs are
 * caller-allocated and filled in place, a failing call throws. Narrowed to what we use, so a
 * test can hand in a broken or partial binding.
 */
export interface SodiumBinding {
  /** X25519(n, p) into q; throws when p has small order (the result would be all-zero). */
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_scalarmult_base(q: Uint8Array, n: Uint8Array): void;
  /** RFC 8439 ChaCha20 (96-bit nonce, counter 0) XORed from m into c (c may be m). */
  crypto_stream_chacha20_ietf_xor(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  /** RFC 8439 ChaCha20 keystream (counter 0) into c. */
  crypto_stream_chacha20_ietf(c: Uint8Array, n: Uint8Array, k: Uint8Array): void;
}

const NONCE = new Uint8Array(12);

/**
 * libsodium suite: X25519 as a raw scalar multiplication (crypto_scalarmult: no key objects to
 * import, which is most of a node:crypto hop) and ChaCha20 (one N-API call instead of a cipher
 * object per stream). SHAKE256 and HMAC-SHA256 stay on OpenSSL: sodium-native has no SHAKE, and
 * its SHA-256 is portable C, slower on 2 KiB than OpenSSL's SHA-NI code even with node:crypto's
 * per-call object (measured: `npm run bench -- sphinx`, docs/mixnode.md "Sphinx hop cost").
 *
 * Clamping: crypto_scalarmult clamps the scalar itself (RFC 7748 §5), exactly as the spec's
 * X25519 does, so node secrets and blinding factors go in as the raw 32 bytes (§1, §4).
 * Low-order points: libsodium refuses them (and any all-zero result) with an error, which is the
 * spec's "all-zero output" case: dh returns null and the hop drops `bad-group-element`.
 */
export function makeSodiumSuite(sodium: SodiumBinding): SphinxSuite {
  return {
    name: 'sodium',
    publicKey(scalar) {
      const out = new Uint8Array(32);
      sodium.crypto_scalarmult_base(out, scalar);
      return out;
    },
    // Raw bytes are all libsodium needs; a copy so later changes to the caller's buffer (e.g. a
    // packet buffer reused by the link) cannot change a prepared value.
    prepareScalar(scalar) {
      return Uint8Array.from(scalar) as unknown as PreparedScalar;
    },
    preparePoint(point) {
      return Uint8Array.from(point) as unknown as PreparedPoint;
    },
    dh(scalar, point) {
      const out = new Uint8Array(32);
      try {
        sodium.crypto_scalarmult(out, scalar as unknown as Uint8Array, point as unknown as Uint8Array);
      } catch {
        return null;
      }
      return out;
    },
    kdf: nodeSuite.kdf,
    hmac: nodeSuite.hmac,
    xorStream(key, data) {
      sodium.crypto_stream_chacha20_ietf_xor(data, data, NONCE, key);
    },
    stream(key, out) {
      sodium.crypto_stream_chacha20_ietf(out, NONCE, key);
    },
    random: nodeSuite.random,
  };
}
