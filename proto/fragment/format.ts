/**
 * What travels inside a Sphinx payload between a client and a gateway (docs/spec/fragment.md).
 * Every encoding is padded by the Sphinx layer to the geometry's payload size, so all of these
 * look alike on the wire.
 */
export const FRAGMENT_VERSION = 1;
export const KIND_FRAGMENT = 1;
export const KIND_ACK = 2;
export const KIND_LOOP = 3;
export const KIND_DECOY = 4;

export const MESSAGE_ID_LENGTH = 16;
export const MAX_RECIPIENT_LENGTH = 254;
export const MAX_FRAGMENTS = 65535;

/** A gateway's answer for one fragment. */
export enum AckStatus {
  /** The fragment is stored durably; the message is not complete yet. */
  Stored = 0,
  /** The fragment completed its message, which is now in the durable hand-off queue. */
  Queued = 1,
  /** The message is already queued or delivered (a resend after a lost ACK). */
  Duplicate = 2,
  /** Refused: no valid unspent token for this recipient (forged, spent, expired, wrong recipient). */
  TokenRefused = 3,
  /** Refused: this gateway does not serve that recipient. */
  UnknownRecipient = 4,
  /** Refused: the message is larger than the gateway accepts. */
  TooLarge = 5,
  /** Refused: the fragment contradicts earlier fragments of the same message id. */
  Inconsistent = 6,
  /** Refused: the recipient's open policy rate limit is exhausted; retry later. */
  RateLimited = 7,
}

export function ackIsFinalRefusal(s: AckStatus): boolean {
  return s === AckStatus.TokenRefused || s === AckStatus.UnknownRecipient || s === AckStatus.TooLarge || s === AckStatus.Inconsistent;
}

export interface Fragment {
  readonly messageId: Uint8Array;
  readonly index: number;
  readonly count: number;
  /** Length in bytes of the whole message (all fragments' data). */
  readonly totalLength: number;
  /** The recipient's address (lower-cased ASCII/UTF-8, at most 254 bytes). */
  readonly recipient: string;
  /** The encoded delivery token (docs/spec/tokens.md), empty for an open-policy recipient. */
  readonly token: Uint8Array;
  /** A SURB for this fragment's ACK (docs/spec/sphinx.md §8), empty when none is wanted. */
  readonly surb: Uint8Array;
  readonly data: Uint8Array;
}

export interface Ack {
  readonly messageId: Uint8Array;
  readonly index: number;
  readonly status: AckStatus;
}

export type DecodeError = { readonly ok: false; readonly reason: string };

const utf8 = new TextEncoder();
const utf8d = new TextDecoder('utf-8', { fatal: true });

/** Fixed bytes of a fragment besides recipient, token, SURB and data. */
export const FRAGMENT_OVERHEAD = 2 + MESSAGE_ID_LENGTH + 2 + 2 + 4 + 1 + 2 + 2 + 2;

/** How many message bytes fit in one fragment. */
export function fragmentCapacity(payloadSize: number, recipientBytes: number, tokenBytes: number, surbBytes: number): number {
  return payloadSize - FRAGMENT_OVERHEAD - recipientBytes - tokenBytes - surbBytes;
}

export function encodeFragment(f: Fragment, payloadSize: number): Uint8Array {
  const rcpt = utf8.encode(f.recipient);
  if (f.messageId.length !== MESSAGE_ID_LENGTH) throw new RangeError('message id must be 16 bytes');
  if (rcpt.length < 1 || rcpt.length > MAX_RECIPIENT_LENGTH) throw new RangeError('recipient must be 1..254 bytes');
  if (!(f.count >= 1 && f.count <= MAX_FRAGMENTS && f.index >= 0 && f.index < f.count)) throw new RangeError('bad fragment index/count');
  if (f.token.length > 0xffff || f.surb.length > 0xffff) throw new RangeError('token or SURB too long');
  const len = FRAGMENT_OVERHEAD + rcpt.length + f.token.length + f.surb.length + f.data.length;
  if (len > payloadSize) throw new RangeError(`fragment needs ${len} bytes; the payload holds ${payloadSize}`);
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  let o = 0;
  out[o++] = FRAGMENT_VERSION;
  out[o++] = KIND_FRAGMENT;
  out.set(f.messageId, o);
  o += MESSAGE_ID_LENGTH;
  dv.setUint16(o, f.index);
  dv.setUint16(o + 2, f.count);
  dv.setUint32(o + 4, f.totalLength);
  o += 8;
  out[o++] = rcpt.length;
  out.set(rcpt, o);
  o += rcpt.length;
  dv.setUint16(o, f.token.length);
  o += 2;
  out.set(f.token, o);
  o += f.token.length;
  dv.setUint16(o, f.surb.length);
  o += 2;
  out.set(f.surb, o);
  o += f.surb.length;
  dv.setUint16(o, f.data.length);
  o += 2;
  out.set(f.data, o);
  return out;
}

export function encodeAck(a: Ack): Uint8Array {
  const out = new Uint8Array(2 + MESSAGE_ID_LENGTH + 2 + 1);
  out[0] = FRAGMENT_VERSION;
  out[1] = KIND_ACK;
  out.set(a.messageId, 2);
  new DataView(out.buffer).setUint16(2 + MESSAGE_ID_LENGTH, a.index);
  out[2 + MESSAGE_ID_LENGTH + 2] = a.status;
  return out;
}

