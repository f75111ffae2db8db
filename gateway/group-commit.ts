/**
 * Group commit at the gateway intake: fragments that arrive close together are decided one after
 * the other, in arrival order, inside ONE `BEGIN IMMEDIATE` transaction, committed with the
 * store's `synchronous=FULL` (one fsync of the WAL for the whole batch). Each fragment's answer
 * is handed to its callback only after that commit returned, so an ACK never leaves for a
 * fragment a crash can still lose; if the commit fails, no fragment of the batch is answered
 * (their senders resend, as for a lost ACK) and the intake's counters are put back.
 *
 * Why it is correct to batch: every decision reads the store through the same connection, so a
 * fragment sees what the fragments before it in the batch wrote, exactly as if each had been
 * committed on its own (the intake's per-fragment transaction runs inside the batch's). A
 * fragment whose processing throws gets no answer: the batch is rolled back and run again
 * without it (no savepoint per fragment on the common path), so the others are unaffected.
 *
 * When a batch is committed: once `maxFragments` wait, or `maxWaitMs` after the first one of the
 * batch arrived (0: at the end of the current event-loop turn, i.e. with whatever arrived in the
 * same burst). The wait bounds the latency a fragment pays at low load; at high load the commit
 * itself paces the batches, since fragments that fall due while one fsync runs share the next.
 *
 * Where the fsync runs (`fsync`): 'in-commit' is SQLite's synchronous=FULL, inside COMMIT on the
 * event loop; 'overlapped' (the gateway's default) commits under NORMAL and fsyncs the WAL on the
 * thread pool (runtime/wal-sync.ts) while the next batch is decided, and answers a batch once an
 * fsync that started after its COMMIT completed. At most one fsync is in flight; batches
 * committed meanwhile share the next one. Either way nothing is answered before it is on disk.
 * (Committed but not yet fsynced rows are visible to the hand-off: after a power loss in that
 * window a message can reach the MX and still be resent by its sender, a duplicate, never a
 * loss.)
 *
 * Token checks ahead of the batch (`checks`, the `[crypto] workers` pool: gateway/crypto-offload.ts):
 * a fragment whose token's POPRF check is not known yet is decoded at once, its check sent to
 * the pool, and the fragment joins the batch only when the check is back (the fragments of one
 * token in flight wait for the same check). The check says only whether the token is valid;
 * whether it is spent is decided in the batch's transaction, one fragment after the other, as
 * without the pool: of two fragments of one token, of different messages, in flight at once,
 * the first decided binds it and the second finds it spent. A check the pool cannot run (two
 * workers crashed on it, or closing) comes back unknown and the intake checks it on this thread
 * in the transaction; `settle` takes the fragments still waiting for a check the same way.
 */
import type { GatewayStore } from './store.ts';
import type { Intake, IntakeCounters, IntakeResult, PreparedPayload } from './intake.ts';
import type { TokenCheckDone } from './crypto-offload.ts';

/** The gateway's defaults ([intake] group_commit_wait_ms, group_commit_max_fragments). */
export const GROUP_COMMIT_DEFAULTS = { maxWaitMs: 2, maxFragments: 64, fsync: 'overlapped' } as const;

/** 'in-commit': fsync inside COMMIT (synchronous=FULL); 'overlapped': after it, on the thread pool. */
export type FsyncMode = 'in-commit' | 'overlapped';

export interface GroupCommitOptions {
  /** Longest a fragment waits for others to share its commit, ms (0: the end of the event-loop turn). */
  readonly maxWaitMs: number;
  /** A batch is committed at once when it holds this many fragments. */
  readonly maxFragments: number;
  /** Where the fsync that makes a batch durable runs (default 'in-commit'). */
  readonly fsync?: FsyncMode;
  /**
   * Where token checks run ahead of the batch (PoolTokenChecks.check): returns false when it
   * cannot take one (then the intake checks in the transaction). Without it: all in the transaction.
   */
  readonly checks?: (recipient: string, token: Uint8Array, key: string, done: TokenCheckDone) => boolean;
  /** A fragment's processing threw (it gets no answer) or a batch's commit failed (none of it does). */
  readonly onError?: (err: unknown, what: 'fragment' | 'commit' | 'answer', fragments: number) => void;
}

