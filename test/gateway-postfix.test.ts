/**
 * The gateway's intake and hand-off against a REAL Postfix (Debian package `postfix`) started
 * by this file on a loopback port with its own config, queue and Maildir under a temp dir
 * (cli/testnet/postfix.ts, mx role).
 *
 * What "byte for byte" means here: Postfix's Maildir delivery writes the file as
 *   <trace headers Postfix adds on top> || <the submitted message>
 * where the trace headers are exactly Return-Path, X-Original-To, Delivered-To and Received
 * (with its folded continuation lines), and Maildir files use LF line ends. So for a message
 * submitted with LF line ends we assert the file ENDS WITH the submitted bytes unchanged and
 * that everything before them is only those trace header lines; for a CRLF message the
 * same holds after CRLF → LF (SMTP carries CRLF; the MX stores the Unix form).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { edgeCaseMessage } from '../cli/testnet/messages.ts';
import { freePort } from '../cli/testnet/ports.ts';
import { createPostfix, postfixAvailable, type PostfixServer } from '../cli/testnet/postfix.ts';
import { AckStatus } from '../proto/fragment/index.ts';
import { deriveIssuerKeys } from '../proto/tokens/index.ts';
import { HandoffWorker } from '../gateway/handoff.ts';
import { Intake } from '../gateway/intake.ts';
import { GatewayStore } from '../gateway/store.ts';
import { messageFragments, fragmentPayloads } from './support/fragments.ts';
import { issuedTokens } from './support/tokens.ts';

const DOMAIN = 'example.org';
const BOB = 'bob@example.org';
const issuer = deriveIssuerKeys(new Uint8Array(32).fill(3));

const why = postfixAvailable();
if (why) throw new Error(`test/gateway-postfix.test.ts needs a real Postfix: ${why}`);

let pf: PostfixServer;
let dir: string;
let n = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pmx-gw-pf-'));
  // the MX knows only bob (so that a recipient the gateway knows but the MX does not gets a 5xx)
  pf = createPostfix({
    dir: join(dir, 'postfix'),
    name: 'mx',
    port: await freePort(),
    role: { kind: 'mx', domains: [DOMAIN], mailRoot: join(dir, 'mail'), mailboxes: [BOB] },
  });
  await pf.start();
});

afterAll(async () => {
  await pf?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * Files delivered to `address`'s Maildir new/, oldest first. By modification time, not by name:
 * virtual(8) names files `<s>.V…I…M<µs>.<host>` with an unpadded µs field, so names from the
 * same second do not sort in delivery order.
 */
function maildirFiles(address: string): string[] {
  const d = join(pf.maildir(address), 'new');
  if (!existsSync(d)) return [];
  const withTime = readdirSync(d).map((f) => ({ p: join(d, f), t: statSync(join(d, f), { bigint: true }).mtimeNs }));
  return withTime.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : a.p < b.p ? -1 : 1)).map((x) => x.p);
}

async function waitForMail(address: string, n: number, timeoutMs = 20_000): Promise<string[]> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const files = maildirFiles(address);
    if (files.length >= n || Date.now() > end) return files;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function message(subject: string, eol: '\n' | '\r\n' = '\n'): Buffer {
  return Buffer.from(edgeCaseMessage({ from: 'Alice <alice@sender.example>', to: 'Bob <bob@example.org>', subject, eol, armorLines: 120 }), 'utf8');
}

