import { MAX_FRAGMENTS, fragmentCapacity, type Fragment } from './format.ts';
import { bytesEqual } from '../util/bytes.ts';

/** The parts of a fragment that every fragment of one message repeats and must agree on. */
export interface MessageHeader {
  readonly messageId: Uint8Array;
  readonly count: number;
  readonly totalLength: number;
  readonly recipient: string;
  readonly token: Uint8Array;
}

export interface SplitInput {
  readonly message: Uint8Array;
  readonly payloadSize: number;
  readonly recipient: string;
  readonly token: Uint8Array;
  /** Bytes of the SURB each fragment will carry (0 for none). */
  readonly surbLength: number;
}

/** How many fragments a message of `messageLength` bytes needs at `capacity` data bytes each (at least one). */
export function fragmentCount(messageLength: number, capacity: number): number {
  return Math.max(1, Math.ceil(messageLength / capacity));
}

/** Cuts a message into the data of its fragments (index order). */
export function splitMessage(input: SplitInput): Uint8Array[] {
  const cap = fragmentCapacity(input.payloadSize, new TextEncoder().encode(input.recipient).length, input.token.length, input.surbLength);
  if (cap < 1) throw new RangeError(`payload size ${input.payloadSize} leaves no room for data`);
  const count = fragmentCount(input.message.length, cap);
  if (count > MAX_FRAGMENTS) throw new RangeError(`message needs ${count} fragments; the limit is ${MAX_FRAGMENTS}`);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) out.push(input.message.subarray(i * cap, Math.min(input.message.length, (i + 1) * cap)));
  return out;
}

/** True when `f` agrees with the header the first fragment of its message set. */
export function consistentWith(h: MessageHeader, f: Fragment): boolean {
  return (
    bytesEqual(h.messageId, f.messageId) &&
    h.count === f.count &&
    h.totalLength === f.totalLength &&
    h.recipient === f.recipient &&
    bytesEqual(h.token, f.token)
  );
}

/**
 * Joins the data of fragments 0..count-1. Returns null unless every index is present and the
 * lengths add up to totalLength exactly.
 */
export function assemble(parts: ReadonlyMap<number, Uint8Array>, count: number, totalLength: number): Uint8Array | null {
  if (parts.size !== count) return null;
  let len = 0;
  for (let i = 0; i < count; i++) {
    const p = parts.get(i);
    if (!p) return null;
    len += p.length;
  }
  if (len !== totalLength) return null;
  const out = new Uint8Array(totalLength);
  let o = 0;
  for (let i = 0; i < count; i++) {
    const p = parts.get(i)!;
    out.set(p, o);
    o += p.length;
  }
  return out;
}