/** Called with a fragment's decision once the transaction holding it is durable. */
export type OnCommitted = (r: IntakeResult) => void;

export interface GroupCommitCounters {
  /** Transactions committed. */
  commits: number;
  /** fsyncs of the WAL run after commits ('overlapped'; each covers every batch committed before it). */
  fsyncs: number;
  /** Fragments answered after a commit (the mean batch is committedFragments / commits). */
  committedFragments: number;
  /** Commits (or their fsync) that failed: their fragments got no answer. */
  failedCommits: number;
  /** Fragments whose processing threw (no answer). */
  failedFragments: number;
  /** The largest batch committed so far. */
  largestBatch: number;
}

interface Waiting {
  readonly prepared: PreparedPayload;
  readonly done: OnCommitted;
}

/** A committed batch whose answers wait for the fsync. */
interface Unsynced {
  readonly batch: readonly Waiting[];
  readonly results: readonly (IntakeResult | undefined)[];
}

function restoreCounters(target: IntakeCounters, saved: IntakeCounters): void {
  const t = target as unknown as Record<string, unknown>;
  for (const [k, v] of Object.entries(saved)) {
    if (typeof v === 'number') t[k] = v;
    else Object.assign(t[k] as object, v);
  }
}

export class GroupCommit {
  readonly counters: GroupCommitCounters = { commits: 0, fsyncs: 0, committedFragments: 0, failedCommits: 0, failedFragments: 0, largestBatch: 0 };
  private waiting: Waiting[] = [];
  /** decoded, waiting for their token check (then they join `waiting`) */
  private readonly checking = new Set<Waiting>();
  /** committed, waiting for the next fsync */
  private unsynced: Unsynced[] = [];
  /** committed, covered by the fsync in flight */
  private syncing: Unsynced[] | undefined;
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private closed = false;

  constructor(
    private readonly store: GatewayStore,
    private readonly intake: Intake,
    private readonly opts: GroupCommitOptions,
  ) {
    if (!Number.isInteger(opts.maxFragments) || opts.maxFragments < 1)
      throw new RangeError(`maxFragments must be a positive integer, got ${opts.maxFragments}`);
    if (!Number.isFinite(opts.maxWaitMs) || opts.maxWaitMs < 0) throw new RangeError(`maxWaitMs must be ≥ 0, got ${opts.maxWaitMs}`);
  }

  /** Fragments waiting for their commit or for the fsync after it. */
  get pending(): number {
    const n = (xs: readonly Unsynced[] | undefined) => (xs ?? []).reduce((a, u) => a + u.batch.length, 0);
    return this.waiting.length + this.checking.size + n(this.unsynced) + n(this.syncing);
  }

  private get overlapped(): boolean {
    return this.opts.fsync === 'overlapped' && !this.closed;
  }

  /** Takes one payload delivered to MAIL_QUEUE_ID; `done` is called after the commit that holds it. */
  submit(payload: Uint8Array, done: OnCommitted): void {
    let prepared: PreparedPayload;
    try {
      prepared = this.intake.prepare(payload);
    } catch (e) {
      // (prepare never throws for any bytes; a bug must not take the gateway down)
      this.counters.failedFragments++;
      this.opts.onError?.(e, 'fragment', 1);
      return;
    }
    const w: Waiting = { prepared, done };
    const check = this.closed ? undefined : this.intake.pendingCheck(prepared);
    if (check && this.opts.checks) {
      this.checking.add(w);
      const taken = this.opts.checks(check.recipient, check.token, check.key, (valid) => {
        // settled meanwhile: it was decided with a check on this thread
        if (!this.checking.delete(w)) return;
        if (valid !== undefined) this.intake.recordCheck(prepared, valid);
        this.enqueue(w);
      });
      if (taken) return;
      this.checking.delete(w);
    }
    this.enqueue(w);
  }

  private enqueue(w: Waiting): void {
    this.waiting.push(w);
    // after close nothing waits: committed (or refused by a closed store) at once
    if (this.closed || this.waiting.length >= this.opts.maxFragments) {
      this.flush();
      return;
    }
    if (this.timer === undefined) {
      const run = () => {
        this.timer = undefined;
        this.flush();
      };
      this.timer = this.opts.maxWaitMs === 0 ? setImmediate(run) : setTimeout(run, this.opts.maxWaitMs);
    }
  }