/** Checks a delivered Maildir file against the submitted bytes (see the file comment). */
function expectDelivered(file: string, submitted: Buffer): void {
  const got = readFileSync(file);
  const want = Buffer.from(submitted.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
  expect(got.length).toBeGreaterThan(want.length);
  expect(Buffer.compare(got.subarray(got.length - want.length), want)).toBe(0);
  const prefix = got.subarray(0, got.length - want.length).toString('utf8');
  expect(prefix.endsWith('\n')).toBe(true);
  const names = prefix
    .slice(0, -1)
    .split('\n')
    .filter((l) => !/^[ \t]/.test(l))
    .map((l) => l.slice(0, l.indexOf(':')));
  expect(names).toEqual(['Return-Path', 'X-Original-To', 'Delivered-To', 'Received']);
}

function gateway(path: string, now: () => number = Date.now) {
  const store = new GatewayStore(path);
  if (!store.getUser(BOB)) store.addUser(BOB);
  const intake = new Intake(store, { domains: [DOMAIN], issuer, maxMessageBytes: 1_000_000, reassemblyTtlMs: 3_600_000, now });
  const handoff = new HandoffWorker({ store, mx: { host: '127.0.0.1', port: pf.port, starttls: 'never', timeoutMs: 5000 }, baseDelayMs: 60_000, now });
  return { store, intake, handoff };
}

function submit(intake: Intake, body: Buffer): { statuses: AckStatus[]; payloads: Uint8Array[] } {
  const [t] = issuedTokens(issuer, BOB, 1, 1);
  const payloads = fragmentPayloads(messageFragments(new Uint8Array(body), BOB, t!));
  const statuses = payloads.map((p) => {
    const r = intake.handlePayload(p);
    if (r.kind !== 'ack') throw new Error(`dropped: ${r.kind === 'drop' ? r.reason : r.kind}`);
    return r.status;
  });
  return { statuses, payloads };
}

describe('gateway → real Postfix', () => {
  it('delivers a fragmented message byte for byte (LF and CRLF line ends)', async () => {
    const g = gateway(join(dir, `gw${n++}.sqlite`));
    const before = maildirFiles(BOB).length;
    const lf = message('lf message');
    const crlf = message('crlf message', '\r\n');
    const a = submit(g.intake, lf);
    expect(a.statuses.length).toBeGreaterThan(2);
    expect(a.statuses.at(-1)).toBe(AckStatus.Queued);
    expect(submit(g.intake, crlf).statuses.at(-1)).toBe(AckStatus.Queued);
    expect(await g.handoff.runOnce()).toBe(2);
    const files = (await waitForMail(BOB, before + 2)).slice(before);
    expect(files.length).toBe(2);
    const bodies = files.map((f) => readFileSync(f, 'utf8'));
    expectDelivered(files[bodies.findIndex((b) => b.includes('Subject: lf message'))]!, lf);
    expectDelivered(files[bodies.findIndex((b) => b.includes('Subject: crlf message'))]!, crlf);
    expect(g.store.queueDepth()).toEqual({ queued: 0, sending: 0, delivered: 2, failed: 0 });
    await g.handoff.stop();
    g.store.close();
  });

  it('gateway killed between ACK and hand-off (store reopened): delivered exactly once, resends are Duplicates', async () => {
    const path = join(dir, `gw${n++}.sqlite`);
    const before = maildirFiles(BOB).length;
    const body = message('crash between ack and handoff');
    let g = gateway(path);
    const { statuses, payloads } = submit(g.intake, body);
    expect(statuses.at(-1)).toBe(AckStatus.Queued); // the ACK went out: the message must not be lost
    // "kill": drop the process state without any shutdown step (the DB file is all that remains)
    g.store.db.close();
    g = gateway(path);
    // the sender did not get some ACKs and resends: harmless
    for (const p of payloads) {
      const r = g.intake.handlePayload(p);
      expect(r.kind === 'ack' && r.status).toBe(AckStatus.Duplicate);
    }
    g.handoff.recover();
    expect(await g.handoff.runOnce()).toBe(1);
    expect(await g.handoff.runOnce()).toBe(0);
    await g.handoff.stop();
    g.store.close();
    // and once more after another restart
    g = gateway(path);
    expect(g.handoff.recover()).toBe(0);
    expect(await g.handoff.runOnce()).toBe(0);
    await g.handoff.stop();
    g.store.close();
    const files = (await waitForMail(BOB, before + 1)).slice(before);
    await new Promise((r) => setTimeout(r, 300));
    expect(maildirFiles(BOB).length).toBe(before + 1);
    expectDelivered(files[0]!, body);
  });

  it('gateway process SIGKILLed after ACKing and before the hand-off: delivered exactly once after restart', async () => {
    const path = join(dir, `gw${n++}.sqlite`);
    const before = maildirFiles(BOB).length;
    const body = message('sigkill after ack');
    const setup = gateway(path); // creates the user
    setup.store.close();
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const payloads = fragmentPayloads(messageFragments(new Uint8Array(body), BOB, t!));
    const file = join(dir, 'payloads.hex');
    writeFileSync(file, payloads.map((p) => Buffer.from(p).toString('hex')).join('\n') + '\n');
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/intake-process.ts', path, file, Buffer.alloc(32, 3).toString('hex'), DOMAIN], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`fixture did not ACK: ${out}`)), 30_000);
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('acked')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    expect(out.trim().split('\n').at(-2)).toBe(String(AckStatus.Queued));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const g = gateway(path);
    expect(g.store.queueDepth()).toEqual({ queued: 1, sending: 0, delivered: 0, failed: 0 });
    g.handoff.recover();
    expect(await g.handoff.runOnce()).toBe(1);
    expect(await g.handoff.runOnce()).toBe(0);
    await g.handoff.stop();
    g.store.close();
    const files = (await waitForMail(BOB, before + 1)).slice(before);
    expect(files.length).toBe(1);
    expectDelivered(files[0]!, body);
  });

  it('gateway killed while a row was claimed for sending: recovery resends it under the same id, once', async () => {
    const path = join(dir, `gw${n++}.sqlite`);
    const before = maildirFiles(BOB).length;
    const body = message('crash during handoff');
    let g = gateway(path);
    submit(g.intake, body);
    const row = g.store.due(Date.now(), 10)[0]!;
    expect(g.store.claim(row.handoffId)).toBe(true); // state 'sending' is durable; then the process dies
    g.store.db.close();
    g = gateway(path);
    expect(g.store.inFlight().map((r) => r.handoffId)).toEqual([row.handoffId]);
    expect(g.handoff.recover()).toBe(1);
    expect(await g.handoff.runOnce()).toBe(1);
    expect(g.store.byHandoffId(row.handoffId)!.attempts).toBe(2);
    await g.handoff.stop();
    g.store.close();
    const files = (await waitForMail(BOB, before + 1)).slice(before);
    expect(files.length).toBe(1);
    expectDelivered(files[0]!, body);
  });

  it('MX down, then back: retried with backoff and delivered once', async () => {
    let now = Date.now();
    const g = gateway(join(dir, `gw${n++}.sqlite`), () => now);
    const before = maildirFiles(BOB).length;
    const body = message('mx down then back');
    submit(g.intake, body);
    await pf.stop();
    expect(await g.handoff.runOnce()).toBe(0);
    let row = g.store.listQueue()[0]!;
    expect(row.state).toBe('queued');
    expect(row.attempts).toBe(1);
    expect(row.nextAttempt).toBe(now + 60_000);
    expect(row.lastError).toMatch(/ECONNREFUSED|ESOCKET|ECONNECTION/);
    now += 60_000;
    expect(await g.handoff.runOnce()).toBe(0);
    row = g.store.listQueue()[0]!;
    expect(row.nextAttempt).toBe(now + 120_000); // doubled
    await pf.start();
    expect(await g.handoff.runOnce()).toBe(0); // not due yet
    now += 120_000;
    expect(await g.handoff.runOnce()).toBe(1);
    expect(g.handoff.counters).toMatchObject({ delivered: 1, transientFailures: 2, permanentFailures: 0 });
    const files = (await waitForMail(BOB, before + 1)).slice(before);
    expect(files.length).toBe(1);
    expectDelivered(files[0]!, body);
    await g.handoff.stop();
    g.store.close();
  });

  it('MX refusing the recipient (5xx): the message is failed, kept, and not retried', async () => {
    const g = gateway(join(dir, `gw${n++}.sqlite`));
    g.store.addUser('ghost@example.org'); // the gateway knows it, the MX does not
    const [t] = issuedTokens(issuer, 'ghost@example.org', 1, 1);
    const p = fragmentPayloads(messageFragments(new Uint8Array(message('to ghost')), 'ghost@example.org', t!));
    expect(
      p
        .map((x) => {
          const r = g.intake.handlePayload(x);
          return r.kind === 'ack' && r.status;
        })
        .at(-1),
    ).toBe(AckStatus.Queued);
    expect(await g.handoff.runOnce()).toBe(0);
    const row = g.store.listQueue()[0]!;
    expect(row.state).toBe('failed');
    expect(row.lastError).toMatch(/^55\d/);
    expect(await g.handoff.runOnce()).toBe(0);
    expect(g.store.retry(row.handoffId, Date.now())).toBe(1); // the operator can requeue it
    await g.handoff.stop();
    g.store.close();
  });
});
