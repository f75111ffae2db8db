/**
 * The gateway's two pure jobs that run beside the hop unwrap on the `[crypto] workers` pool
 * (runtime/hop/unwrap-pool.ts), so that its event loop keeps only decoding, bookkeeping, SQLite
 * and I/O:
 *
 * - 'tokens': POPRF token checks (verifyToken: is this token valid for this recipient under its
 *   key epoch?), one result byte each (1 valid). Whether a token is spent is not decided here: the
 *   event loop decides that in the intake's transaction, after the check (gateway/intake.ts);
 * - 'replies': ACK packets built from their SURBs (packetFromSurb: the LIONESS over the payload),
 *   each into a fixed-size slot of the shared result buffer:
 *
 *     0        status: 0 built, else 1 + the index of the refusal reason in REPLY_REFUSALS
 *     1..33    first hop (node id)
 *     33..     the packet
 *
 * Pure: what comes in is the job's message, what goes out is written into its shared buffer.
 */
import { NODE_ID_LENGTH, packetFromSurb, packetSizes, type Geometry, type SphinxSuite, type SurbUseResult } from '../sphinx/index.ts';
import type { IssuerKeys } from '../tokens/index.ts';

export interface TokenJob {
  readonly kind: 'tokens';
  readonly count: number;
  readonly issuer: IssuerKeys;
  /** The recipient (normalized) and the token bytes a fragment carries, each. */
  readonly items: readonly { readonly recipient: string; readonly token: Uint8Array }[];
  /** count bytes: 1 when the token verified. */
  readonly results: SharedArrayBuffer;
}

export interface ReplyJob {
  readonly kind: 'replies';
  readonly count: number;
  readonly geometry: Geometry;
  readonly items: readonly { readonly surb: Uint8Array; readonly payload: Uint8Array }[];
  /** count × replySlotBytes(geometry). */
  readonly results: SharedArrayBuffer;
}

const REPLY_REFUSALS = ['bad-length', 'bad-payload-size'] as const satisfies readonly Extract<SurbUseResult, { ok: false }>['reason'][];
const HOP_AT = 1;
const PACKET_AT = HOP_AT + NODE_ID_LENGTH;

/** Bytes of one reply slot for a geometry. */
export function replySlotBytes(geom: Geometry): number {
  return PACKET_AT + packetSizes(geom).packet;
}

/** Builds reply `i` of a job (packetFromSurb) into its slot. Never throws. */
export function writeReplySlot(
  suite: SphinxSuite,
  geom: Geometry,
  out: Uint8Array,
  i: number,
  item: { readonly surb: Uint8Array; readonly payload: Uint8Array },
): void {
  const o = i * replySlotBytes(geom);
  const r = packetFromSurb(suite, geom, item.surb, item.payload);
  if (!r.ok) {
    out[o] = 1 + REPLY_REFUSALS.indexOf(r.reason);
    return;
  }
  out[o] = 0;
  out.set(r.firstHop, o + HOP_AT);
  out.set(r.packet, o + PACKET_AT);
}

/** Reply `i` of a job's results, copied out (the packet is held in the delay queue; the buffer is reused). */
export function readReplySlot(geom: Geometry, results: Uint8Array, i: number): SurbUseResult {
  const o = i * replySlotBytes(geom);
  const st = results[o]!;
  if (st !== 0) return { ok: false, reason: REPLY_REFUSALS[st - 1]! };
  return { ok: true, firstHop: results.slice(o + HOP_AT, o + PACKET_AT), packet: results.slice(o + PACKET_AT, o + replySlotBytes(geom)) };
}
