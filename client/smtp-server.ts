/**
 * The client's local SMTP submission server (smtp-server, 127.0.0.1 by default, AUTH PLAIN/LOGIN
 * with the configured user and password): each RCPT TO is checked by the handler, and the whole
 * message is handed to it, which stores it durably before the 250. An empty message (0 bytes, or
 * no header section) is answered 554 without reaching the handler.
 *
 * The 250 to DATA tells the path of every recipient (RFC 5321 §4.2.1 multi-line reply):
 *
 *     250-2.0.0 Ok: queued as 3f9c…
 *     250-<alice@a.example> overlay: gateway for a.example in epoch 12; 4 token(s) held
 *     250-<bob@b.example> smtp fallback (not anonymous): no postmix gateway serves b.example in network epoch 12
 *     250 <eve@c.example> refused (550): …            (refused at RCPT TO in this transaction)
 *
 * It says only what the user's own client decided, the words `postmix client status` and the
 * logs use. smtp-server (3.21) writes multi-line replies (its `send` takes lines) but gives the
 * DATA callback a single line only: its text has CR/LF replaced and an array means LMTP's one
 * reply per recipient, which over SMTP would be read as replies to later commands. So the
 * server below builds its connections as a subclass whose `send` turns the DATA reply's lines
 * into the library's own multi-line form; should a later version stop calling it that way, the
 * reply degrades to one line with the same words (test/client-tells.test.ts reads the lines).
 *
 * With `tls` (smtp.allow_remote), STARTTLS is offered and AUTH only inside TLS: not advertised,
 * not accepted and MAIL refused before it, so a password never crosses the network in clear.
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { SMTPServer, type SMTPServerAddress, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import { SMTPConnection, type SMTPConnectionOptions } from 'smtp-server/lib/smtp-connection';
import { emptyMessageProblem } from './headers.ts';

/** Thrown by the handler to answer with a specific SMTP code. */
export class SmtpReply extends Error {
  constructor(
    readonly responseCode: number,
    message: string,
  ) {
    super(message);
  }
}

/** The path one recipient of an accepted message takes, and why (the handler's own words). */
export interface AcceptedRecipient {
  readonly address: string;
  readonly path: 'overlay' | 'smtp';
  /** an overlay recipient waiting for a usable network document */
  readonly held?: boolean;
  readonly reason: string;
}

export interface Accepted {
  readonly id: string;
  readonly recipients: readonly AcceptedRecipient[];
}

export interface SubmissionHandler {
  /** Called per RCPT TO; throw SmtpReply to refuse this recipient (e.g. 550 overlay-only, empty wallet). */
  checkRecipient(address: string): void;
  /** Called with the whole message; must store it durably before returning (then 250, which tells each recipient's path). */
  submit(mailFrom: string, recipients: readonly string[], raw: Uint8Array): Promise<Accepted> | Accepted;
}

/** A recipient refused at RCPT TO in the current transaction, told again in the DATA reply. */
export interface RefusedRecipient {
  readonly address: string;
  readonly code: number;
  readonly message: string;
}

/** RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets with its code, separator and CRLF. */
const MAX_LINE_TEXT = 512 - 4 - 2;
function clip(s: string): string {
  if (Buffer.byteLength(s) <= MAX_LINE_TEXT) return s;
  let t = s.slice(0, MAX_LINE_TEXT - 3); // no more characters than octets
  while (Buffer.byteLength(t) > MAX_LINE_TEXT - 3) t = t.slice(0, -1);
  return t + '...';
}

/** One recipient's line: its path in words, with the routing reason (the fallback's "relaying through ..." folded in). */
export function describePath(r: AcceptedRecipient): string {
  if (r.path === 'overlay') return `<${r.address}> overlay${r.held ? ', held' : ''}: ${r.reason}`;
  const m = /^(.*): relaying through the SMTP smarthost \(not anonymous(?:; (.*))?\)$/s.exec(r.reason);
  const why = m ? m[1]! + (m[2] ? ` (${m[2]})` : '') : r.reason;
  return `<${r.address}> smtp fallback (not anonymous): ${why}`;
}

/** The lines of the 250 reply to DATA: the queue id, then every recipient's path, then those refused at RCPT TO. */
export function dataReplyLines(a: Accepted, refused: readonly RefusedRecipient[] = []): string[] {
  const lines = [`2.0.0 Ok: queued as ${a.id}`, ...a.recipients.map(describePath)];
  for (const r of refused) {
    const why = r.message.replace(/^\d\.\d{1,3}\.\d{1,3} /, '').replace(`<${r.address}>: `, '');
    lines.push(`<${r.address}> refused (${r.code}): ${why}`);
  }
  return lines.map(clip);
}

