/**
 * A delivery token's bytes and the values derived from them (docs/spec/tokens.md): the POPRF
 * public input (`info`) of a recipient and key epoch, the 100-byte encoding, the spent-set key
 * and the digest later fragments are compared with.
 */
import { createHash } from 'node:crypto';
import { hex } from '../util/bytes.ts';

export const TOKEN_INPUT_LENGTH = 32;
export const TOKEN_OUTPUT_LENGTH = 64;
/** u32 key epoch || input || output */
export const TOKEN_LENGTH = 4 + TOKEN_INPUT_LENGTH + TOKEN_OUTPUT_LENGTH;
/** The POPRF info prefix, also the issuer key derivation's info. */
export const INFO_PREFIX = new TextEncoder().encode('postmix-token-v1');

export interface Token {
  readonly keyEpoch: number;
  readonly input: Uint8Array;
  readonly output: Uint8Array;
}

/** Addresses compare case-insensitively: tokens and routing use the lower-cased form. */
export function normalizeRecipient(address: string): string {
  return address.trim().toLowerCase();
}

export function tokenInfo(recipient: string, keyEpoch: number): Uint8Array {
  const r = new TextEncoder().encode(normalizeRecipient(recipient));
  const out = new Uint8Array(INFO_PREFIX.length + 4 + r.length);
  out.set(INFO_PREFIX, 0);
  new DataView(out.buffer).setUint32(INFO_PREFIX.length, keyEpoch >>> 0);
  out.set(r, INFO_PREFIX.length + 4);
  return out;
}

const SPENT_DOMAIN = new TextEncoder().encode('postmix-token-spent-v1|');
const FRAGMENT_TOKEN_DOMAIN = new TextEncoder().encode('postmix-fragment-token-v1|');

function domainHash(domain: Uint8Array, data: Uint8Array): Uint8Array {
  // node:crypto: the intake hashes every fragment's token bytes (noble's JS SHA-256 was a
  // measurable part of its per-fragment cost)
  return createHash('sha256').update(domain).update(data).digest();
}

/**
 * The spent-set key of a token: SHA-256 over a domain and its input (random 32 bytes, unique
 * per token), in hex. The gateway stores this, never the input, so its database cannot be
 * matched against the tokens a contact's wallet still holds without the token in hand.
 */
export function tokenSpendKey(token: Token): string {
  return hex(domainHash(SPENT_DOMAIN, token.input));
}

/** A digest of the token bytes a fragment carries (any bytes), for checking that later fragments carry the same. */
export function fragmentTokenDigest(token: Uint8Array): Uint8Array {
  return domainHash(FRAGMENT_TOKEN_DOMAIN, token);
}

export function encodeToken(t: Token): Uint8Array {
  const out = new Uint8Array(TOKEN_LENGTH);
  new DataView(out.buffer).setUint32(0, t.keyEpoch >>> 0);
  out.set(t.input, 4);
  out.set(t.output, 4 + TOKEN_INPUT_LENGTH);
  return out;
}

export function decodeToken(b: Uint8Array): Token | null {
  if (b.length !== TOKEN_LENGTH) return null;
  return {
    keyEpoch: new DataView(b.buffer, b.byteOffset, 4).getUint32(0),
    input: b.slice(4, 4 + TOKEN_INPUT_LENGTH),
    output: b.slice(4 + TOKEN_INPUT_LENGTH),
  };
}
