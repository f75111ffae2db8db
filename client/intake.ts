/**
 * Intake: the local SMTP submission server (smtp-server, 127.0.0.1 by default, AUTH PLAIN/LOGIN
 * with the configured user/password), the sendmail-compatible command's helpers, optional
 * header stripping, and the SMTP fallback relay (nodemailer to the user's smarthost).
 *
 * The message body is never altered. Header stripping (off by default) removes only whole
 * header fields (Received, X-Mailer, User-Agent) and, for Message-ID, replaces the host part
 * after '@'; every other byte of the message is kept as submitted.
 */
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import nodemailer from 'nodemailer';
import type { Readable } from 'node:stream';

// ---------------------------------------------------------------------------------------------
// header handling (pure)

export interface StripOptions {
  readonly received?: boolean;
  readonly xMailer?: boolean;
  readonly userAgent?: boolean;
  /** Replace the Message-ID's host part with this (e.g. the From domain); empty: keep. */
  readonly messageIdHost?: string;
}

/** Splits a raw message at the end of its header section: [header incl. final line break(s), body]. */
export function splitHeader(raw: Uint8Array): [Buffer, Buffer] {
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  // header ends at the first empty line: "\r\n\r\n" or "\n\n"
  let i = 0;
  while (i < b.length) {
    const nl = b.indexOf(0x0a, i);
    if (nl < 0) return [b, Buffer.alloc(0)];
    const next = nl + 1;
    if (next === b.length) return [b, Buffer.alloc(0)];
    if (b[next] === 0x0a) return [b.subarray(0, next + 1), b.subarray(next + 1)];
    if (b[next] === 0x0d && b[next + 1] === 0x0a) return [b.subarray(0, next + 2), b.subarray(next + 2)];
    i = next;
  }
  return [b, Buffer.alloc(0)];
}

/** Header fields as raw strings (latin1, folding and line endings kept), plus the blank line. */
function headerFields(h: string): { fields: string[]; tail: string } {
  const lines = h.split(/(?<=\n)/);
  const fields: string[] = [];
  let tail = '';
  for (const line of lines) {
    if (line === '\n' || line === '\r\n') {
      tail = line;
      continue;
    }
    if ((line.startsWith(' ') || line.startsWith('\t')) && fields.length > 0) fields[fields.length - 1] += line;
    else fields.push(line);
  }
  return { fields, tail };
}

function fieldName(f: string): string {
  const c = f.indexOf(':');
  return c < 0 ? '' : f.slice(0, c).trim().toLowerCase();
}

/** Values of the named header fields (unfolded). */
export function headerValues(raw: Uint8Array, name: string): string[] {
  const [h] = splitHeader(raw);
  const { fields } = headerFields(h.toString('latin1'));
  const n = name.toLowerCase();
  return fields
    .filter((f) => fieldName(f) === n)
    .map((f) =>
      f
        .slice(f.indexOf(':') + 1)
        .replace(/\r?\n[ \t]+/g, ' ')
        .trim(),
    );
}

export function stripHeaders(raw: Uint8Array, o: StripOptions): Uint8Array {
  if (!o.received && !o.xMailer && !o.userAgent && !o.messageIdHost) return raw;
  const [h, body] = splitHeader(raw);
  const { fields, tail } = headerFields(h.toString('latin1'));
  const drop = new Set<string>();
  if (o.received) drop.add('received');
  if (o.xMailer) drop.add('x-mailer');
  if (o.userAgent) drop.add('user-agent');
  const kept = fields
    .filter((f) => !drop.has(fieldName(f)))
    .map((f) => (o.messageIdHost && fieldName(f) === 'message-id' ? f.replace(/@[^>\s]*>/, `@${o.messageIdHost}>`) : f));
  return new Uint8Array(Buffer.concat([Buffer.from(kept.join('') + tail, 'latin1'), body]));
}

/** Bare addresses from address-list header values ("A <a@x>, b@y" → a@x, b@y). */
export function addressesIn(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const v of values) {
    // drop quoted display names and comments, then split on commas
    const cleaned = v.replace(/"(?:[^"\\]|\\.)*"/g, '').replace(/\((?:[^()\\]|\\.)*\)/g, '');
    for (const part of cleaned.split(',')) {
      const m = /<([^<>\s]+@[^<>\s]+)>/.exec(part) ?? /([^\s<>:;]+@[^\s<>:;]+)/.exec(part);
      if (m) out.push(m[1]!);
    }
  }
  return out;
}

/** `sendmail -t`: recipients from To, Cc and Bcc. */
export function recipientsFromHeaders(raw: Uint8Array): string[] {
  return [...new Set(addressesIn([...headerValues(raw, 'to'), ...headerValues(raw, 'cc'), ...headerValues(raw, 'bcc')]).map((a) => a.toLowerCase()))];
}

/** `sendmail -t` removes Bcc from what is sent (header only; the body is untouched). */
export function removeBcc(raw: Uint8Array): Uint8Array {
  const [h, body] = splitHeader(raw);
  const { fields, tail } = headerFields(h.toString('latin1'));
  if (!fields.some((f) => fieldName(f) === 'bcc')) return raw;
  return new Uint8Array(Buffer.concat([Buffer.from(fields.filter((f) => fieldName(f) !== 'bcc').join('') + tail, 'latin1'), body]));
}

