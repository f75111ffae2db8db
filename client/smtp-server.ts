/**
 * The client's local SMTP submission server (smtp-server, 127.0.0.1 by default, AUTH PLAIN/LOGIN
 * with the configured user and password): each RCPT TO is checked by the handler, and the whole
 * message is handed to it, which stores it durably before the 250. An empty message (0 bytes, or
 * no header section) is answered 554 without reaching the handler.
 */
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import type { Readable } from 'node:stream';
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

export interface SubmissionHandler {
  /** Called per RCPT TO; throw SmtpReply to refuse this recipient (e.g. 550 overlay-only, empty wallet). */
  checkRecipient(address: string): void;
  /** Called with the whole message; must store it durably before returning (then 250). */
  accept(mailFrom: string, recipients: readonly string[], raw: Uint8Array): Promise<string> | string;
}

export interface SubmissionServerOptions {
  readonly host: string;
  readonly port: number;
  /** null: no AUTH required (only sensible on loopback) */
  readonly auth: { readonly user: string; readonly password: string } | null;
  readonly maxMessageBytes: number;
  readonly handler: SubmissionHandler;
  readonly banner?: string;
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
        // refused here, before the handler stores anything or spends a token on it
        const empty = emptyMessageProblem(raw);
        if (empty) {
          o.log?.info({ bytes: raw.byteLength }, `submission refused: ${empty}`);
          return cb(err(554, `5.6.0 Refused: ${empty}; a message needs a header section (From, Date, ...)`));
        }
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
