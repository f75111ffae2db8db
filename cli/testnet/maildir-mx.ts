/**
 * The testnet's embedded MX: an SMTP server (smtp-server) on loopback that writes each accepted
 * message, byte for byte as received in DATA, into a Maildir per recipient
 * (<root>/<domain>/<local part>/new/<unique name>). It adds nothing to the message, so a test
 * can compare the file with what the sender submitted. `--mta postfix` uses a real Postfix
 * instead (which adds trace headers at the top).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';

export interface MaildirMxOptions {
  readonly host: string;
  readonly port: number;
  /** Domains this MX accepts mail for; anything else gets 550. */
  readonly domains: readonly string[];
  readonly root: string;
  /** Called after a message is safely in new/. */
  readonly onDelivered?: (info: { recipient: string; file: string; bytes: number; messageId?: string }) => void;
}

export interface MaildirMx {
  readonly port: number;
  close(): Promise<void>;
}

let seq = 0;

export function maildirPath(root: string, address: string): string {
  const [local, domain] = address.toLowerCase().split('@') as [string, string];
  return join(root, domain, local);
}

/** Writes one message into a Maildir the way Maildir requires: tmp/ then rename into new/. */
export function deliverToMaildir(dir: string, bytes: Uint8Array): string {
  for (const sub of ['tmp', 'new', 'cur']) mkdirSync(join(dir, sub), { recursive: true });
  const name = `${Date.now()}.P${process.pid}Q${++seq}.${hostname()}`;
  const tmp = join(dir, 'tmp', name);
  writeFileSync(tmp, bytes, { flush: true });
  const dest = join(dir, 'new', name);
  renameSync(tmp, dest);
  return dest;
}

export function startMaildirMx(opts: MaildirMxOptions): Promise<MaildirMx> {
  const domains = new Set(opts.domains.map((d) => d.toLowerCase()));
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    banner: 'postmix testnet MX',
    // a stopped MX (the outage chaos step) must not wait for the gateway's open connection to end
    closeTimeout: 500,
    size: 64 * 1024 * 1024,
    onRcptTo(address, _session, cb) {
      const domain = address.address.split('@')[1]?.toLowerCase() ?? '';
      if (!domains.has(domain)) {
        const e = new Error(`5.1.2 relay not permitted: this MX serves ${[...domains].join(', ')}`) as Error & { responseCode: number };
        e.responseCode = 550;
        return cb(e);
      }
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        try {
          const bytes = Buffer.concat(chunks);
          for (const r of session.envelope.rcptTo) {
            const file = deliverToMaildir(maildirPath(opts.root, r.address), bytes);
            opts.onDelivered?.({ recipient: r.address.toLowerCase(), file, bytes: bytes.length });
          }
          cb();
        } catch (e) {
          const err = new Error(`4.3.0 cannot store message: ${(e as Error).message}`) as Error & { responseCode: number };
          err.responseCode = 451;
          cb(err);
        }
      });
    },
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      const addr = server.server.address();
      resolve({
        port: typeof addr === 'object' && addr ? addr.port : opts.port,
        close: () => new Promise<void>((r) => server.close(() => r())),
      });
    });
  });
}
