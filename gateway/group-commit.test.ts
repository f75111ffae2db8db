import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { AckStatus, decodePayload, type Fragment } from '../proto/fragment/index.ts';
import { deriveIssuerKeys, useFastestTokenChecks } from '../proto/tokens/index.ts';
import { GroupCommit } from './group-commit.ts';
import { Intake, type IntakeResult } from './intake.ts';
import { GatewayStore } from './store.ts';
import { fragmentPayloads, messageFragments } from '../test/support/fragments.ts';
import { issuedTokens } from '../test/support/tokens.ts';

const SEED = new Uint8Array(32).fill(3);
const issuer = deriveIssuerKeys(SEED);
const BOB = 'bob@example.org';
const NOW = 1_000_000;
const msg = (n: number, c = 0x61) => new Uint8Array(n).fill(c);
const answerOf = (r: IntakeResult) => (r.kind === 'ack' ? r.status : r.kind === 'drop' ? r.reason : r.kind);

let dir: string;
beforeAll(async () => {
  await useFastestTokenChecks();
});
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pmx-gc-'));
});
afterEach(() => {
  vi.useRealTimers();
  rmSync(dir, { recursive: true, force: true });
});

function open(path = join(dir, 'gw.sqlite')) {
  const store = new GatewayStore(path);
  if (!store.getUser(BOB)) store.addUser(BOB, { now: NOW });
  const intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => NOW });
  return { store, intake, path };
}

/** What another process would see in the database file right now (committed state only). */
function committedFragments(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    const f = (db.prepare('SELECT COUNT(*) AS n FROM fragments').get() as { n: number }).n;
    const q = (db.prepare('SELECT COUNT(*) AS n FROM queue').get() as { n: number }).n;
    return f + q;
  } finally {
    db.close();
  }
}

