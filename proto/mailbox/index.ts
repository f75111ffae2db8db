/**
 * Queues at a final hop (docs/spec/mailbox.md). A Sphinx Deliver command names a 32-byte
 * queue id: MAIL_QUEUE_ID is a gateway's mail intake (fragments for its domains); any other
 * id is a client's mailbox at its home gateway, where SURB replies (ACKs) and the client's
 * own loop cover wait until the client fetches them over `/postmix/mailbox/1`.
 */
import { sha256 } from '@noble/hashes/sha2.js';

export const MAILBOX_PROTOCOL = '/postmix/mailbox/1';
export const MAILBOX_VERSION = 1;
export const MAIL_QUEUE_ID: Uint8Array = sha256(new TextEncoder().encode('postmix-queue-v1|mail'));

export function isMailQueue(queueId: Uint8Array): boolean {
  if (queueId.length !== 32) return false;
  let d = 0;
  for (let i = 0; i < 32; i++) d |= queueId[i]! ^ MAIL_QUEUE_ID[i]!;
  return d === 0;
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

/** Gateway → client frames: kind (1: SURB reply, 2: plain) || surb id (16, zero for plain) || payload. */
export function encodeItem(item: MailboxItem): Uint8Array {
  const out = new Uint8Array(1 + 16 + item.payload.length);
  out[0] = item.surbId ? 1 : 2;
  if (item.surbId) out.set(item.surbId.subarray(0, 16), 1);
  out.set(item.payload, 17);
  return out;
}

export function decodeItem(b: Uint8Array): MailboxItem | null {
  if (b.length < 17) return null;
  if (b[0] === 1) return { surbId: b.slice(1, 17), payload: b.slice(17) };
  if (b[0] === 2) return { payload: b.slice(17) };
  return null;
}