/** A loop cover payload: an id the sender recognises when the loop comes back. */
export function encodeLoop(loopId: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + 16);
  out[0] = FRAGMENT_VERSION;
  out[1] = KIND_LOOP;
  out.set(loopId.subarray(0, 16), 2);
  return out;
}

/**
 * Payload-stream cover (docs/spec/fragment.md "Decoy"): sent to a gateway's mail queue in a slot
 * of the λ_P stream that carries no fragment. The gateway answers it through `surb` exactly as it
 * answers a fragment (after the same commit and hop delay), with the loop payload
 * `encodeLoop(id)`, so the client's mailbox gets one item per payload slot whether the slot was
 * real or cover.
 */
export interface Decoy {
  readonly id: Uint8Array;
  readonly surb: Uint8Array;
}

/** Fixed bytes of a decoy besides its SURB: version, kind, id, SURB length. */
export const DECOY_OVERHEAD = 2 + 16 + 2;

export function encodeDecoy(d: Decoy, payloadSize: number): Uint8Array {
  if (d.id.length !== 16) throw new RangeError('decoy id must be 16 bytes');
  if (d.surb.length < 1 || d.surb.length > 0xffff) throw new RangeError('a decoy carries a SURB');
  const len = DECOY_OVERHEAD + d.surb.length;
  if (len > payloadSize) throw new RangeError(`decoy needs ${len} bytes; the payload holds ${payloadSize}`);
  const out = new Uint8Array(len);
  out[0] = FRAGMENT_VERSION;
  out[1] = KIND_DECOY;
  out.set(d.id, 2);
  new DataView(out.buffer).setUint16(18, d.surb.length);
  out.set(d.surb, DECOY_OVERHEAD);
  return out;
}

export type Decoded =
  | { readonly ok: true; readonly kind: 'fragment'; readonly fragment: Fragment }
  | { readonly ok: true; readonly kind: 'ack'; readonly ack: Ack }
  | { readonly ok: true; readonly kind: 'loop'; readonly loopId: Uint8Array }
  | { readonly ok: true; readonly kind: 'decoy'; readonly decoy: Decoy }
  | DecodeError;

function bad(reason: string): DecodeError {
  return { ok: false, reason };
}

/** Decodes a payload (trailing zero padding allowed). Never throws. */
export function decodePayload(b: Uint8Array): Decoded {
  if (b.length < 2) return bad('truncated');
  if (b[0] !== FRAGMENT_VERSION) return bad('unknown version');
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const kind = b[1];
  if (kind === KIND_ACK) {
    if (b.length < 21) return bad('truncated ack');
    const status = b[20]!;
    if (status > AckStatus.RateLimited) return bad('unknown ack status');
    return { ok: true, kind: 'ack', ack: { messageId: b.slice(2, 18), index: dv.getUint16(18), status } };
  }
  if (kind === KIND_LOOP) {
    if (b.length < 18) return bad('truncated loop');
    return { ok: true, kind: 'loop', loopId: b.slice(2, 18) };
  }
  if (kind === KIND_DECOY) {
    if (b.length < DECOY_OVERHEAD) return bad('truncated decoy');
    const l = dv.getUint16(18);
    if (l < 1 || DECOY_OVERHEAD + l > b.length) return bad('bad decoy SURB length');
    for (let i = DECOY_OVERHEAD + l; i < b.length; i++) if (b[i] !== 0) return bad('non-zero padding');
    return { ok: true, kind: 'decoy', decoy: { id: b.slice(2, 18), surb: b.slice(DECOY_OVERHEAD, DECOY_OVERHEAD + l) } };
  }
  if (kind !== KIND_FRAGMENT) return bad('unknown kind');
  let o = 2;
  const need = (n: number) => o + n <= b.length;
  if (!need(MESSAGE_ID_LENGTH + 8 + 1)) return bad('truncated fragment');
  const messageId = b.slice(o, o + MESSAGE_ID_LENGTH);
  o += MESSAGE_ID_LENGTH;
  const index = dv.getUint16(o);
  const count = dv.getUint16(o + 2);
  const totalLength = dv.getUint32(o + 4);
  o += 8;
  if (count < 1 || index >= count) return bad('bad fragment index/count');
  const rlen = b[o++]!;
  if (rlen < 1 || !need(rlen)) return bad('bad recipient length');
  let recipient: string;
  try {
    recipient = utf8d.decode(b.subarray(o, o + rlen));
  } catch {
    return bad('recipient is not UTF-8');
  }
  o += rlen;
  const field = (): Uint8Array | null => {
    if (!need(2)) return null;
    const l = dv.getUint16(o);
    o += 2;
    if (!need(l)) return null;
    const v = b.slice(o, o + l);
    o += l;
    return v;
  };
  const token = field();
  if (!token) return bad('truncated token');
  const surb = field();
  if (!surb) return bad('truncated SURB');
  const data = field();
  if (!data) return bad('truncated data');
  if (data.length > totalLength) return bad('fragment longer than its message');
  for (let i = o; i < b.length; i++) if (b[i] !== 0) return bad('non-zero padding');
  return { ok: true, kind: 'fragment', fragment: { messageId, index, count, totalLength, recipient, token, surb, data } };
}
