/** A message as the fragments (and fragment payloads) a client sends for it, for gateway tests and benchmarks. */
import { randomBytes } from 'node:crypto';
import { encodeFragment, fragmentCapacity, type Fragment } from '../../proto/fragment/index.ts';
import { encodeToken, type Token } from '../../proto/tokens/index.ts';

/** Splits `message` into fragments the way a client does (no SURB unless given). */
export function messageFragments(
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

export function fragmentPayloads(frags: readonly Fragment[], payloadSize = 2048): Uint8Array[] {
  return frags.map((f) => encodeFragment(f, payloadSize));
}