describe('group commit at the intake', () => {
  it('answers the fragments of one burst after ONE commit, and only once it is visible to another connection', () => {
    const { store, intake, path } = open();
    const gc = new GroupCommit(store, intake, { maxWaitMs: 2, maxFragments: 64 });
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const payloads = fragmentPayloads(messageFragments(msg(6000), BOB, t!));
    const seen: { status: number | string; committed: number }[] = [];
    for (const p of payloads) gc.submit(p, (r) => seen.push({ status: answerOf(r), committed: committedFragments(path) }));
    // nothing answered, nothing committed while the batch waits
    expect(seen).toEqual([]);
    expect(gc.pending).toBe(payloads.length);
    expect(committedFragments(path)).toBe(0);
    expect(gc.flush()).toBe(payloads.length);
    expect(seen.map((s) => s.status)).toEqual([AckStatus.Stored, AckStatus.Stored, AckStatus.Stored, AckStatus.Queued]);
    // each answer was given when the whole batch was already durable (the message is queued: 1 row)
    for (const s of seen) expect(s.committed).toBe(1);
    expect(gc.counters).toMatchObject({ commits: 1, committedFragments: 4, largestBatch: 4, failedCommits: 0 });
    expect(store.listQueue().length).toBe(1);
    store.close();
  });

  describe("fsync 'overlapped': committed under NORMAL, answered after an fsync of the WAL", () => {
    /** Holds the store's WAL fsyncs until the test completes them, and records what each saw. */
    function heldFsyncs(store: GatewayStore) {
      const calls: { committedAtStart: number; done: (err: Error | null) => void }[] = [];
      vi.spyOn(store.wal, 'sync').mockImplementation((done) => calls.push({ committedAtStart: committedFragments(store.path), done }));
      return calls;
    }

    it('answers a committed batch only once an fsync that started after its COMMIT completed', () => {
      const { store, intake, path } = open();
      const calls = heldFsyncs(store);
      const gc = new GroupCommit(store, intake, { maxWaitMs: 2, maxFragments: 64, fsync: 'overlapped' });
      const [t1, t2] = issuedTokens(issuer, BOB, 1, 2);
      const first = fragmentPayloads(messageFragments(msg(6000), BOB, t1!));
      const second = fragmentPayloads(messageFragments(msg(3000, 0x62), BOB, t2!));
      const seen: string[] = [];
      for (const p of first) gc.submit(p, (r) => seen.push(`1:${answerOf(r)}`));
      expect(gc.flush()).toBe(first.length);
      // committed (another connection sees it), not answered: its fsync is in flight
      expect(committedFragments(path)).toBe(1);
      expect(seen).toEqual([]);
      expect(calls).toHaveLength(1);
      expect(calls[0]!.committedAtStart).toBe(1);
      // a batch committed while that fsync runs waits for the next one
      for (const p of second) gc.submit(p, (r) => seen.push(`2:${answerOf(r)}`));
      expect(gc.flush()).toBe(second.length);
      expect(calls).toHaveLength(1);
      expect(gc.pending).toBe(first.length + second.length);
      calls[0]!.done(null);
      expect(seen).toEqual([`1:${AckStatus.Stored}`, `1:${AckStatus.Stored}`, `1:${AckStatus.Stored}`, `1:${AckStatus.Queued}`]);
      // the next fsync starts at once and covers the second batch
      expect(calls).toHaveLength(2);
      expect(calls[1]!.committedAtStart).toBe(2);
      calls[1]!.done(null);
      expect(seen.slice(4)).toEqual([`2:${AckStatus.Stored}`, `2:${AckStatus.Queued}`]);
      expect(gc.counters).toMatchObject({ commits: 2, fsyncs: 2, committedFragments: 6, failedCommits: 0 });
      expect(gc.pending).toBe(0);
      store.close();
    });

    it('a failed fsync answers nothing it covers; a resend is answered after a later fsync', () => {
      const { store, intake } = open();
      const calls = heldFsyncs(store);
      const errors: string[] = [];
      const gc = new GroupCommit(store, intake, { maxWaitMs: 2, maxFragments: 64, fsync: 'overlapped', onError: (_e, what, n) => errors.push(`${what}:${n}`) });
      const [t] = issuedTokens(issuer, BOB, 1, 1);
      const payloads = fragmentPayloads(messageFragments(msg(3000), BOB, t!));
      let answered = 0;
      for (const p of payloads) gc.submit(p, () => answered++);
      gc.flush();
      calls[0]!.done(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
      expect(answered).toBe(0);
      expect(errors).toEqual([`commit:${payloads.length}`]);
      expect(gc.counters).toMatchObject({ failedCommits: 1, fsyncs: 0, committedFragments: 0 });
      const again: (number | string)[] = [];
      for (const p of payloads) gc.submit(p, (r) => again.push(answerOf(r)));
      gc.flush();
      calls[1]!.done(null);
      expect(again).toEqual([AckStatus.Duplicate, AckStatus.Duplicate]);
      store.close();
    });

    it('settle() (shutdown) fsyncs on the spot and answers everything; the late fsync callback changes nothing', () => {
      const { store, intake } = open();
      const calls = heldFsyncs(store);
      const now = vi.spyOn(store.wal, 'syncNow');
      const gc = new GroupCommit(store, intake, { maxWaitMs: 2, maxFragments: 64, fsync: 'overlapped' });
      const [t1, t2] = issuedTokens(issuer, BOB, 1, 2);
      let answered = 0;
      for (const p of fragmentPayloads(messageFragments(msg(3000), BOB, t1!))) gc.submit(p, () => answered++);
      gc.flush(); // in flight
      for (const p of fragmentPayloads(messageFragments(msg(3000, 0x62), BOB, t2!))) gc.submit(p, () => answered++); // still waiting to commit
      gc.close();
      expect(now).toHaveBeenCalledTimes(1);
      expect(answered).toBe(4);
      calls[0]!.done(null);
      expect(answered).toBe(4);
      expect(gc.counters).toMatchObject({ commits: 2, fsyncs: 1, committedFragments: 4 });
      expect(gc.pending).toBe(0);
      store.close();
    });

    it('on a real database file: the fsync runs on the thread pool and the answers come after it', async () => {
      const { store, intake } = open();
      const gc = new GroupCommit(store, intake, { maxWaitMs: 0, maxFragments: 64, fsync: 'overlapped' });
      const [t] = issuedTokens(issuer, BOB, 1, 1);
      const payloads = fragmentPayloads(messageFragments(msg(6000), BOB, t!));
      const got = new Promise<(number | string)[]>((resolve) => {
        const out: (number | string)[] = [];
        for (const p of payloads) gc.submit(p, (r) => out.push(answerOf(r)) === payloads.length && resolve(out));
      });
      expect(gc.flush()).toBe(payloads.length);
      expect(gc.counters.fsyncs).toBe(0);
      expect(await got).toEqual([AckStatus.Stored, AckStatus.Stored, AckStatus.Stored, AckStatus.Queued]);
      expect(gc.counters).toMatchObject({ commits: 1, fsyncs: 1, committedFragments: 4 });
      // every other transaction still commits with synchronous=FULL
      expect(store.db.pragma('synchronous', { simple: true })).toBe(2);
      store.close();
    });
  });

  it('commits a lone fragment after at most maxWaitMs, and a full batch at once', () => {
    vi.useFakeTimers();
    const { store, intake } = open();
    const gc = new GroupCommit(store, intake, { maxWaitMs: 3, maxFragments: 5 });
    const [t1, t2] = issuedTokens(issuer, BOB, 1, 2);
    const answered: number[] = [];
    const one = fragmentPayloads(messageFragments(msg(6000), BOB, t1!));
    gc.submit(one[0]!, () => answered.push(1));
    vi.advanceTimersByTime(2);
    expect(answered).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(answered).toEqual([1]);
    // five waiting: committed inside the fifth submit, no timer needed
    const five = fragmentPayloads(messageFragments(msg(9000), BOB, t2!));
    expect(five.length).toBe(5);
    for (const p of five) gc.submit(p, () => answered.push(5));
    expect(answered.length).toBe(6);
    expect(gc.pending).toBe(0);
    expect(gc.counters.commits).toBe(2);
    // with a wait of 0 the batch is what arrived in the same event-loop turn
    const gc0 = new GroupCommit(store, intake, { maxWaitMs: 0, maxFragments: 64 });
    const [t3] = issuedTokens(issuer, BOB, 1, 1);
    for (const p of fragmentPayloads(messageFragments(msg(3000), BOB, t3!))) gc0.submit(p, () => answered.push(0));
    expect(answered.length).toBe(6);
    vi.runAllTimers();
    expect(answered.filter((a) => a === 0).length).toBe(2);
    expect(gc0.counters.commits).toBe(1);
    store.close();
  });

  it('a failed commit answers none of its fragments and leaves the counters as they were', () => {
    const { store, intake, path } = open();
    store.db.pragma('busy_timeout = 20');
    const errors: string[] = [];
    const gc = new GroupCommit(store, intake, { maxWaitMs: 2, maxFragments: 64, onError: (_e, what, n) => errors.push(`${what}:${n}`) });
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const payloads = fragmentPayloads(messageFragments(msg(6000), BOB, t!));
    // another writer holds the database: the batch's transaction cannot take it
    const other = new Database(path);
    other.exec('BEGIN IMMEDIATE');
    const before = structuredClone(intake.counters);
    let answered = 0;
    for (const p of payloads) gc.submit(p, () => answered++);
    expect(gc.flush()).toBe(0);
    expect(answered).toBe(0);
    expect(errors).toEqual(['commit:4']);
    expect(intake.counters).toEqual(before);
    other.exec('ROLLBACK');
    other.close();
    // the senders resend: the same fragments are taken now, and the token still admits them
    for (const p of payloads) gc.submit(p, () => answered++);
    gc.flush();
    expect(answered).toBe(4);
    expect(store.listQueue().length).toBe(1);
    expect(intake.counters.tokensAccepted).toBe(1);
    store.close();
  });

  it('a fragment whose processing throws is rolled back alone; the rest of its batch is answered', () => {
    const { store, intake } = open();
    const errors: string[] = [];
    const gc = new GroupCommit(store, intake, { maxWaitMs: 2, maxFragments: 64, onError: (_e, what) => errors.push(what) });
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const frags = messageFragments(msg(6000), BOB, t!);
    const payloads = fragmentPayloads(frags);
    const put = store.putFragment.bind(store);
    store.putFragment = (id, index, data) => {
      if (index === 1) throw new Error('disk says no');
      return put(id, index, data);
    };
    const got: (number | string)[] = [];
    for (const p of payloads) gc.submit(p, (r) => got.push(answerOf(r)));
    gc.flush();
    expect(got).toEqual([AckStatus.Stored, AckStatus.Stored, AckStatus.Stored]);
    expect(errors).toEqual(['fragment']);
    expect(store.hasFragment(frags[1]!.messageId, 1)).toBe(false);
    expect(store.fragments(frags[0]!.messageId).map((f) => f.idx)).toEqual([0, 2, 3]);
    // its resend completes the message
    store.putFragment = put;
    gc.submit(payloads[1]!, (r) => got.push(answerOf(r)));
    gc.flush();
    expect(got.at(-1)).toBe(AckStatus.Queued);
    store.close();
  });

  it('rows read in a batch are read once and kept for that batch only: a revocation between batches refuses the rest', () => {
    const { store, intake } = open();
    const gc = new GroupCommit(store, intake, { maxWaitMs: 2, maxFragments: 64 });
    const [t, u] = issuedTokens(issuer, BOB, 1, 2);
    const a = fragmentPayloads(messageFragments(msg(8000), BOB, t!));
    const b = fragmentPayloads(messageFragments(msg(3000, 0x62), BOB, u!));
    expect(a.length).toBe(5);
    // the statements the intake reads the user and its key epoch with, counted
    const st = (store as unknown as { st: Record<string, { get: (...a: unknown[]) => unknown }> }).st;
    const calls = { getUser: 0, epochGet: 0 };
    for (const k of ['getUser', 'epochGet'] as const) {
      const get = st[k]!.get.bind(st[k]);
      st[k]!.get = (...args: unknown[]) => {
        calls[k]++;
        return get(...args);
      };
    }
    const got: (number | string)[] = [];
    const take = (ps: readonly Uint8Array[]) => {
      for (const p of ps) gc.submit(p, (r) => got.push(r.kind === 'ack' && r.tokenReason ? `${r.status}:${r.tokenReason}` : answerOf(r)));
      gc.flush();
    };
    take([...a.slice(0, 2), ...b]);
    expect(b.length).toBe(2);
    expect(got).toEqual([AckStatus.Stored, AckStatus.Stored, AckStatus.Stored, AckStatus.Queued]);
    expect(calls).toEqual({ getUser: 1, epochGet: 1 });
    // committed between two batches: the next batch reads the rows again and sees it
    store.rotateUser(BOB, NOW / 1000);
    calls.getUser = calls.epochGet = 0;
    take(a.slice(2));
    expect(got.slice(4)).toEqual(Array(3).fill(`${AckStatus.TokenRefused}:expired`));
    expect(calls).toEqual({ getUser: 1, epochGet: 1 });
    // and outside a transaction nothing is kept
    expect(store.getUser(BOB)?.policy).toBe('tokens');
    store.setPolicy(BOB, 'open');
    expect(store.getUser(BOB)?.policy).toBe('open');
    store.close();
  });

  it('rows kept in a transaction follow its own writes and are forgotten with a rolled-back savepoint', () => {
    const { store } = open();
    const id = new Uint8Array(16).fill(7);
    store.tx(() => {
      expect(store.getUser(BOB)?.policy).toBe('tokens');
      store.setPolicy(BOB, 'open', 5);
      expect(store.getUser(BOB)).toMatchObject({ policy: 'open', ratePerHour: 5 });
      expect(store.getPartial(id)).toBeUndefined();
      store.createPartial({ messageId: id, recipient: BOB, count: 3, totalLength: 10, token: new Uint8Array(0), now: NOW, ttlMs: 1000 });
      expect(store.putFragment(id, 0, new Uint8Array(4))).toBe('stored');
      expect(store.getPartial(id)).toMatchObject({ received: 1, bytes: 4 });
      expect(() =>
        store.tx(() => {
          expect(store.putFragment(id, 1, new Uint8Array(4))).toBe('stored');
          expect(store.getPartial(id)).toMatchObject({ received: 2, bytes: 8 });
          throw new Error('rolled back');
        }),
      ).toThrow('rolled back');
      // the savepoint's write is gone, and so is what was kept of it
      expect(store.getPartial(id)).toMatchObject({ received: 1, bytes: 4 });
      store.markSpent('k', id, BOB, 1, NOW);
      expect(store.spentFor('k')).toMatchObject({ recipient: BOB, done: false });
      store.markSpentDone('k');
      expect(store.spentFor('k')).toMatchObject({ done: true });
      store.dropPartial(id);
      expect(store.getPartial(id)).toBeUndefined();
    });
    expect(store.spentFor('k')).toMatchObject({ done: true });
    expect(store.getPartial(id)).toBeUndefined();
    store.close();
  });

  it('property: any arrival order cut into any batches gets the answers and state of one commit per fragment', () => {
    const [ta, tb] = issuedTokens(issuer, BOB, 1, 2);
    const a = messageFragments(msg(6000, 0x41), BOB, ta!);
    const b = messageFragments(msg(4000, 0x42), BOB, tb!);
    // b's token on another message id (spent once b binds it), a fragment inconsistent with a, a foreign domain
    const stolen = messageFragments(msg(4000, 0x43), BOB, tb!);
    const bad: Fragment = { ...a[1]!, count: a[1]!.count + 1 };
    const foreign: Fragment = { ...a[0]!, recipient: 'eve@example.net' };
    const pool = fragmentPayloads([...a, ...b, stolen[0]!, bad, foreign]);
    pool.push(new Uint8Array(2048).fill(0xff)); // undecodable
    expect(pool.every((p, i) => i === pool.length - 1 || decodePayload(p).ok)).toBe(true);
    fc.assert(
      fc.property(fc.array(fc.nat(pool.length - 1), { minLength: 1, maxLength: 30 }), fc.array(fc.nat(8), { minLength: 1, maxLength: 10 }), (order, cuts) => {
        const one = open(':memory:');
        const seq = order.map((i) => answerOf(one.intake.handlePayload(pool[i]!)));
        const many = open(':memory:');
        const gc = new GroupCommit(many.store, many.intake, { maxWaitMs: 2, maxFragments: 1000 });
        const got: (number | string)[] = [];
        let c = 0;
        let left = cuts[0]!;
        for (const i of order) {
          gc.submit(pool[i]!, (r) => got.push(answerOf(r)));
          if (left-- <= 0) {
            gc.flush();
            left = cuts[++c % cuts.length]!;
          }
        }
        gc.flush();
        try {
          expect(got).toEqual(seq);
          expect(many.intake.counters).toEqual(one.intake.counters);
          const rows = (s: GatewayStore) => s.listQueue().map((q) => [q.handoffId, Buffer.from(q.body ?? []).toString('hex')]);
          expect(rows(many.store)).toEqual(rows(one.store));
          expect(many.store.partialCount()).toBe(one.store.partialCount());
          expect(many.store.spentCount()).toBe(one.store.spentCount());
        } finally {
          one.store.close();
          many.store.close();
        }
      }),
      { numRuns: 40 },
    );
  });

  it('SIGKILL while taking fragments: every fragment answered before the kill is in the database after it', async () => {
    // one database per fsync mode, each killed twice (the second run resends what the first took)
    const pathOf = (fsync: string) => join(dir, `crash-${fsync}.sqlite`);
    for (const fsync of ['in-commit', 'overlapped']) {
      // the fixture runs on the wall clock: the user's key epoch starts now
      const setup = new GatewayStore(pathOf(fsync));
      setup.addUser(BOB);
      setup.close();
    }
    const tokens = issuedTokens(issuer, BOB, 1, 40);
    const frags = tokens.flatMap((t, k) => messageFragments(msg(5000, k), BOB, t));
    const payloads = fragmentPayloads(frags);
    const file = join(dir, 'payloads.hex');
    writeFileSync(file, payloads.map((p) => Buffer.from(p).toString('hex')).join('\n') + '\n');
    for (const [fsync, killAfter] of [
      ['in-commit', 7],
      ['in-commit', 61],
      ['overlapped', 7],
      ['overlapped', 61],
    ] as const) {
      const path = pathOf(fsync);
      const child = spawn(
        process.execPath,
        // a turn every 2 ms: the intake is fast enough to answer all 120 payloads before this
        // process reads the 7th answer and kills it, which would show nothing
        ['--import', 'tsx', 'test/support/intake-process.ts', path, file, Buffer.from(SEED).toString('hex'), 'example.org', '2', '16', fsync, '2'],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let out = '';
      let answersAtKill = -1;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`fixture gave ${out.split('\n').length} answers`)), 60_000);
        child.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          if (answersAtKill < 0 && out.split('\n').length - 1 >= killAfter) {
            child.kill('SIGKILL');
            answersAtKill = out.split('\n').length - 1;
          }
        });
        child.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      const lines = out.split('\n').filter(Boolean);
      // killed while it was still taking fragments (else the test shows nothing)
      expect(lines).not.toContain('acked');
      expect(lines.length).toBeGreaterThanOrEqual(killAfter);
      const store = new GatewayStore(path);
      try {
        lines.forEach((status, k) => {
          const f = frags[k]!;
          expect([String(AckStatus.Stored), String(AckStatus.Queued), String(AckStatus.Duplicate)]).toContain(status);
          // answered ⇒ durable: the fragment is stored, or its message is in the hand-off queue
          const durable = store.hasFragment(f.messageId, f.index) || store.handoffOf(f.messageId) !== undefined;
          expect(durable, `answered fragment ${k} (${status}) lost by the kill`).toBe(true);
        });
      } finally {
        store.close();
      }
    }
  }, 120_000);
});
