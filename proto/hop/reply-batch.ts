/**
 * The gateway's two pure jobs that run beside the hop unwrap on the `[crypto] workers` pool
 * (runtime/hop/unwrap-pool.ts), so that its event loop keeps only decoding, bookkeeping, SQLite
 * and I/O:
 *
 * - 'tokens': POPRF token checks (verifyToken: is this token valid for this recipient under its
 *   key epoch?), one result byte each (1 valid). Whether a token is spent is not decided here: the
 *   event loop decides that in the intake's transaction, after the check (gateway/intake.ts);
 * - 'replies': ACK packets built from their SURBs (packetFromSurb: the LIONESS over the payload).
 *   The inputs come in fixed-size slots of a shared buffer (no structured clone per item):
 *
 *     0..2     payload length (u16, little endian)
 *     2..      the SURB (the geometry's SURB length), then the payload
 *
 *   and each result goes into a fixed-size slot of the shared result buffer:
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
  /** count × replyInputBytes(geometry), written with writeReplyInput. */
  readonly inputs: SharedArrayBuffer;
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

/** Bytes of one input slot for a geometry. */
export function replyInputBytes(geom: Geometry): number {
  return 2 + packetSizes(geom).surb + geom.payloadSize;
}

/**
 * Writes input `i` of a job; false (nothing written) when packetFromSurb would refuse it for its
 * lengths, which the caller then answers itself.
 */
export function writeReplyInput(geom: Geometry, inputs: Uint8Array, i: number, surb: Uint8Array, payload: Uint8Array): boolean {
  const S = packetSizes(geom).surb;
  if (surb.length !== S || payload.length > geom.payloadSize) return false;
  const o = i * replyInputBytes(geom);
  inputs[o] = payload.length & 0xff;
  inputs[o + 1] = payload.length >>> 8;
  inputs.set(surb, o + 2);
  inputs.set(payload, o + 2 + S);
  return true;
}

/** Builds reply `i` of a job (packetFromSurb on input slot `i`) into its result slot. Never throws. */
export function buildReplySlot(suite: SphinxSuite, geom: Geometry, inputs: Uint8Array, out: Uint8Array, i: number): void {
  const S = packetSizes(geom).surb;
  const io = i * replyInputBytes(geom);
  const len = inputs[io]! | (inputs[io + 1]! << 8);
  const o = i * replySlotBytes(geom);
  const r = packetFromSurb(suite, geom, inputs.subarray(io + 2, io + 2 + S), inputs.subarray(io + 2 + S, io + 2 + S + len));
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
