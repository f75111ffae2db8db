/**
 * Header editing (pure): where the header section ends, field values, the optional stripping of
 * identifying fields, and what `sendmail -t` needs (recipients from To/Cc/Bcc, Bcc removed, a
 * lone '.' ending the input).
 *
 * The body is never altered. Stripping (off by default) removes only whole header fields
 * (Received, X-Mailer, User-Agent) and, for Message-ID, replaces the host part after '@'; every
 * other byte of the message is kept as submitted.
 */
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

/** A header field's first line: a field name (printable ASCII but ':') then ':' (RFC 5322 §2.2). */
const FIELD_START = /^[\x21-\x39\x3b-\x7e]+:/;

/**
 * Why a submitted message cannot be a message at all, or null when it can: 0 bytes, or no header
 * section (RFC 5322 requires one: at least the From and Date fields, so a first line that is
 * empty or not a header field means the input is a body without a message around it, typically
 * a script that piped the wrong file). Refused before anything is stored or a token spent.
 */
export function emptyMessageProblem(raw: Uint8Array): string | null {
  if (raw.byteLength === 0) return 'empty message (0 bytes)';
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  // a 0-byte input usually arrives as one line break: mail libraries end DATA on a CRLF
  if (b.every((c) => c === 0x0d || c === 0x0a || c === 0x20 || c === 0x09)) return `empty message (${b.length} bytes of blank lines only)`;
  const nl = b.indexOf(0x0a);
  const first = b.subarray(0, nl < 0 ? b.length : nl).toString('latin1');
  if (!FIELD_START.test(first)) return `no header section (the first line is ${first.replace(/\r$/, '') === '' ? 'empty' : 'not a header field'})`;
  return null;
}
