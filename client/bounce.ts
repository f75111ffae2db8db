/**
 * Bounces as mail users expect: an RFC 3464 delivery status notification
 * (multipart/report; report-type=delivery-status) with the reason in plain words and the
 * original message's header section attached, written to a local Maildir (`new/`, via `tmp/`
 * and rename, as the Maildir convention requires) that the user's mail client reads.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** One recipient the message could not be delivered to. */
export interface FailedRecipient {
  readonly recipient: string;
  readonly reason: string;
  /** SMTP-like status, e.g. 5.7.1 (refused) or 4.4.7 (timed out). */
  readonly status: string;
}

export interface BounceInput {
  readonly to: string;
  /** Every recipient that failed: one DSN lists them all, one per-recipient part each (RFC 3464 §2.3). */
  readonly failed: readonly FailedRecipient[];
  readonly original: Uint8Array;
  readonly messageId: string;
  readonly date?: Date;
}

/** The header section of a raw message (bytes before the first empty line). */
export function headerSection(raw: Uint8Array): string {
  const s = Buffer.from(raw).toString('latin1');
  const m = /\r?\n\r?\n/.exec(s);
  return m ? s.slice(0, m.index) : s;
}

export function buildBounce(b: BounceInput): string {
  const boundary = `postmix-${randomBytes(8).toString('hex')}`;
  const date = (b.date ?? new Date()).toUTCString().replace('GMT', '+0000');
  const hdr = headerSection(b.original).replace(/\r?\n/g, '\r\n');
  return [
    `From: Mail Delivery System <MAILER-DAEMON@postmix.invalid>`,
    `To: ${b.to || 'postmaster'}`,
    `Subject: Undelivered Mail Returned to Sender`,
    `Date: ${date}`,
    `Message-ID: <bounce.${randomBytes(8).toString('hex')}@postmix.invalid>`,
    `Auto-Submitted: auto-replied`,
    `MIME-Version: 1.0`,
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    ``,
    `--${boundary}`,
    `Content-Type: text/plain; charset=utf-8`,
    ``,
    `postmix could not deliver your message (outbox id ${b.messageId}) to:`,
    ``,
    ...b.failed.map((f) => `  <${f.recipient}>: ${f.reason}`),
    ``,
    `The original message's headers are attached.`,
    ``,
    `--${boundary}`,
    `Content-Type: message/delivery-status`,
    ``,
    `Reporting-MTA: dns; postmix.invalid`,
    `X-Postmix-Queue-ID: ${b.messageId}`,
    ...b.failed.flatMap((f) => [
      ``,
      `Final-Recipient: rfc822; ${f.recipient}`,
      `Action: failed`,
      `Status: ${f.status}`,
      `Diagnostic-Code: x-postmix; ${f.reason.replace(/[\r\n]+/g, ' ')}`,
    ]),
    ``,
    `--${boundary}`,
    `Content-Type: text/rfc822-headers`,
    ``,
    hdr,
    ``,
    `--${boundary}--`,
    ``,
  ].join('\r\n');
}

/** Writes a message into a Maildir (creating cur/new/tmp); returns the file path in new/. */
export function deliverToMaildir(dir: string, message: string | Uint8Array): string {
  for (const d of ['tmp', 'new', 'cur']) mkdirSync(join(dir, d), { recursive: true, mode: 0o700 });
  const name = `${Math.floor(Date.now() / 1000)}.P${process.pid}R${randomBytes(6).toString('hex')}.${hostname().replace(/[/:]/g, '_')}`;
  const tmp = join(dir, 'tmp', name);
  writeFileSync(tmp, message, { mode: 0o600, flush: true });
  const dest = join(dir, 'new', name);
  renameSync(tmp, dest);
  return dest;
}
