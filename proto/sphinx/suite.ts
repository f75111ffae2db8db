/**
 * The primitives Sphinx is built from (docs/spec/sphinx.md §1), behind one interface so the same
 * packet code runs on node:crypto (fast, OpenSSL) or on @noble (pure JS, any runtime). Both
 * suites must give byte-identical results; test/vectors checks them against the spec vectors.
 */

/** A group element or scalar prepared for repeated use by a suite (a KeyObject, or raw bytes). */
export interface PreparedScalar {
  readonly __brand: 'PreparedScalar';
}
export interface PreparedPoint {
  readonly __brand: 'PreparedPoint';
}

export interface SphinxSuite {
  readonly name: string;
  /** X25519(scalar, 9): the public key of a scalar. */
  publicKey(scalar: Uint8Array): Uint8Array;
  prepareScalar(scalar: Uint8Array): PreparedScalar;
  /** Decodes a 32-byte u-coordinate; never throws for 32 bytes. */
  preparePoint(point: Uint8Array): PreparedPoint;
  /** X25519(scalar, point); null when the result is the all-zero (low-order) element. */
  dh(scalar: PreparedScalar, point: PreparedPoint): Uint8Array | null;
  /** SHAKE256(domain || secret), `length` bytes (domain: KDF_DOMAIN, SURB_KEY_DOMAIN or PAD_DOMAIN). */
  kdf(domain: Uint8Array, secret: Uint8Array, length: number): Uint8Array;
  /** HMAC-SHA256(key, a || b), full 32 bytes. */
  hmac(key: Uint8Array, a: Uint8Array, b?: Uint8Array): Uint8Array;
  /**
   * XORs the ChaCha20 keystream (RFC 8439: 32-byte key, all-zero 96-bit nonce, counter 0) into
   * `data` in place, starting at keystream offset 0.
   */
  xorStream(key: Uint8Array, data: Uint8Array): void;
  /** Fills `out` with ChaCha20 keystream as above. */
  stream(key: Uint8Array, out: Uint8Array): void;
  /** Cryptographically secure random bytes. */
  random(length: number): Uint8Array;
}

/** Domain-separation prefix of the per-hop KDF. */
export const KDF_DOMAIN = new TextEncoder().encode('postmix-sphinx-v1-kdf');
/** Domain-separation prefix that turns a SURB's 32-byte reply seed into LIONESS keys. */
export const SURB_KEY_DOMAIN = new TextEncoder().encode('postmix-sphinx-v1-surb');
/** Domain-separation prefix of the key of the last hop's padding stream, from the sender's secret x. */
export const PAD_DOMAIN = new TextEncoder().encode('postmix-sphinx-v1-pad');
