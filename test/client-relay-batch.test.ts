/**
 * Issue 13 point 4: a message for 250 recipients that go by the SMTP fallback is relayed in a
 * few transactions (at most 100 recipients each, fewer when the server says 452), not 250, and
 * the recipients the smarthost refuses get ONE DSN (RFC 3464) listing each of them. The client
 * runs for real (runClient: SMTP intake, outbox, relay worker); the smarthost is a real SMTP
 * server (smtp-server) that counts its transactions, takes at most 80 recipients per
 * transaction (452 4.5.3 for the rest) and refuses three addresses with 550.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientConfigSchema } from '../client/config.ts';
import { runClient, type RunningClient } from '../client/daemon.ts';
import { freePort } from '../cli/testnet/ports.ts';

const N = 250;
const LIMIT = 80;
const REFUSED = new Set(['r7@plain.test', 'r123@plain.test', 'r249@plain.test']);
let tmp: string;
let smarthost: SMTPServer;
let client: RunningClient;
const transactions: string[][] = [];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'postmix-batch-'));
  const shPort = await freePort();
  smarthost = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onRcptTo(a, session, cb) {
      if (session.envelope.rcptTo.length >= LIMIT) return cb(Object.assign(new Error('4.5.3 Too many recipients'), { responseCode: 452 }));
      if (REFUSED.has(a.address)) return cb(Object.assign(new Error('5.1.1 No such user'), { responseCode: 550 }));
      cb();
    },
    onData(stream, session, cb) {
      stream.resume();
      stream.on('end', () => {
        transactions.push(session.envelope.rcptTo.map((r) => r.address));
        cb();
      });
    },
  });
  await new Promise<void>((r) => smarthost.listen(shPort, '127.0.0.1', () => r()));
  const cfg = ClientConfigSchema.parse({
    data_dir: join(tmp, 'data'),
    log: { level: 'warn' },
    smtp: { host: '127.0.0.1', port: await freePort() },
    smarthost: { host: '127.0.0.1', port: shPort, require_tls: false, retry_base_ms: 100, max_attempts: 5 },
    bounce: { maildir: join(tmp, 'Maildir') },
  });
  client = await runClient(cfg, { log: pino({ level: 'silent' }), maxSleepMs: 50 });
}, 60_000);

afterAll(async () => {
  await client?.stop();
  await new Promise<void>((r) => (smarthost ? smarthost.close(() => r()) : r()));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 30_000);

describe('SMTP fallback for many recipients', () => {
  it('250 recipients: a few transactions of ≤100, a 452 defers only the rest, one DSN lists the 3 refused', async () => {
    const to = Array.from({ length: N }, (_, i) => `r${i}@plain.test`);
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: client.smtpPort, secure: false, ignoreTLS: true });
    await t.sendMail({ envelope: { from: 'alice@sender.test', to }, raw: 'From: alice@sender.test\r\nTo: list@plain.test\r\nSubject: many\r\n\r\nhello\r\n' });
    t.close();
    const end = Date.now() + 30_000;
    while (transactions.flat().length < N - REFUSED.size && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const delivered = transactions.flat();
    expect(new Set(delivered).size).toBe(N - REFUSED.size);
    expect(delivered.length).toBe(N - REFUSED.size); // none twice
    for (const a of REFUSED) expect(delivered).not.toContain(a);
    for (const tx of transactions) expect(tx.length).toBeLessThanOrEqual(LIMIT);
    // 100 + 100 + 50 asked; 80 + 80 (less refused) taken, 20 + 20 deferred to one more: 4 or 5, never 250
    expect(transactions.length).toBeGreaterThanOrEqual(4);
    expect(transactions.length).toBeLessThanOrEqual(6);

    const newDir = join(tmp, 'Maildir', 'new');
    while (!(existsSync(newDir) && readdirSync(newDir).length > 0) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const dsns = readdirSync(newDir);
    expect(dsns).toHaveLength(1);
    const dsn = readFileSync(join(newDir, dsns[0]!), 'utf8');
    expect(dsn).toMatch(/Content-Type: multipart\/report; report-type=delivery-status/);
    const finals = [...dsn.matchAll(/^Final-Recipient: rfc822; (\S+)\r$/gm)].map((m) => m[1]);
    expect(finals.sort()).toEqual([...REFUSED].sort());
    expect(dsn.match(/^Status: 5\.0\.0\r$/gm)).toHaveLength(3);
    expect(dsn).toMatch(/<r123@plain\.test>: the smarthost refused it: 550 5\.1\.1 No such user/);
  }, 60_000);
});
