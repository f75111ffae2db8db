/** Helpers shared by the gateway's tests and benchmark: tokens for a user, fragments of a message. */
import { randomBytes } from 'node:crypto';
import { encodeFragment, fragmentCapacity, type Fragment } from '../proto/fragment/index.ts';
import { encodeToken, finalizeTokens, issueTokens, requestTokens, type IssuerKeys, type Token } from '../proto/tokens/index.ts';

export function tokensFor(issuer: IssuerKeys, recipient: string, keyEpoch: number, count: number): Token[] {
  const st = requestTokens(issuer.publicKey, recipient, keyEpoch, count);
  return finalizeTokens(st, issueTokens(issuer, recipient, keyEpoch, st.blinded));
}

/** Splits `message` into fragments the way a client does (no SURB). */
export function fragmentsOf(
  message: Uint8Array,
  recipient: string,
  token: Token | null,
  opts: { payloadSize?: number; messageId?: Uint8Array; surb?: Uint8Array } = {},
): Fragment[] {
  const payloadSize = opts.payloadSize ?? 2048;
  const tok = token ? encodeToken(token) : new Uint8Array(0);
  const surb = opts.surb ?? new Uint8Array(0);
  const cap = fragmentCapacity(payloadSize, Buffer.byteLength(recipient), tok.length, surb.length);
  const count = Math.max(1, Math.ceil(message.length / cap));
  const messageId = opts.messageId ?? new Uint8Array(randomBytes(16));
  return Array.from({ length: count }, (_, i) => ({
    messageId,
    index: i,
    count,
    totalLength: message.length,
    recipient,
    token: tok,
    surb,
    data: message.subarray(i * cap, Math.min(message.length, (i + 1) * cap)),
  }));
}

export function payloadsOf(frags: readonly Fragment[], payloadSize = 2048): Uint8Array[] {
  return frags.map((f) => encodeFragment(f, payloadSize));
}
