/**
 * The gateway's share of the `[crypto] workers` pool (runtime/hop/unwrap-pool.ts, the threads
 * that peel the hop's Sphinx layers): the POPRF token checks and the ACK packets built from
 * SURBs run there, so the event loop keeps decoding, the intake's bookkeeping, SQLite and I/O.
 * Both batch by the hop's rule (runtime/hop/unwrap-pool.ts `BatchSealer`): handed over at the end
 * of the turn if a worker has room, else when one has, or at `maxBatch` items. Both fall back to
 * this thread when there is no pool or the pool dropped a job (it took down two workers, or the
 * pool is closing): nothing is lost and nothing is decided without its check.
 *
 * Only pure work leaves the thread: whether a token is spent is decided by the intake in the
 * batch's transaction, after its check came back (gateway/group-commit.ts), and an ACK is asked
 * for only once the commit holding its fragment is durable.
 */
import { readReplySlot, replyInputBytes, replySlotBytes, writeReplyInput, type ReplyJob } from '../proto/hop/reply-batch.ts';
import { fastestSuite, packetFromSurb, type Geometry, type SurbUseResult } from '../proto/sphinx/index.ts';
import type { IssuerKeys } from '../proto/tokens/index.ts';
import { BatchSealer, type UnwrapPool } from '../runtime/hop/unwrap-pool.ts';

/** A check's answer: valid or not, or undefined when the pool could not run it (check it here). */
export type TokenCheckDone = (valid: boolean | undefined) => void;

interface OpenChecks {
  readonly items: { recipient: string; token: Uint8Array }[];
  readonly keys: string[];
}

/** POPRF token checks on the pool; one check of the same (recipient, token) in flight at a time. */
export class PoolTokenChecks {
  private open: OpenChecks | undefined;
  private readonly sealer = new BatchSealer((pool) => this.seal(pool));
  /** (recipient, token) → the callbacks waiting for its check (asked once, answered to all). */
  private readonly waiting = new Map<string, TokenCheckDone[]>();

  constructor(
    private readonly pool: () => UnwrapPool | undefined,
    private readonly issuer: IssuerKeys,
    private readonly maxBatch = 64,
  ) {}

  /** Checks in flight (distinct tokens). */
  get inFlight(): number {
    return this.waiting.size;
  }

  /**
   * Asks for the check of `token` for `recipient` (`key` names the pair); false when there is no
   * pool (the caller checks on this thread). `done` runs later, never inside this call.
   */
  check(recipient: string, token: Uint8Array, key: string, done: TokenCheckDone): boolean {
    const pool = this.pool();
    if (!pool) return false;
    const cbs = this.waiting.get(key);
    if (cbs) {
      cbs.push(done);
      return true;
    }
    this.waiting.set(key, [done]);
    const b = (this.open ??= this.newOpen(pool));
    b.items.push({ recipient, token });
    b.keys.push(key);
    if (b.items.length >= this.maxBatch) this.seal(pool);
    return true;
  }

  private newOpen(pool: UnwrapPool): OpenChecks {
    const b: OpenChecks = { items: [], keys: [] };
    this.sealer.opened(pool, () => this.open === b);
    return b;
  }

  private seal(pool: UnwrapPool): void {
    const b = this.open;
    if (!b || b.items.length === 0) return;
    this.open = undefined;
    const results = new SharedArrayBuffer(b.items.length);
    pool.run({ kind: 'tokens', count: b.items.length, issuer: this.issuer, items: b.items, results }, (ok) => {
      const out = new Uint8Array(results);
      b.keys.forEach((key, i) => {
        const cbs = this.waiting.get(key) ?? [];
        this.waiting.delete(key);
        const valid = ok ? out[i] === 1 : undefined;
        for (const cb of cbs) cb(valid);
      });
    });
  }
}

interface ReplyBuffers {
  readonly geometry: Geometry;
  readonly inputs: SharedArrayBuffer;
  readonly results: SharedArrayBuffer;
}

interface OpenReplies extends ReplyBuffers {
  readonly view: Uint8Array;
  readonly items: { surb: Uint8Array; payload: Uint8Array }[];
  readonly done: ((r: SurbUseResult) => void)[];
}

/** ACK packets (and decoys' answers) built from their SURBs on the pool. */
export class PoolReplies {
  private open: OpenReplies | undefined;
  /** buffers of finished jobs, reused (a fresh pair of shared buffers per job cost more than the copy into them) */
  private free: ReplyBuffers[] = [];
  private readonly sealer = new BatchSealer((pool) => this.seal(pool));

  constructor(
    private readonly pool: () => UnwrapPool | undefined,
    /** A `done` threw (the others of its job are still called). */
    private readonly onError: (err: unknown) => void = () => {},
    private readonly maxBatch = 64,
  ) {}

  /** Builds the packet of `payload` through `surb`; `done` runs at once without a pool (or for a refusal by length), later with one. */
  build(geometry: Geometry, surb: Uint8Array, payload: Uint8Array, done: (r: SurbUseResult) => void): void {
    const pool = this.pool();
    if (!pool) return done(packetFromSurb(fastestSuite, geometry, surb, payload));
    if (this.open && this.open.geometry !== geometry) this.seal(pool);
    const b = (this.open ??= this.newOpen(pool, geometry));
    // refused for its lengths: answered here, at once
    if (!writeReplyInput(geometry, b.view, b.items.length, surb, payload)) return done(packetFromSurb(fastestSuite, geometry, surb, payload));
    b.items.push({ surb, payload });
    b.done.push(done);
    if (b.items.length >= this.maxBatch) this.seal(pool);
  }

  private newOpen(pool: UnwrapPool, geometry: Geometry): OpenReplies {
    if (this.free[0]?.geometry !== geometry) this.free = [];
    const buf = this.free.pop() ?? {
      geometry,
      inputs: new SharedArrayBuffer(this.maxBatch * replyInputBytes(geometry)),
      results: new SharedArrayBuffer(this.maxBatch * replySlotBytes(geometry)),
    };
    const b: OpenReplies = { ...buf, view: new Uint8Array(buf.inputs), items: [], done: [] };
    this.sealer.opened(pool, () => this.open === b);
    return b;
  }

  private seal(pool: UnwrapPool): void {
    const b = this.open;
    if (!b) return;
    this.open = undefined;
    const release = () => {
      if (this.free.length < 8 && (this.free.length === 0 || this.free[0]!.geometry === b.geometry))
        this.free.push({ geometry: b.geometry, inputs: b.inputs, results: b.results });
    };
    if (b.items.length === 0) return release();
    const job: ReplyJob = { kind: 'replies', count: b.items.length, geometry: b.geometry, inputs: b.inputs, results: b.results };
    pool.run(job, (ok) => {
      const out = new Uint8Array(job.results);
      // each result is copied out of the buffer before it is reused
      const built = b.items.map((it, i) => (ok ? readReplySlot(b.geometry, out, i) : packetFromSurb(fastestSuite, b.geometry, it.surb, it.payload)));
      release();
      b.done.forEach((done, i) => {
        try {
          done(built[i]!);
        } catch (e) {
          this.onError(e);
        }
      });
    });
  }
}
