/**
 * Queues at a final hop (docs/spec/mailbox.md). A Sphinx Deliver command names a 32-byte
 * queue id: MAIL_QUEUE_ID is a gateway's mail intake (fragments for its domains); any other
 * id is a client's mailbox at its home gateway, where SURB replies (ACKs) and the client's
 * own loop cover wait until the gateway passes them on over `/postmix/mailbox/2`.
 *
 * Version 2: every item frame on the gateway → client stream has one size for a given payload
 * size, and the gateway sends them at a constant rate, dummies filling the gaps, so that an
 * observer of the client's link can tell neither an ACK from a loop nor when ACKs arrive.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesEqual } from '../util/bytes.ts';

export const MAILBOX_PROTOCOL = '/postmix/mailbox/2';
export const MAILBOX_VERSION = 2;
export const MAIL_QUEUE_ID: Uint8Array = sha256(new TextEncoder().encode('postmix-queue-v1|mail'));

export function isMailQueue(queueId: Uint8Array): boolean {
  return bytesEqual(queueId, MAIL_QUEUE_ID);
}

/** What waits in a mailbox: a SURB reply (still encrypted for its creator) or a plain payload. */
export interface MailboxItem {
  /** Present for SURB replies: the id the creator stored the reply keys under. */
  readonly surbId?: Uint8Array;
  readonly payload: Uint8Array;
}

/** Client → gateway, the first (and only) frame on a mailbox stream: version || mailbox id. */
export function encodeSubscribe(mailboxId: Uint8Array): Uint8Array {
  if (mailboxId.length !== 32) throw new RangeError('mailbox id must be 32 bytes');
  const out = new Uint8Array(33);
  out[0] = MAILBOX_VERSION;
  out.set(mailboxId, 1);
  return out;
}

export function decodeSubscribe(b: Uint8Array): Uint8Array | null {
  if (b.length !== 33 || b[0] !== MAILBOX_VERSION) return null;
  const id = b.slice(1);
  return isMailQueue(id) ? null : id;
}

const KIND_SURB_REPLY = 1;
const KIND_PLAIN = 2;
const KIND_DUMMY = 3;
const SURB_ID_LENGTH = 16;
/** The Sphinx payload tag; a plain item carries it as zeros so both kinds have one size. */
const TAG_LENGTH = 16;
const HEAD = 1 + SURB_ID_LENGTH + TAG_LENGTH;

/** Size of every gateway → client item frame (before its length prefix) for a payload size. */
export function mailboxItemSize(payloadSize: number): number {
  return HEAD + payloadSize;
}

/**
 * Gateway → client frame: kind (1 SURB reply, 2 plain, 3 dummy) || SURB id (16; zero unless
 * kind 1) || body (16 + payloadSize). A SURB reply's body is the Sphinx payload as delivered
 * (still encrypted for the SURB's creator); a plain item's body is 16 zero bytes (where the
 * Sphinx payload had its zero tag) || the plaintext; a dummy's body is zeros. Throws RangeError
 * when the item does not fit `payloadSize` (a local bug, or an item stored under an older
 * geometry, which the gateway drops).
 */
export function encodeItem(item: MailboxItem, payloadSize: number): Uint8Array {
  const out = new Uint8Array(mailboxItemSize(payloadSize));
  if (item.surbId) {
    if (item.surbId.length !== SURB_ID_LENGTH || item.payload.length !== TAG_LENGTH + payloadSize)
      throw new RangeError(`a SURB reply item must carry a 16-byte id and ${TAG_LENGTH + payloadSize} payload bytes`);
    out[0] = KIND_SURB_REPLY;
    out.set(item.surbId, 1);
    out.set(item.payload, 1 + SURB_ID_LENGTH);
  } else {
    if (item.payload.length !== payloadSize) throw new RangeError(`a plain item must carry ${payloadSize} payload bytes`);
    out[0] = KIND_PLAIN;
    out.set(item.payload, HEAD);
  }
  return out;
}

/**
 * Items per second the gateway writes on each subscribed mailbox stream: λ_P + λ_L of the
 * network document (a client's ACKs come back at most at its real-packet rate, which λ_P bounds,
 * and its loops at λ_L), at least 1 so a mailbox never stalls.
 */
export function mailboxRate(mixing: { readonly lambdaP: number; readonly lambdaL: number }): number {
  const r = mixing.lambdaP + mixing.lambdaL;
  return Number.isFinite(r) && r > 1 ? r : 1;
}

/** The filler the gateway sends when a subscribed mailbox is empty at its tick. */
export function encodeDummyItem(payloadSize: number): Uint8Array {
  const out = new Uint8Array(mailboxItemSize(payloadSize));
  out[0] = KIND_DUMMY;
  return out;
}

/** An item, 'dummy', or null for a malformed frame (never throws). */
export function decodeItem(b: Uint8Array): MailboxItem | 'dummy' | null {
  if (b.length < HEAD) return null;
  if (b[0] === KIND_DUMMY) return 'dummy';
  if (b[0] === KIND_SURB_REPLY) return { surbId: b.slice(1, 1 + SURB_ID_LENGTH), payload: b.slice(1 + SURB_ID_LENGTH) };
  if (b[0] === KIND_PLAIN) {
    for (let i = 1; i < HEAD; i++) if (b[i] !== 0) return null;
    return { payload: b.slice(HEAD) };
  }
  return null;
}
