/**
 * Sphinx layers peeled in batches, away from the thread that owns the replay store and the
 * delay queue (runtime/hop/unwrap-pool.ts runs this in worker threads). Pure: the frames come
 * in one flat buffer, the results go out in another (both shared with the thread that asked),
 * in fixed-size slots, so a batch crosses threads without a copy or a structured clone.
 *
 * No replay check here: each slot carries the replay tag once the MAC held, and the owning
 * thread checks-and-inserts it (`HopEngine.admit`) before it schedules anything.
 *
 * Result slot (SLOT_HEAD bytes, then the packet or payload):
 *
 *   0       status: 0 forward, 1 deliver, 2 drop cover, 3 refused (reason at 1)
 *   1       refusal reason (index in SPHINX_DROP_REASONS)
 *   2       flags: 1 replay tag present, 2 SURB id present
 *   4..8    delay ms (u32, little endian)
 *   8..12   body length (u32)
 *   16..48  replay tag
 *   48..80  next hop id (forward) or queue id (deliver)
 *   80..96  SURB id
 *   128..   body: the outgoing packet (forward) or the payload (deliver)
 */
import {
  NODE_ID_LENGTH,
  QUEUE_ID_LENGTH,
  REPLAY_TAG_LENGTH,
  SPHINX_DROP_REASONS,
  SURB_ID_LENGTH,
  packetSizes,
  processPacket,
  type Geometry,
  type HopPrivateKey,
  type HopResult,
} from '../sphinx/index.ts';

export const SLOT_HEAD = 128;
const ST_FORWARD = 0;
const ST_DELIVER = 1;
const ST_COVER = 2;
const ST_REFUSED = 3;
const F_TAG = 1;
const F_SURB = 2;
const TAG_AT = 16;
const ID_AT = 48;
const SURB_AT = 80;

/** Bytes of one result slot for a geometry. */
export function slotBytes(geom: Geometry): number {
  return SLOT_HEAD + packetSizes(geom).packet;
}

/** What a batch asks for: `count` frames of the geometry's packet size back to back in `frames`. */
export interface UnwrapBatch {
  readonly geometry: Geometry;
  readonly count: number;
  readonly frames: Uint8Array;
  /** Per frame, the index in `keys` of the key its header names. */
  readonly keyIndex: Uint8Array;
  /** At least count × slotBytes(geometry). */
  readonly results: Uint8Array;
}

/** Peels every frame of the batch with its key and writes its slot. Never throws for any frame bytes. */
export function unwrapBatch(b: UnwrapBatch, keys: readonly HopPrivateKey[]): void {
  const P = packetSizes(b.geometry).packet;
  const S = SLOT_HEAD + P;
  const dv = new DataView(b.results.buffer, b.results.byteOffset, b.results.byteLength);
  for (let i = 0; i < b.count; i++) {
    const frame = b.frames.subarray(i * P, (i + 1) * P);
    let tag: Uint8Array | undefined;
    // the tag is the caller's to check (HopEngine.admit); here it is only recorded
    const r = processPacket(b.geometry, keys[b.keyIndex[i]!]!, frame, {
      isReplay: (t) => {
        tag = t;
        return false;
      },
    });
    writeSlot(b.results, dv, i * S, r, tag);
  }
}

function writeSlot(out: Uint8Array, dv: DataView, o: number, r: HopResult, tag: Uint8Array | undefined): void {
  let flags = 0;
  if (tag) {
    flags |= F_TAG;
    out.set(tag, o + TAG_AT);
  }
  let body: Uint8Array | undefined;
  if (!r.ok) {
    out[o] = ST_REFUSED;
    out[o + 1] = SPHINX_DROP_REASONS.indexOf(r.reason);
  } else {
    dv.setUint32(o + 4, r.delayMs, true);
    if (r.kind === 'forward') {
      out[o] = ST_FORWARD;
      out.set(r.next, o + ID_AT);
      body = r.packet;
    } else if (r.kind === 'deliver') {
      out[o] = ST_DELIVER;
      out.set(r.queueId, o + ID_AT);
      if (r.surbId) {
        flags |= F_SURB;
        out.set(r.surbId, o + SURB_AT);
      }
      body = r.payload;
    } else out[o] = ST_COVER;
  }
  out[o + 2] = flags;
  dv.setUint32(o + 8, body?.length ?? 0, true);
  if (body) out.set(body, o + SLOT_HEAD);
}

/**
 * Slot `i` of a batch's results, copied out (the buffers go back to be reused, and a packet held
 * in the delay queue must not keep a whole batch alive): the result as processPacket returns it,
 * and the replay tag when the MAC held.
 */
export function readSlot(geom: Geometry, results: Uint8Array, i: number): { result: HopResult; tag: Uint8Array | undefined } {
  const o = i * slotBytes(geom);
  const dv = new DataView(results.buffer, results.byteOffset, results.byteLength);
  const flags = results[o + 2]!;
  const tag = flags & F_TAG ? results.slice(o + TAG_AT, o + TAG_AT + REPLAY_TAG_LENGTH) : undefined;
  const status = results[o]!;
  if (status === ST_REFUSED) return { result: { ok: false, reason: SPHINX_DROP_REASONS[results[o + 1]!]! }, tag };
  const delayMs = dv.getUint32(o + 4, true);
  const len = dv.getUint32(o + 8, true);
  const body = () => results.slice(o + SLOT_HEAD, o + SLOT_HEAD + len);
  // every ok result has its tag (processPacket records it before it can succeed)
  const replayTag = tag ?? new Uint8Array(REPLAY_TAG_LENGTH);
  if (status === ST_FORWARD)
    return { result: { ok: true, kind: 'forward', next: results.slice(o + ID_AT, o + ID_AT + NODE_ID_LENGTH), delayMs, packet: body(), replayTag }, tag };
  if (status === ST_DELIVER) {
    const queueId = results.slice(o + ID_AT, o + ID_AT + QUEUE_ID_LENGTH);
    const payload = body();
    const result: HopResult =
      flags & F_SURB
        ? { ok: true, kind: 'deliver', queueId, surbId: results.slice(o + SURB_AT, o + SURB_AT + SURB_ID_LENGTH), payload, delayMs, replayTag }
        : { ok: true, kind: 'deliver', queueId, payload, delayMs, replayTag };
    return { result, tag };
  }
  return { result: { ok: true, kind: 'drop', delayMs, replayTag }, tag };
}
