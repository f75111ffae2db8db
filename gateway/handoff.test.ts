import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { backoffMs, HandoffWorker } from './handoff.ts';
import { GatewayStore } from './store.ts';

interface Got {
  from: string;
  to: string[];
  envid: string | null;
  body: Buffer;
}

async function sink(opts: { lmtp?: boolean; refuse?: () => number | null }): Promise<{ port: number; got: Got[]; close: () => Promise<void> }> {
  const got: Got[] = [];
  const server = new SMTPServer({
    lmtp: opts.lmtp ?? false,
    hideDSN: false,
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const code = opts.refuse?.() ?? null;
        if (code) {
          const e = new Error('refused for the test') as Error & { responseCode: number };
          e.responseCode = code;
          return cb(e);
        }
        const env = session.envelope as typeof session.envelope & { dsn?: { envid?: string | null } };
        got.push({
          from: env.mailFrom ? env.mailFrom.address : '',
          to: env.rcptTo.map((r) => r.address),
          envid: env.dsn?.envid ?? null,
          body: Buffer.concat(chunks),
        });
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.server.address();
  return { port: typeof a === 'object' && a ? a.port : 0, got, close: () => new Promise<void>((r) => server.close(() => r())) };
}

let dir: string;
let store: GatewayStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pmx-handoff-'));
  store = new GatewayStore(join(dir, 'gw.sqlite'));
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const id = (i: number) => new Uint8Array(16).fill(i);
const BODY = Buffer.from('From: a@b\r\nTo: bob@example.org\r\nSubject: x\r\n\r\n.dot line\r\nbody\r\n');

describe('hand-off worker', () => {
  it('hands each queued message once, raw bytes unchanged, with the stable id as DSN ENVID and a null sender', async () => {
    const s = await sink({});
    for (let i = 1; i <= 10; i++) store.enqueue(id(i), 'bob@example.org', BODY, 0);
    const w = new HandoffWorker({ store, mx: { host: '127.0.0.1', port: s.port, starttls: 'never' }, concurrency: 3 });
    const [a, b] = await Promise.all([w.runOnce(), w.runOnce()]); // overlapping calls share one pass
    expect(a).toBe(10);
    expect(b).toBe(10);
    expect(await w.runOnce()).toBe(0);
    expect(s.got.length).toBe(10);
    for (const g of s.got) {
      expect(Buffer.compare(g.body, BODY)).toBe(0);
      expect(g.from).toBe('');
      expect(g.to).toEqual(['bob@example.org']);
      expect(g.envid).toMatch(/^postmix-[0-9a-f]{32}$/);
    }
    expect(new Set(s.got.map((g) => g.envid)).size).toBe(10);
    expect(store.queueDepth().delivered).toBe(10);
    expect(store.handoffOf(id(1))!.body).toBeNull();
    await w.stop();
    await s.close();
  });

  it('retries a 4xx with exponential backoff, fails a 5xx', async () => {
    const codes = [451, 451, null, 550];
    const s = await sink({ refuse: () => codes.shift() ?? null });
    let now = 1000;
    store.enqueue(id(1), 'bob@example.org', BODY, now);
    const w = new HandoffWorker({ store, mx: { host: '127.0.0.1', port: s.port, starttls: 'never' }, baseDelayMs: 1000, maxDelayMs: 1500, now: () => now });
    expect(await w.runOnce()).toBe(0);
    expect(store.handoffOf(id(1))).toMatchObject({ state: 'queued', attempts: 1, nextAttempt: 2000 });
    expect(await w.runOnce()).toBe(0); // not due
    now = 2000;
    expect(await w.runOnce()).toBe(0);
    expect(store.handoffOf(id(1))).toMatchObject({ state: 'queued', attempts: 2, nextAttempt: 3500 }); // capped at 1500
    now = 3500;
    expect(await w.runOnce()).toBe(1);
    store.enqueue(id(2), 'bob@example.org', BODY, now);
    expect(await w.runOnce()).toBe(0);
    expect(store.handoffOf(id(2))!.state).toBe('failed');
    expect(w.counters).toMatchObject({ delivered: 1, transientFailures: 2, permanentFailures: 1 });
    await w.stop();
    await s.close();
  });

  it('gives up after maxAgeMs', async () => {
    let now = 0;
    store.enqueue(id(1), 'bob@example.org', BODY, 0);
    const w = new HandoffWorker({ store, mx: { host: '127.0.0.1', port: 1, starttls: 'never', timeoutMs: 2000 }, maxAgeMs: 10_000, now: () => now });
    await w.runOnce();
    expect(store.handoffOf(id(1))!.state).toBe('queued');
    now = 10_000_000;
    await w.runOnce();
    expect(store.handoffOf(id(1))!.state).toBe('failed');
    await w.stop();
  });

  it('speaks LMTP', async () => {
    const s = await sink({ lmtp: true });
    store.enqueue(id(1), 'bob@example.org', BODY, 0);
    const w = new HandoffWorker({ store, mx: { host: '127.0.0.1', port: s.port, protocol: 'lmtp', starttls: 'never' } });
    expect(await w.runOnce()).toBe(1);
    expect(Buffer.compare(s.got[0]!.body, BODY)).toBe(0);
    await w.stop();
    await s.close();
  });

  it("recovery 'hold' fails rows left in sending for the operator", () => {
    store.enqueue(id(1), 'bob@example.org', BODY, 0);
    expect(store.claim(store.due(0, 1)[0]!.handoffId)).toBe(true);
    const w = new HandoffWorker({ store, mx: { host: '127.0.0.1', port: 1 }, recovery: 'hold' });
    expect(w.recover()).toBe(1);
    expect(store.handoffOf(id(1))).toMatchObject({ state: 'failed' });
    expect(store.handoffOf(id(1))!.lastError).toMatch(/uncertain/);
  });

  it('backoff doubles and caps', () => {
    expect([1, 2, 3, 4, 20].map((a) => backoffMs(a, 100, 1000))).toEqual([100, 200, 400, 800, 1000]);
  });
});