/** The connection class the server below uses: the DATA reply's lines go out as one multi-line reply. */
class PathReplyConnection extends SMTPConnection {
  override send(code: number, data?: string | string[] | null, context?: string | false): void {
    if (code === 250 && context === 'DATA_OK' && typeof data === 'string' && data.includes('\n')) return super.send(code, data.split('\n'), context);
    super.send(code, data, context);
  }
}

class SubmissionSmtpServer extends SMTPServer {
  // SMTPServer.connect as the library has it, with the subclass above
  override connect(socket: Socket | TLSSocket, socketOptions?: SMTPConnectionOptions | null): void {
    const connection = new PathReplyConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on('error', (e: Error) => this._onError(e));
    connection.on('connect', (data) => this._onClientConnect(data));
    connection.init();
  }
}

export interface SubmissionServerOptions {
  readonly host: string;
  readonly port: number;
  /** null: no AUTH required (only sensible on loopback) */
  readonly auth: { readonly user: string; readonly password: string } | null;
  readonly maxMessageBytes: number;
  readonly handler: SubmissionHandler;
  readonly banner?: string;
  /** STARTTLS with this certificate and key (PEM), AUTH only after it; absent: neither (loopback) */
  readonly tls?: { readonly cert: string; readonly key: string };
  readonly log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

export interface SubmissionServer {
  readonly port: number;
  close(): Promise<void>;
}

function err(code: number, msg: string): Error & { responseCode: number } {
  return Object.assign(new Error(msg), { responseCode: code });
}

export async function startSubmissionServer(o: SubmissionServerOptions): Promise<SubmissionServer> {
  // recipients refused at RCPT TO, per session and transaction, for the DATA reply
  const refusedIn = new WeakMap<SMTPServerSession, { transaction: number; list: RefusedRecipient[] }>();
  const refuse = (s: SMTPServerSession, address: string, e: Error & { responseCode: number }) => {
    let r = refusedIn.get(s);
    if (!r || r.transaction !== s.transaction) refusedIn.set(s, (r = { transaction: s.transaction, list: [] }));
    r.list.push({ address, code: e.responseCode, message: e.message });
    return e;
  };
  const tls: Partial<SMTPServerOptions> = o.tls
    ? {
        key: o.tls.key,
        cert: o.tls.cert,
        disabledCommands: o.auth ? [] : ['AUTH'],
        allowInsecureAuth: false,
        // AUTH is neither advertised nor taken before STARTTLS (RFC 4954 §4: no plaintext passwords in clear)
        onConnect(session, cb) {
          if (o.auth && !session.secure) session.disabledCommands = ['AUTH'];
          cb();
        },
        onSecure(_socket, session, cb) {
          session.disabledCommands = undefined;
          cb();
        },
      }
    : { disabledCommands: o.auth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'], allowInsecureAuth: true };
  const server = new SubmissionSmtpServer({
    name: 'postmix',
    banner: o.banner ?? 'postmix client submission',
    secure: false,
    ...tls,
    authOptional: !o.auth,
    authMethods: ['PLAIN', 'LOGIN'],
    size: o.maxMessageBytes,
    logger: false,
    onAuth(auth, session, cb) {
      if (o.tls && !session.secure) return cb(err(530, '5.7.0 Must issue a STARTTLS command first'));
      if (o.auth && auth.username === o.auth.user && auth.password === o.auth.password) return cb(null, { user: auth.username });
      o.log?.warn({ user: auth.username }, 'smtp auth failed');
      return cb(err(535, '5.7.8 Authentication credentials invalid'));
    },
    onMailFrom(_a: SMTPServerAddress, session: SMTPServerSession, cb) {
      if (o.auth && o.tls && !session.secure) return cb(err(530, '5.7.0 Must issue a STARTTLS command first'));
      if (o.auth && !session.user) return cb(err(530, '5.7.0 Authentication required'));
      cb();
    },
    onRcptTo(a: SMTPServerAddress, s: SMTPServerSession, cb) {
      try {
        o.handler.checkRecipient(a.address);
        cb();
      } catch (e) {
        if (e instanceof SmtpReply) return cb(refuse(s, a.address, err(e.responseCode, e.message)));
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
        // refused here, before the handler stores anything or spends a token on it
        const empty = emptyMessageProblem(raw);
        if (empty) {
          o.log?.info({ bytes: raw.byteLength }, `submission refused: ${empty}`);
          return cb(err(554, `5.6.0 Refused: ${empty}; a message needs a header section (From, Date, ...)`));
        }
        const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
        const rcpts = session.envelope.rcptTo.map((r) => r.address);
        const refused = refusedIn.get(session);
        Promise.resolve()
          .then(() => o.handler.submit(from, rcpts, raw))
          .then(
            (a) => cb(null, dataReplyLines(a, refused?.transaction === session.transaction ? refused.list : []).join('\n')),
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