/** Without -i, sendmail ends input at a line with a single '.'. */
export function cutAtDot(raw: Uint8Array): Uint8Array {
  const s = Buffer.from(raw).toString('latin1');
  const m = /(^|\n)\.\r?\n|(^|\n)\.$/.exec(s);
  return m ? raw.subarray(0, m.index + (m[1] ?? m[2] ?? '').length) : raw;
}

// ---------------------------------------------------------------------------------------------
// the SMTP submission server

/** Thrown by the intake's handler to answer with a specific SMTP code. */
export class SmtpReply extends Error {
  constructor(
    readonly responseCode: number,
    message: string,
  ) {
    super(message);
  }
}

export interface IntakeHandler {
  /** Called per RCPT TO; throw SmtpReply to refuse this recipient (e.g. 550 overlay-only, empty wallet). */
  checkRecipient(address: string): void;
  /** Called with the whole message; must store it durably before returning (then 250). */
  accept(mailFrom: string, recipients: readonly string[], raw: Uint8Array): Promise<string> | string;
}

export interface IntakeOptions {
  readonly host: string;
  readonly port: number;
  /** null: no AUTH required (only sensible on loopback) */
  readonly auth: { readonly user: string; readonly password: string } | null;
  readonly maxMessageBytes: number;
  readonly handler: IntakeHandler;
  readonly banner?: string;
  readonly log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

export interface Intake {
  readonly port: number;
  close(): Promise<void>;
}

function err(code: number, msg: string): Error & { responseCode: number } {
  return Object.assign(new Error(msg), { responseCode: code });
}

export async function startIntake(o: IntakeOptions): Promise<Intake> {
  const server = new SMTPServer({
    name: 'postmix',
    banner: o.banner ?? 'postmix client submission',
    secure: false,
    disabledCommands: o.auth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
    authOptional: !o.auth,
    allowInsecureAuth: true,
    authMethods: ['PLAIN', 'LOGIN'],
    size: o.maxMessageBytes,
    logger: false,
    onAuth(auth, _session, cb) {
      if (o.auth && auth.username === o.auth.user && auth.password === o.auth.password) return cb(null, { user: auth.username });
      o.log?.warn({ user: auth.username }, 'smtp auth failed');
      return cb(err(535, '5.7.8 Authentication credentials invalid'));
    },
    onMailFrom(_a: SMTPServerAddress, session: SMTPServerSession, cb) {
      if (o.auth && !session.user) return cb(err(530, '5.7.0 Authentication required'));
      cb();
    },
    onRcptTo(a: SMTPServerAddress, _s: SMTPServerSession, cb) {
      try {
        o.handler.checkRecipient(a.address);
        cb();
      } catch (e) {
        if (e instanceof SmtpReply) return cb(err(e.responseCode, e.message));
        o.log?.warn({ err: String(e) }, 'recipient check failed');
        cb(err(451, '4.3.0 Temporary local problem; try again later'));
      }
    },
    onData(stream: Readable, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (e) => cb(err(451, `4.3.0 ${e.message}`)));
      stream.on('end', () => {
        if ((stream as Readable & { sizeExceeded?: boolean }).sizeExceeded) return cb(err(552, `5.3.4 Message too big (limit ${o.maxMessageBytes} bytes)`));
        const raw = new Uint8Array(Buffer.concat(chunks));
        const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
        const rcpts = session.envelope.rcptTo.map((r) => r.address);
        Promise.resolve()
          .then(() => o.handler.accept(from, rcpts, raw))
          .then(
            (id) => cb(null, `2.0.0 Ok: queued as ${id}`),
            (e: unknown) => {
              if (e instanceof SmtpReply) return cb(err(e.responseCode, e.message));
              o.log?.warn({ err: String(e) }, 'accept failed');
              cb(err(451, '4.3.0 Could not store the message; try again later'));
            },
          );
      });
    },
  });
  server.on('error', (e) => o.log?.warn({ err: String(e) }, 'smtp server error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : o.port;
  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// ---------------------------------------------------------------------------------------------
// the SMTP fallback and local submission (nodemailer)

export interface SmarthostConfig {
  readonly host: string;
  readonly port: number;
  /** implicit TLS (465) */
  readonly secure: boolean;
  /** refuse to send without STARTTLS */
  readonly requireTls: boolean;
  readonly user?: string;
  readonly password?: string;
  /** accept self-signed certificates (tests only) */
  readonly insecureTls?: boolean;
}

export type RelayResult = { readonly ok: true; readonly response: string } | { readonly ok: false; readonly permanent: boolean; readonly error: string };

/** Sends the raw bytes unchanged to the smarthost with the given envelope. */
export async function relaySmtp(c: SmarthostConfig, from: string, to: readonly string[], raw: Uint8Array): Promise<RelayResult> {
  const t = nodemailer.createTransport({
    host: c.host,
    port: c.port,
    secure: c.secure,
    requireTLS: c.requireTls,
    ignoreTLS: false,
    auth: c.user ? { user: c.user, pass: c.password ?? '' } : undefined,
    tls: c.insecureTls ? { rejectUnauthorized: false } : undefined,
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 60_000,
  });
  try {
    const info = await t.sendMail({ envelope: { from, to: [...to] }, raw: Buffer.from(raw) });
    return { ok: true, response: String(info.response ?? '') };
  } catch (e) {
    const code = (e as { responseCode?: number }).responseCode;
    return { ok: false, permanent: typeof code === 'number' && code >= 500, error: e instanceof Error ? e.message : String(e) };
  } finally {
    t.close();
  }
}
