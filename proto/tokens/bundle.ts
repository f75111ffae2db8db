/**
 * Token bundles (docs/spec/tokens.md, "Bundles"): what a recipient hands to one contact, as a
 * JSON file a person can attach to an (encrypted) mail. Version 2 groups the tokens by the
 * recipient's key epoch and carries each epoch's validity window, so the contact's client knows
 * when a token stops admitting mail and can say so before it sends; version 1 (one epoch, no
 * window) is still read.
 */
import { decodeToken, encodeToken, normalizeRecipient, TOKEN_LENGTH, type Token } from './token.ts';
import { hex, hexBytes } from '../util/bytes.ts';

/** The media type of a bundle file, for the attachment a mail client sends. */
export const BUNDLE_MEDIA_TYPE = 'application/vnd.postmix.tokens+json';
const MAX_TOKENS = 100_000;

/** When an epoch's tokens are good: unix seconds, null for "no scheduled end" / "unknown start". */
export interface EpochValidity {
  /** The epoch starts here; a token used before is refused. */
  readonly notBefore: number | null;
  /** The epoch ends here: senders stop using its tokens (the gateway still takes them for a grace window, for mail in flight). */
  readonly expires: number | null;
}

export interface BundleEpoch extends EpochValidity {
  readonly keyEpoch: number;
  readonly tokens: readonly Token[];
}

export interface ParsedBundle {
  readonly recipient: string;
  readonly issuerPublicKey: Uint8Array;
  readonly epochs: readonly BundleEpoch[];
  /** every token of every epoch */
  readonly tokens: readonly Token[];
}

interface BundleJsonV2 {
  readonly v: 2;
  readonly recipient: string;
  /** hex of the gateway's issuer public key the tokens were checked against */
  readonly issuerPublicKey: string;
  readonly epochs: readonly { keyEpoch: number; notBefore: number | null; expires: number | null; tokens: readonly string[] }[];
}

export class BundleError extends Error {
  override readonly name = 'BundleError';
}

/**
 * A bundle (JSON object) with `tokens`, grouped by key epoch; `validity` gives each epoch's
 * window (default: unknown, i.e. null/null).
 */
export function makeBundle(
  recipient: string,
  issuerPublicKey: Uint8Array,
  tokens: readonly Token[],
  validity: (keyEpoch: number) => EpochValidity = () => ({ notBefore: null, expires: null }),
): BundleJsonV2 {
  const by = new Map<number, Token[]>();
  for (const t of tokens) by.set(t.keyEpoch, [...(by.get(t.keyEpoch) ?? []), t]);
  return {
    v: 2,
    recipient: normalizeRecipient(recipient),
    issuerPublicKey: hex(issuerPublicKey),
    epochs: [...by.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([keyEpoch, ts]) => {
        const w = validity(keyEpoch);
        return { keyEpoch, notBefore: w.notBefore, expires: w.expires, tokens: ts.map((t) => hex(encodeToken(t))) };
      }),
  };
}

const isTime = (x: unknown): x is number | null => x === null || (Number.isSafeInteger(x) && (x as number) >= 0);
const isEpoch = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffffffff;

function parseTokens(list: unknown, keyEpoch: number, seen: { n: number }): Token[] {
  if (!Array.isArray(list) || list.length === 0) throw new BundleError(`token bundle: key epoch ${keyEpoch} has no tokens`);
  seen.n += list.length;
  if (seen.n > MAX_TOKENS) throw new BundleError(`token bundle: more than ${MAX_TOKENS} tokens`);
  return Array.from(list as unknown[], (t) => {
    const b = hexBytes(t, TOKEN_LENGTH);
    const tok = b && decodeToken(b);
    if (!tok) throw new BundleError('token bundle: a token is malformed');
    if (tok.keyEpoch !== keyEpoch) throw new BundleError('token bundle: a token has another key epoch than its group');
    return tok;
  });
}

/** Parses an untrusted bundle (version 1 or 2); throws BundleError with the reason. */
export function parseBundle(text: string): ParsedBundle {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw new BundleError('token bundle is not JSON');
  }
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw new BundleError('token bundle is not a JSON object');
  const o = j as Record<string, unknown>;
  if (o.v !== 1 && o.v !== 2) throw new BundleError('token bundle: unknown version (want v: 1 or 2)');
  if (typeof o.recipient !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(o.recipient) || o.recipient.length > 254)
    throw new BundleError('token bundle: bad recipient');
  const pk = hexBytes(o.issuerPublicKey, 32);
  if (!pk) throw new BundleError('token bundle: bad issuerPublicKey');
  const seen = { n: 0 };
  let epochs: BundleEpoch[];
  if (o.v === 1) {
    if (!isEpoch(o.keyEpoch)) throw new BundleError('token bundle: bad keyEpoch');
    epochs = [{ keyEpoch: o.keyEpoch, notBefore: null, expires: null, tokens: parseTokens(o.tokens, o.keyEpoch, seen) }];
  } else {
    if (!Array.isArray(o.epochs) || o.epochs.length === 0 || o.epochs.length > 16) throw new BundleError('token bundle: no key epochs');
    epochs = Array.from(o.epochs as unknown[], (e) => {
      const g = (e ?? {}) as Record<string, unknown>;
      if (!isEpoch(g.keyEpoch)) throw new BundleError('token bundle: bad keyEpoch');
      if (!isTime(g.notBefore) || !isTime(g.expires)) throw new BundleError(`token bundle: key epoch ${g.keyEpoch}: bad notBefore/expires`);
      if (g.notBefore !== null && g.expires !== null && g.expires <= g.notBefore)
        throw new BundleError(`token bundle: key epoch ${g.keyEpoch} expires before it starts`);
      return { keyEpoch: g.keyEpoch, notBefore: g.notBefore, expires: g.expires, tokens: parseTokens(g.tokens, g.keyEpoch, seen) };
    });
    if (new Set(epochs.map((e) => e.keyEpoch)).size !== epochs.length) throw new BundleError('token bundle: a key epoch is listed twice');
  }
  return { recipient: normalizeRecipient(o.recipient), issuerPublicKey: pk, epochs, tokens: epochs.flatMap((e) => e.tokens) };
}
