/**
 * Every rejection in the PKI carries a typed reason, so daemons can count them (one metric label
 * per reason) and tests can assert on them. Decoders and verifiers throw PkiError and nothing
 * else for bad input; anything else escaping them is a bug.
 */
export const PKI_REASONS = [
  'oversized', // more bytes than the limit for this kind of object
  'truncated', // the protobuf ended in the middle of a field
  'malformed', // not a valid protobuf of the expected type
  'non-canonical', // decodes, but does not re-encode to the same bytes
  'invalid-field', // a field is out of range, of the wrong length, or missing
  'wrong-version', // version field is not one this code speaks
  'bad-signature', // a signature does not verify
  'bad-key', // a key is not a valid point / wrong length
  'stale-epoch', // for an epoch that is over (or whose vote has happened)
  'future-epoch', // for an epoch too far ahead
  'wrong-epoch', // not the epoch the caller asked for
  'duplicate', // the same object was already accepted (idempotent re-upload is fine, counted)
  'conflicting', // a different object for the same node id and epoch
  'duplicate-key', // two nodes share an identity or Sphinx key / domain
  'unknown-authority', // signed by a key not in the configured authority set
  'threshold', // fewer valid signatures than the threshold
  'expired', // outside the document's validity window
  'unavailable', // no authority answered with a usable document
] as const;
export type PkiReason = (typeof PKI_REASONS)[number];

export class PkiError extends Error {
  override readonly name = 'PkiError';
  constructor(
    readonly reason: PkiReason,
    message: string,
  ) {
    super(`${reason}: ${message}`);
  }
}

export function isPkiError(e: unknown): e is PkiError {
  return e instanceof PkiError;
}

/** A small in-memory counter per reason, for roles that do not run prom-client. */
export class RejectionCounter {
  readonly counts = new Map<PkiReason, number>();
  count(reason: PkiReason): void {
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
  }
  get(reason: PkiReason): number {
    return this.counts.get(reason) ?? 0;
  }
  total(): number {
    let t = 0;
    for (const v of this.counts.values()) t += v;
    return t;
  }
}
