/**
 * Test messages: RFC 5322 messages shaped like PGP/MIME mail (postmix expects mail that is
 * already encrypted end to end; the armored block here is random bytes, not real ciphertext).
 * Each ends with CRLF, as SMTP DATA delivers it, so Maildir bytes can be compared exactly.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { maildirPath } from './maildir-mx.ts';
import { postfixAsSubmitted } from './postfix.ts';

/** Which MX wrote the Maildirs: the embedded one stores DATA verbatim; Postfix prepends trace headers and stores LF line ends. */
export type MtaKind = 'embedded' | 'postfix';

export function makeMessage(opts: { id: string; from: string; to: string; size: number; date?: Date }): Uint8Array {
  const domain = opts.from.split('@')[1] ?? 'localhost';
  const boundary = `pgp-${opts.id}`;
  const head =
    `From: ${opts.from}\r\nTo: ${opts.to}\r\nSubject: postmix testnet ${opts.id}\r\n` +
    `Date: ${(opts.date ?? new Date()).toUTCString().replace('GMT', '+0000')}\r\n` +
    `Message-ID: <${opts.id}@${domain}>\r\nMIME-Version: 1.0\r\n` +
    `Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="${boundary}"\r\n\r\n` +
    `--${boundary}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n` +
    `--${boundary}\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\n`;
  const tail = `-----END PGP MESSAGE-----\r\n\r\n--${boundary}--\r\n`;
  // armored lines of up to 76 characters, each ending CRLF, filling the message to exactly `size`
  // bytes when it is larger than the fixed parts (headers are ASCII, so characters = bytes)
  let rem = Math.max(0, opts.size - head.length - tail.length);
  const pool = randomBytes(Math.ceil(rem * 0.75) + 8)
    .toString('base64')
    .replace(/[+/=]/g, 'A');
  const lines: string[] = [];
  let at = 0;
  while (rem >= 3) {
    const n = Math.min(76, rem - 2);
    lines.push(pool.slice(at, at + n));
    at += n;
    rem -= n + 2;
  }
  if (rem > 0 && lines.length > 0) lines[lines.length - 1] += 'A'.repeat(rem);
  return new TextEncoder().encode(head + lines.map((l) => l + '\r\n').join('') + tail);
}

/**
 * A PGP/MIME-shaped message holding the lines that mail paths get wrong: a line that starts with
 * a dot, one with two, a lone "." (SMTP's end of data, dot-stuffed on the wire), a body line
 * that looks like a trace header, and 8-bit text. `armorLines` base64 lines of filler make it
 * as long as a test needs (120 spans several 2 KiB fragments). Deterministic, so tests can
 * compare what arrives with it byte for byte.
 */
export function edgeCaseMessage(o: { from?: string; to: string; subject: string; eol?: '\r\n' | '\n'; armorLines?: number }): string {
  const from = o.from ?? 'Alice <alice@sender.test>';
  const domain = /@([^>\s]+)/.exec(from)?.[1] ?? 'sender.test';
  return [
    `From: ${from}`,
    `To: ${o.to}`,
    `Subject: ${o.subject}`,
    'Date: Mon, 23 Nov 2026 01:02:03 +0000',
    `Message-ID: <${o.subject.replace(/\W/g, '')}@${domain}>`,
    'MIME-Version: 1.0',
    'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b1"',
    '',
    '--b1',
    'Content-Type: application/pgp-encrypted',
    '',
    'Version: 1',
    '--b1',
    'Content-Type: application/octet-stream',
    '',
    '-----BEGIN PGP MESSAGE-----',
    ...Array.from({ length: o.armorLines ?? 1 }, (_, i) => Buffer.from(`line ${i} `.repeat(6)).toString('base64').slice(0, 76)),
    '.a line that starts with a dot',
    '..and two dots',
    '.',
    'Received: in the body, not a header',
    'Ünïcödé 8-bit bytes',
    '-----END PGP MESSAGE-----',
    '--b1--',
    '',
  ].join(o.eol ?? '\r\n');
}

export interface MailboxFind {
  /** Files whose bytes equal the submitted message exactly. */
  readonly exact: string[];
  /** Files that carry the message's id but differ (damaged or altered). */
  readonly altered: string[];
  /** mtime (ms) of the first exact copy (when the MX finished writing it) */
  readonly firstArrivalMs: number | null;
}

/** A Maildir file in the form SMTP carried it (see postfixAsSubmitted); the embedded MX stores exactly that. */
export function asSubmitted(file: Buffer, mta: MtaKind): Buffer {
  return mta === 'embedded' ? file : postfixAsSubmitted(file);
}

/** Looks for a message in a recipient's Maildir (new/ and cur/). */
export function findInMaildir(root: string, recipient: string, id: string, bytes: Uint8Array, mta: MtaKind = 'embedded'): MailboxFind {
  const dir = maildirPath(root, recipient);
  const exact: string[] = [];
  const altered: string[] = [];
  let first: number | null = null;
  const needle = `Message-ID: <${id}@`;
  const want = Buffer.from(bytes);
  for (const sub of ['new', 'cur']) {
    const d = join(dir, sub);
    if (!existsSync(d)) continue;
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      const got = asSubmitted(readFileSync(p), mta);
      if (got.equals(want)) {
        exact.push(p);
        const t = statSync(p).mtimeMs;
        if (first === null || t < first) first = t;
      } else if (got.includes(needle)) altered.push(p);
    }
  }
  return { exact, altered, firstArrivalMs: first };
}