  /**
   * Commits what is waiting now (synchronously) and answers it, or with 'overlapped' queues its
   * answers for the fsync after the commit. Returns how many fragments were committed.
   */
  flush(): number {
    this.clearTimer();
    const batch = this.waiting;
    if (batch.length === 0) return 0;
    this.waiting = [];
    const saved = structuredClone(this.intake.counters);
    // fragments that threw: the batch is rolled back and run again without them
    const skip = new Set<number>();
    let results: (IntakeResult | undefined)[];
    for (;;) {
      let threw = -1;
      try {
        results = this.store.batch(
          () =>
            batch.map((w, i) => {
              if (skip.has(i)) return undefined;
              try {
                return this.intake.handlePrepared(w.prepared);
              } catch (e) {
                threw = i;
                throw e;
              }
            }),
          { deferFsync: this.overlapped },
        );
        break;
      } catch (e) {
        restoreCounters(this.intake.counters, saved);
        if (threw >= 0) {
          skip.add(threw);
          this.counters.failedFragments++;
          this.opts.onError?.(e, 'fragment', 1);
          continue;
        }
        this.counters.failedCommits++;
        this.opts.onError?.(e, 'commit', batch.length);
        return 0;
      }
    }
    this.counters.commits++;
    this.counters.largestBatch = Math.max(this.counters.largestBatch, batch.length);
    const committed = results.filter((r) => r !== undefined).length;
    if (this.overlapped) {
      this.unsynced.push({ batch, results });
      this.startFsync();
    } else this.answer([{ batch, results }]); // durable from here on: only now may anything be answered
    return committed;
  }

  /** Commits what waits and makes every committed batch durable now, answering all of it (shutdown). */
  settle(): void {
    // what waits for a token check is decided now, checked on this thread
    for (const w of this.checking) this.waiting.push(w);
    this.checking.clear();
    this.flush();
    const all = [...(this.syncing ?? []), ...this.unsynced];
    // the fsync in flight, if any, is answered here; its callback finds nothing to do
    this.syncing = undefined;
    this.unsynced = [];
    if (all.length === 0) return;
    try {
      this.store.wal.syncNow();
      this.counters.fsyncs++;
    } catch (e) {
      this.failSync(all, e);
      return;
    }
    this.answer(all);
  }

  /** One fsync at a time: it covers every batch committed before it started. */
  private startFsync(): void {
    if (this.syncing !== undefined || this.unsynced.length === 0) return;
    const taking = (this.syncing = this.unsynced);
    this.unsynced = [];
    this.store.wal.sync((err) => {
      if (this.syncing !== taking) return; // settled meanwhile
      this.syncing = undefined;
      if (err) this.failSync(taking, err);
      else {
        this.counters.fsyncs++;
        this.answer(taking);
      }
      this.startFsync();
    });
  }

  /** The fsync failed: nothing it covers may be answered (the rows are committed; resends find them). */
  private failSync(batches: readonly Unsynced[], err: unknown): void {
    const n = batches.reduce((a, u) => a + u.batch.length, 0);
    this.counters.failedCommits += batches.length;
    this.opts.onError?.(err, 'commit', n);
  }

  private answer(batches: readonly Unsynced[]): void {
    for (const { batch, results } of batches) {
      let answered = 0;
      for (let i = 0; i < batch.length; i++) {
        const r = results[i];
        if (r === undefined) continue;
        answered++;
        try {
          batch[i]!.done(r);
        } catch (e) {
          // one failed answer (e.g. its ACK could not be built) must not withhold the others'
          this.opts.onError?.(e, 'answer', 1);
        }
      }
      this.counters.committedFragments += answered;
    }
  }

  /** Settles what is waiting; from now on each fragment is committed (in-commit fsync) on its own as it comes (shutdown). */
  close(): void {
    if (this.closed) return;
    this.settle();
    this.closed = true;
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    if (this.opts.maxWaitMs === 0) clearImmediate(this.timer as NodeJS.Immediate);
    else clearTimeout(this.timer as NodeJS.Timeout);
    this.timer = undefined;
  }
}
