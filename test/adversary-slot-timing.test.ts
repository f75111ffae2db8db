/**
 * Adversary: an observer of the client's first link that times each packet against the slot
 * it fills (issue 11 point 8, first half): a malicious layer-1 mix, or anyone on the path, that
 * knows the client's code and so how long after its timer fires a packet of each kind reaches
 * the link. The payload stream's slots are Poisson whatever the user does; if real packets
 * leave later after their slot than cover does, the delay says which packets are mail.
 *
 * On the old code a real packet was built and its in-flight record committed (SQLite,
 * synchronous=FULL: an fsync) inside its slot, between the timer firing and the write on the
 * link, while cover left at once. Now every stream's next packet is built ahead and the real
 * one's outbox row is committed and fsynced (off the event loop) before its slot, so at the slot
 * real and cover alike are a packet the scheduler holds, handed to the link.
 *
 * The real client daemon (`postmix client run`'s runClient, its timers, its outbox) on an
 * in-process network, with the disk made slow on purpose: every fsync of the outbox takes
 * 200 ms more (a commit under synchronous=FULL blocks the event loop for it, as a real fsync
 * inside COMMIT does; an fsync on the thread pool completes 200 ms later). The observer records,
 * for each packet, the time from the scheduler's timer firing (`core.tick`) to the packet handed
 * to the link, and how many outbox commits ran in between. The old code: every real packet
 * ≥ 200 ms, one commit each, cover ≈ 0. Timings are asserted only against that large delay.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { ClientConfigSchema } from '../client/config.ts';
import { runClient } from '../client/daemon.ts';
import type { Outbox } from '../client/outbox.ts';
import { InProcessMixnet } from './support/in-process-mixnet.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const SLOW_MS = 200;

/** Blocks the thread for `ms`, as a synchronous fsync does (without spinning a shared core). */
function blockFor(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

interface DiskCounters {
  /** outbox transactions committed (any durability) */
  commits: number;
}

/**
 * A slow disk under the outbox: each outermost transaction committed under synchronous=FULL
 * blocks `ms` more, and each fsync of the WAL on the thread pool (the outbox's `wal`, where the
 * code has one) completes `ms` later.
 */
function slowDisk(outbox: Outbox, ms: number): DiskCounters {
  const c: DiskCounters = { commits: 0 };
  const db = outbox.db;
  const transaction = db.transaction.bind(db);
  type Tx = ReturnType<typeof transaction>;
  (db as { transaction: unknown }).transaction = (fn: (...a: unknown[]) => unknown) => {
    const t = transaction(fn);
    const wrap =
      (run: (...a: unknown[]) => unknown) =>
      (...a: unknown[]) => {
        const outermost = !db.inTransaction;
        const r = run(...a);
        if (outermost) {
          c.commits++;
          if (db.pragma('synchronous', { simple: true }) === 2) blockFor(ms);
        }
        return r;
      };
    const w = wrap(t) as Tx;
    for (const k of ['deferred', 'immediate', 'exclusive', 'default'] as const) (w as unknown as Record<string, unknown>)[k] = wrap(t[k]);
    return w;
  };
  const wal = (outbox as unknown as { wal?: { sync(done: (e: Error | null) => void): void } }).wal;
  if (wal) {
    const sync = wal.sync.bind(wal);
    wal.sync = (done) => sync((e) => setTimeout(() => done(e), ms));
  }
  return c;
}

interface Sample {
  readonly kind: 'real' | 'cover';
  /** ms from the timer firing to the packet on the link */
  readonly latencyMs: number;
  /** outbox commits between the two */
  readonly commits: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Kolmogorov–Smirnov distance between two samples. */
function ks(a: number[], b: number[]): number {
  const xs = [...new Set([...a, ...b])].sort((x, y) => x - y);
  const cdf = (s: number[], x: number) => s.filter((v) => v <= x).length / s.length;
  return Math.max(...xs.map((x) => Math.abs(cdf(a, x) - cdf(b, x))));
}

describe('an observer timing the client link against its slots', () => {
  it('cannot tell real packets from cover by their delay after the slot, even with a slow disk (200 ms per fsync)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postmix-adv-slot-'));
    dirs.push(dir);
    const sim = new InProcessMixnet({ domains: ['overlay.test'], mixing: { lambdaP: 8, lambdaL: 2, lambdaD: 2, lambdaM: 0, lambdaG: 0, mu: 50 } });
    const cfg = ClientConfigSchema.parse({ data_dir: dir, log: { level: 'warn' }, smtp: { port: 0 }, bounce: { maildir: join(dir, 'Maildir') } });

    // the observer: when each packet reaches the link (it goes no further: no ACKs, so every
    // fragment is resent after its backoff and the stream keeps carrying real packets)
    let firedAt = 0;
    let commitsAtFire = 0;
    let disk: DiskCounters = { commits: 0 };
    let onLink: { at: number; commits: number }[] = [];
    const sink = { send: () => void onLink.push({ at: performance.now(), commits: disk.commits }) };
    const client = await runClient(cfg, { log: pino({ level: 'silent' }), network: sim.network(new Uint8Array(32).fill(5), sink) });
    const core = client.core;
    const samples: Sample[] = [];
    try {
      disk = slowDisk(core.outbox, SLOW_MS);
      const tick = core.tick.bind(core);
      core.tick = (now?: number) => {
        firedAt = performance.now();
        commitsAtFire = disk.commits;
        onLink = [];
        const real = core.stats.real;
        const n = tick(now);
        // one packet per timer firing (the rare firing that ran two events is left out: which was which is ambiguous)
        if (onLink.length === 1)
          samples.push({ kind: core.stats.real > real ? 'real' : 'cover', latencyMs: onLink[0]!.at - firedAt, commits: onLink[0]!.commits - commitsAtFire });
        return n;
      };
      core.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
      core.accept('a@sender.test', ['bob@overlay.test'], new Uint8Array(Buffer.alloc(60_000, 'z')));
      const end = Date.now() + 60_000;
      const count = (k: Sample['kind']) => samples.filter((s) => s.kind === k).length;
      while ((count('real') < 25 || count('cover') < 25) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    } finally {
      await client.stop();
    }

    const real = samples.filter((s) => s.kind === 'real');
    const cover = samples.filter((s) => s.kind === 'cover');
    const lat = (xs: Sample[]) => xs.map((s) => s.latencyMs);
    const late = (xs: Sample[]) => xs.filter((s) => s.latencyMs >= SLOW_MS * 0.75).length / xs.length;
    console.log(
      `slot → link: real n=${real.length} median ${median(lat(real)).toFixed(2)} ms, ≥150 ms ${late(real).toFixed(2)}, commits in the slot ${real.filter((s) => s.commits > 0).length}; ` +
        `cover n=${cover.length} median ${median(lat(cover)).toFixed(2)} ms, ≥150 ms ${late(cover).toFixed(2)}; KS D ${ks(lat(real), lat(cover)).toFixed(2)}`,
    );
    expect(real.length).toBeGreaterThanOrEqual(25);
    expect(cover.length).toBeGreaterThanOrEqual(25);
    // structure: between the timer firing and the packet on the link no outbox transaction runs, for either kind
    // (the old code: one per real packet, its in-flight record)
    expect(real.filter((s) => s.commits > 0)).toEqual([]);
    expect(cover.filter((s) => s.commits > 0)).toEqual([]);
    // timing, against the 200 ms the disk adds: real packets leave as soon after their slot as
    // cover does (the old code: every real packet ≥ 200 ms after its timer, cover within a ms)
    expect(late(real)).toBeLessThanOrEqual(0.1);
    expect(late(cover)).toBeLessThanOrEqual(0.1);
    expect(Math.abs(median(lat(real)) - median(lat(cover)))).toBeLessThan(SLOW_MS / 4);
  }, 120_000);
});
