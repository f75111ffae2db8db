/**
 * Queues at a final hop (docs/spec/mailbox.md). A Sphinx Deliver command names a 32-byte
 * queue id: MAIL_QUEUE_ID is a gateway's mail intake (fragments for its domains, and the
 * payload stream's decoys); any other id is a client's mailbox at its home gateway, where SURB
 * replies wait until the gateway passes them on over `/postmix/mailbox/3`.
 *
 * Version 3: a mailbox holds one kind of item, a SURB reply, whatever it answers (an ACK, the
 * answer to a decoy, or the client's own loop, which the client sends as a reply through a SURB
 * of its own): the home gateway stores and frames each the same, one size, so it cannot tell
 * ACKs from cover. Only the client, opening a reply with its SURB keys, learns which it was.
 * The gateway writes one item frame per tick to each subscriber, dummies filling the gaps, so an
 * observer of the client's link learns nothing from the stream either.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesEqual } from '../util/bytes.ts';

export const MAILBOX_PROTOCOL = '/postmix/mailbox/3';
export const MAILBOX_VERSION = 3;
export const MAIL_QUEUE_ID: Uint8Array = sha256(new TextEncoder().encode('postmix-queue-v1|mail'));

export function isMailQueue(queueId: Uint8Array): boolean {
  return bytesEqual(queueId, MAIL_QUEUE_ID);
}

/** What waits in a mailbox: a SURB reply, still encrypted for the SURB's creator. */
export interface MailboxItem {
  /** The id the creator stored the reply keys under (16 bytes). */
  readonly surbId: Uint8Array;
  /** The Sphinx payload as the last hop delivered it: 16-byte tag + payloadSize bytes. */
  readonly payload: Uint8Array;
}

/**
 * The mailbox item for a final-hop delivery to a client mailbox, or null when it may not enter
 * one: only SURB replies do (a plain Deliver to a mailbox id is refused, so that no second kind
 * of item exists for the gateway to count).
 */
export function mailboxItemOf(r: { readonly surbId?: Uint8Array; readonly payload: Uint8Array }): MailboxItem | null {
  return r.surbId !== undefined && r.surbId.length === SURB_ID_LENGTH ? { surbId: r.surbId, payload: r.payload } : null;
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

const KIND_ITEM = 1;
// 2 was version 2's plain delivery (a loop in the clear): no longer sent, refused
const KIND_DUMMY = 3;
const SURB_ID_LENGTH = 16;
/** The Sphinx payload tag, part of the body of every item. */
const TAG_LENGTH = 16;
const HEAD = 1 + SURB_ID_LENGTH + TAG_LENGTH;

/** Size of every gateway → client item frame (before its length prefix) for a payload size. */
export function mailboxItemSize(payloadSize: number): number {
  return HEAD + payloadSize;
}

/**
 * Gateway → client frame: kind (1 item, 3 dummy) || SURB id (16; zero for a dummy) || body
 * (16 + payloadSize): the Sphinx payload as delivered (still encrypted for the SURB's creator);
 * a dummy's body is zeros. Throws RangeError when the item does not fit `payloadSize` (a local
 * bug, or an item stored under an older geometry, which the gateway drops).
 */
export function encodeItem(item: MailboxItem, payloadSize: number): Uint8Array {
  const out = new Uint8Array(mailboxItemSize(payloadSize));
  if (item.surbId.length !== SURB_ID_LENGTH || item.payload.length !== TAG_LENGTH + payloadSize)
    throw new RangeError(`a mailbox item must carry a 16-byte SURB id and ${TAG_LENGTH + payloadSize} payload bytes`);
  out[0] = KIND_ITEM;
  out.set(item.surbId, 1);
  out.set(item.payload, 1 + SURB_ID_LENGTH);
  return out;
}

/**
 * How much faster than items arrive the gateway writes frames. Every slot of a client's payload
 * stream (λ_P: a fragment or a decoy) and every loop (λ_L) brings one item back, so items arrive
 * as a Poisson process at λ_P + λ_L; a pacer at exactly that rate would be a queue at full load
 * (its backlog growing without bound), hence the headroom: at 1.5 the pacer is 2/3 busy and an
 * item waits one tick on average (M/D/1) besides the half tick to the next one.
 */
export const MAILBOX_HEADROOM = 1.5;

/**
 * Items per second the gateway writes on each subscribed mailbox stream:
 * MAILBOX_HEADROOM × (λ_P + λ_L) of the network document (the rate at which a client's items
 * arrive, every payload slot and every loop bringing one back), at least 1 so a mailbox never
 * stalls.
 */
export function mailboxRate(mixing: { readonly lambdaP: number; readonly lambdaL: number }): number {
  const r = MAILBOX_HEADROOM * (mixing.lambdaP + mixing.lambdaL);
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
  if (b[0] === KIND_ITEM) return { surbId: b.slice(1, 1 + SURB_ID_LENGTH), payload: b.slice(1 + SURB_ID_LENGTH) };
  return null;
}
