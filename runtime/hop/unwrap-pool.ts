/**
 * `[crypto] workers = N`: Sphinx layers peeled on N worker threads, so the event loop does only
 * the link I/O, the replay checks and the scheduling (one pool module for both roles: the hop
 * node, runtime/hop/hop-node.ts, runs a mix's and a gateway's pipeline alike).
 *
 *   link frame → HopEngine.precheck (key by the header's key phase; cheap drops at once)
 *     → copied into the open batch (a SharedArrayBuffer of up to `maxBatch` frames)
 *     → a worker: proto/hop/unwrap-batch.ts writes each result into the batch's shared result
 *       buffer (no replay check there)
 *     → back on the event loop: HopEngine.admit checks-and-inserts every replay tag on this one
 *       thread, then schedules. Exactness of the replay check across workers rests on that:
 *       only this thread touches the replay store, and a tag is inserted before its packet can
 *       be queued, so of two copies peeled at once in two workers exactly one is taken.
 *
 * Batching: a batch is handed to a worker at the end of the event-loop turn in which its first
 * frame came, when a worker is nearly out of work (holds less than two batches); otherwise it
 * keeps filling until one is, or it is full. So batches are single frames at low load and full
 * under load, with no timer. A worker is posted up to `maxInFlightPerWorker` (8) batches at
 * once, so that under load it finds the next one in its own message queue instead of waiting
 * for a busy event loop to hand it over.
 *
 * Bound: the pool holds at most workers × 8 batches and the open one. Past that (the workers are
 * behind) the event loop peels the frame itself, through the same `admit`: nothing is dropped,
 * and the event loop, busy peeling, reads less, so overload backs up into the senders' TCP
 * windows as it does with workers = 0. (Holding the link's per-stream backpressure with a
 * promise per frame instead was tried: under a flood, yamux's read buffer of a paused stream
 * overflowed and the stream was reset, losing frames.)
 *
 * Other jobs: a role may run its own pure work on the same workers (`run` with a job of another
 * kind; the gateway's token checks and ACK packets, gateway/crypto-offload.ts). They take worker
 * time and slots like a batch, but no frames: the frame figures and the bound above count only
 * batches of frames.
 *
 * A worker that dies (an uncaught error, OOM, `process.exit` in native code) is replaced and
 * counted; the batches it held are run again on another worker, once: no tag of theirs reached
 * the replay store (that happens only when results come back), so running them again can
 * neither lose nor duplicate a packet. A batch that takes down a second worker too is dropped,
 * its frames counted as `packets_dropped_total{reason="worker-crash"}`: a poison batch must not
 * take the pool down in a loop.
 */
import { createRequire } from 'node:module';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { HopEngine, UnwrappedFrame } from '../../proto/hop/engine.ts';
import { readSlot, slotBytes } from '../../proto/hop/unwrap-batch.ts';
import { packetSizes, processPacket, type Geometry } from '../../proto/sphinx/index.ts';
import type { EpochHopKey } from '../../proto/hop/engine.ts';
import type { BatchMessage, UnwrapWorkerData } from './unwrap-worker.ts';

interface PoolLog {
  warn(o: object, msg: string): void;
  error(o: object, msg: string): void;
}

export interface UnwrapPoolOptions {
  readonly workers: number;
  /** The suite name of the event loop (`fastestSuiteSelection().suite.name`); every worker must run the same. */
  readonly suite: string;
  readonly log?: PoolLog;
  /**
   * Batches posted to a worker at once (one being peeled, the others in its message queue, so
   * that it never waits for the event loop to hand it the next). Default 8.
   */
  readonly maxInFlightPerWorker?: number;
  /** How long start() waits for the workers' ready message. Default 60 s. */
  readonly startTimeoutMs?: number;
  /** Tests only: while its first Int32 is above 0, a worker that takes a batch decrements it and crashes. */
  readonly testCrashes?: SharedArrayBuffer;
}

/** Plain counters of the pool, read at scrape time (runtime/hop/metrics.ts). */
export interface PoolStats {
  /** Live worker threads (the configured count, but for one being replaced). */
  readonly workers: number;
  /** Jobs handed to a worker (a job run again counts again): batches of frames, and a gateway's token checks and ACKs. */
  readonly batches: number;
  /** Frames in the batches of frames among them. */
  readonly frames: number;
  /** Frames waiting for a worker or in one: the open batch, queued batches, batches in flight. */
  readonly queuedFrames: number;
  readonly crashes: number;
  /** Batches run again after their worker died. */
  readonly rerunBatches: number;
  /** Frames dropped because their batch took down two workers. */
  readonly lostFrames: number;
  /** Frames the event loop peeled itself because the pool held its bound (the workers were behind). */
  readonly inlineFrames: number;
}

/**
 * One job for the pool (the worker's message, less its id): a batch of frames to peel, or a
 * gateway's token checks or ACK packets (proto/hop/reply-batch.ts); inputs in the message or in
 * shared buffers, results in shared buffers.
 */
export type PoolJob = BatchMessage extends infer M ? (M extends { readonly id: number } ? Omit<M, 'id'> : never) : never;

/** Frames a job holds (only a batch to peel counts toward the frame figures and the pool's bound). */
const framesOf = (j: PoolJob): number => (j.kind === 'unwrap' ? j.count : 0);

interface Pending {
  readonly job: PoolJob;
  readonly id: number;
  attempts: number;
  readonly done: (ok: boolean) => void;
}

interface Slot {
  worker: Worker;
  /** Where the worker answers batch ids (read by 'message' events, and synchronously by poll()). */
  readonly done: MessagePort;
  ready: boolean;
  readonly inFlight: Map<number, Pending>;
}

// compiled (dist/, this file is .js) the worker loads unwrap-worker.js; from the sources it needs tsx
const COMPILED = import.meta.url.endsWith('.js');
const WORKER_URL = new URL(COMPILED ? './unwrap-worker.js' : './unwrap-worker.ts', import.meta.url).href;
const TSX_API = COMPILED
  ? null
  : 'file://' +
    createRequire(import.meta.url)
      .resolve('tsx/esm/api')
      .replace(/\.cjs$/, '.mjs');
const BOOT = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsxApi) (await import(workerData.tsxApi)).register();
  const { runUnwrapWorker } = await import(workerData.url);
  runUnwrapWorker();
})().catch((e) => parentPort.postMessage({ error: String((e && e.message) || e) }));
`;

export class UnwrapPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private readonly maxInFlight: number;
  private nextId = 1;
  private closing = false;
  private counts = { batches: 0, frames: 0, crashes: 0, rerunBatches: 0, lostFrames: 0 };
  /** Frames in batches given to run() and not yet settled. */
  private outstanding = 0;
  /** Called when a worker has room again (the frame processor, and the gateway's jobs, then hand over their open batches). */
  private readonly capacityListeners = new Set<() => void>();

  private constructor(private readonly o: UnwrapPoolOptions) {
    this.maxInFlight = o.maxInFlightPerWorker ?? 8;
  }

  /** Starts the workers and waits until each runs the event loop's suite; throws when one cannot. */
  static async start(o: UnwrapPoolOptions): Promise<UnwrapPool> {
    if (!(o.workers >= 1)) throw new RangeError('an unwrap pool needs at least one worker');
    const pool = new UnwrapPool(o);
    try {
      await Promise.all(Array.from({ length: o.workers }, () => pool.spawn()));
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  /** Starts one worker; resolves once it is ready, rejects if it fails first. */
  private spawn(): Promise<void> {
    const { port1, port2 } = new MessageChannel();
    const data: UnwrapWorkerData & { url: string; tsxApi: string | null } = {
      suite: this.o.suite,
      url: WORKER_URL,
      tsxApi: TSX_API,
      done: port2,
      ...(this.o.testCrashes ? { testCrashes: this.o.testCrashes } : {}),
    };
    const worker = new Worker(BOOT, { eval: true, workerData: data, transferList: [port2] });
    const slot: Slot = { worker, done: port1, ready: false, inFlight: new Map() };
    port1.on('message', (id: number) => this.finished(slot, id));
    this.slots.push(slot);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new Error(`a Sphinx worker thread did not start within ${this.o.startTimeoutMs ?? 60_000} ms`)),
        this.o.startTimeoutMs ?? 60_000,
      );
      const fail = (e: Error) => {
        clearTimeout(timer);
        void worker.terminate();
        reject(e);
      };
      worker.on('message', (m: { ready?: boolean; suite?: string; error?: string }) => {
        if (m.error !== undefined) return fail(new Error(`a Sphinx worker thread failed to start: ${m.error}`));
        if (m.ready) {
          if (m.suite !== this.o.suite) return fail(new Error(`a Sphinx worker thread runs ${m.suite}, the event loop ${this.o.suite}`));
          clearTimeout(timer);
          slot.ready = true;
          resolve();
          this.pump();
        }
      });
      // the 'exit' that follows tells the pool; 'error' alone would leave an unhandled event
      worker.on('error', (e) => {
        if (!slot.ready) fail(e);
        else this.o.log?.error({ err: String(e) }, 'a Sphinx worker thread crashed');
      });
      worker.on('exit', (code) => this.exited(slot, code));
    });
  }

  /** A worker is gone: replace it (unless closing) and run what it held again, once. */
  private exited(slot: Slot, code: number): void {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    // answers it gave before it died still count (it is out of the slots: nothing new goes to it)
    this.drainAnswers(slot);
    slot.done.close();
    if (this.closing) {
      for (const p of slot.inFlight.values()) this.settle(p, false);
      return;
    }
    if (!slot.ready) return; // failed at start: start() reports it
    this.counts.crashes++;
    const again: Pending[] = [];
    for (const p of slot.inFlight.values()) {
      p.attempts++;
      if (p.attempts >= 2) {
        this.counts.lostFrames += framesOf(p.job);
        this.settle(p, false);
      } else again.push(p);
    }
    this.counts.rerunBatches += again.length;
    this.queue.unshift(...again);
    this.o.log?.warn({ code, rerun: again.length, crashes: this.counts.crashes }, 'Sphinx worker thread exited; starting another');
    this.spawn().catch((e: unknown) => {
      this.o.log?.error({ err: String(e) }, 'a replacement Sphinx worker thread did not start');
      // try again later rather than in a tight loop
      setTimeout(() => {
        if (!this.closing && this.slots.length < this.o.workers) void this.spawn().catch(() => {});
      }, 1000).unref();
    });
    this.pump();
  }

  private finished(slot: Slot, id: number): void {
    const p = slot.inFlight.get(id);
    if (!p) return;
    slot.inFlight.delete(id);
    this.settle(p, true);
    this.pump();
    if (this.hasCapacity()) for (const l of this.capacityListeners) l();
  }

  /** The answers a worker has given that no 'message' event has delivered yet, taken now. */
  private drainAnswers(slot: Slot): void {
    for (let m = receiveMessageOnPort(slot.done); m !== undefined; m = receiveMessageOnPort(slot.done)) this.finished(slot, m.message as number);
  }

  /**
   * Takes the workers' answers synchronously (and hands them the next batches): the event loop
   * may be inside one long stretch of frames (a whole read buffer of a stream), during which no
   * 'message' event runs; without this the workers would sit idle until it ends.
   */
  poll(): void {
    for (const s of this.slots) this.drainAnswers(s);
  }

  private settle(p: Pending, ok: boolean): void {
    this.outstanding -= framesOf(p.job);
    p.done(ok);
  }

  /**
   * Whether a worker is (nearly) out of work: nothing queued, and one holding less than two
   * batches. Then a partly filled batch is worth handing over now; otherwise it keeps filling.
   */
  hasCapacity(): boolean {
    return this.queue.length === 0 && this.slots.some((s) => s.ready && s.inFlight.size < Math.min(2, this.maxInFlight));
  }

  /**
   * Runs a job on a worker; `done(true)` once its results are written, `done(false)` when it
   * was dropped (worker crashes, or closing). `done` may run synchronously inside poll().
   */
  run(job: PoolJob, done: (ok: boolean) => void): void {
    if (this.closing) return done(false);
    this.outstanding += framesOf(job);
    this.queue.push({ job, id: this.nextId++, attempts: 0, done });
    this.pump();
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let best: Slot | undefined;
      for (const s of this.slots) if (s.ready && s.inFlight.size < this.maxInFlight && (!best || s.inFlight.size < best.inFlight.size)) best = s;
      if (!best) return;
      const p = this.queue.shift()!;
      best.inFlight.set(p.id, p);
      this.counts.batches++;
      this.counts.frames += framesOf(p.job);
      const m = { ...p.job, id: p.id } as BatchMessage;
      best.worker.postMessage(m);
    }
  }

  /** `fn` runs whenever a worker has room again after a job (see hasCapacity). Returns its removal. */
  addCapacityListener(fn: () => void): () => void {
    this.capacityListeners.add(fn);
    return () => this.capacityListeners.delete(fn);
  }

  /** Frames the workers hold at most at once in batches of `batch` frames. */
  maxInFlightFrames(batch: number): number {
    return this.o.workers * this.maxInFlight * batch;
  }

  /** Frames given to run() and not yet settled. */
  get pendingFrames(): number {
    return this.outstanding;
  }

  get stats(): Omit<PoolStats, 'queuedFrames' | 'inlineFrames'> {
    return { workers: this.slots.filter((s) => s.ready).length, ...this.counts };
  }

  /** Tests: the worker threads' ids. */
  get threadIds(): number[] {
    return this.slots.map((s) => s.worker.threadId);
  }

  /** Terminates the workers; batches still held are settled as dropped. */
  async close(): Promise<void> {
    this.closing = true;
    for (const p of this.queue.splice(0)) this.settle(p, false);
    const slots = [...this.slots];
    await Promise.all(slots.map((s) => s.worker.terminate()));
    for (const s of slots) s.done.close();
  }
}

/**
 * When an open batch goes to the pool, the one rule every batcher on it follows (the hop's
 * frames here, the gateway's token checks and ACKs in gateway/crypto-offload.ts): at the end of
 * the event-loop turn it was opened in if a worker has room then, else as soon as one has room
 * again; the batcher itself seals a batch that is full. So a job per turn at low load and full
 * jobs under load, where each job's messaging would otherwise cost more than its items.
 */
export class BatchSealer {
  private listening: UnwrapPool | undefined;
  private remove: (() => void) | undefined;

  /** `seal` hands the open batch (if any, and not empty) to `pool`. */
  constructor(private readonly seal: (pool: UnwrapPool) => void) {}

  /** A batch was opened for `pool`; `isOpen` says at the turn's end whether it is still open and not empty. */
  opened(pool: UnwrapPool, isOpen: () => boolean): void {
    if (this.listening !== pool) {
      this.remove?.();
      this.listening = pool;
      this.remove = pool.addCapacityListener(() => this.seal(pool));
    }
    setImmediate(() => {
      if (isOpen() && pool.hasCapacity()) this.seal(pool);
    });
  }
}

interface OpenBatch {
  readonly engine: HopEngine<unknown>;
  readonly geometry: Geometry;
  readonly packet: number;
  readonly frames: SharedArrayBuffer;
  readonly view: Uint8Array;
  readonly results: SharedArrayBuffer;
  readonly keys: EpochHopKey[];
  readonly keyIndex: Uint8Array;
  readonly t0: Float64Array;
  count: number;
}

/**
 * The hop node's FrameProcessor when `[crypto] workers` > 0: batches frames for the pool and
 * admits the results into the engine they came in for (see the top of this file).
 */
export class PooledFrames<P> {
  private open: OpenBatch | undefined;
  private readonly sealer = new BatchSealer(() => {
    if (this.open && this.open.count > 0) this.seal();
  });
  private inFlightBatches = 0;
  private drainWaiters: (() => void)[] = [];
  private readonly free = new Map<number, { frames: SharedArrayBuffer; results: SharedArrayBuffer }[]>();
  private openCount = 0;
  private inlineCount = 0;
  /** Frames the pool may hold (open batch, queued, in flight) before this thread peels them itself. */
  private readonly maxQueued: number;

  constructor(
    private readonly pool: UnwrapPool,
    /** The engine of the current geometry (frames go to the one current when they arrive). */
    private readonly engine: () => HopEngine<P>,
    /** Frames lost with a batch that crashed two workers (a node drop, `worker-crash`). */
    private readonly lost: (frames: number) => void,
    private readonly maxBatch = 32,
  ) {
    // what the workers can be given at once (so under a flood each has full batches waiting in
    // its own queue and never waits for the event loop), plus the open batch; the event loop
    // peels only what is past this
    this.maxQueued = pool.maxInFlightFrames(maxBatch) + maxBatch;
  }

  process(frame: Uint8Array): void {
    const engine = this.engine();
    const t0 = performance.now();
    const k = engine.precheck(frame, t0);
    if (!k) return;
    const geometry = engine.geometry;
    const P = packetSizes(geometry).packet;
    // on this thread, as with workers = 0 but through the same admit: a key without its raw
    // secret, a frame processPacket refuses for its length, and any frame past the pool's bound
    // (the workers are behind: this thread's time then goes to peeling, so it reads less, and
    // the overload backs up into the senders' TCP windows as it does without workers)
    // the pool looks full: take what the workers have finished meanwhile, then look again
    if (this.queuedFrames >= this.maxQueued) this.pool.poll();
    if (k.secret === undefined || frame.length !== P || this.queuedFrames >= this.maxQueued) {
      if (this.queuedFrames >= this.maxQueued) this.inlineCount++;
      let tag: Uint8Array | undefined;
      const result = processPacket(geometry, k.key, frame, {
        isReplay: (t) => {
          tag = t;
          return false;
        },
      });
      engine.admit([{ epoch: k.epoch, result, tag, t0 }]);
      return;
    }
    if (this.open && this.open.engine !== (engine as HopEngine<unknown>)) this.seal();
    const b = (this.open ??= this.newBatch(engine as HopEngine<unknown>, geometry, P));
    let ki = b.keys.indexOf(k);
    if (ki < 0) ki = b.keys.push(k) - 1;
    b.view.set(frame, b.count * P);
    b.keyIndex[b.count] = ki;
    b.t0[b.count] = t0;
    b.count++;
    this.openCount++;
    if (b.count === 1) this.sealer.opened(this.pool, () => this.open === b && b.count > 0);
    if (b.count >= this.maxBatch) this.seal();
  }

  /** Frames peeled on this thread because the pool held its bound (the workers were behind). */
  get inline(): number {
    return this.inlineCount;
  }

  private newBatch(engine: HopEngine<unknown>, geometry: Geometry, P: number): OpenBatch {
    const buf = this.free.get(P)?.pop() ?? {
      frames: new SharedArrayBuffer(this.maxBatch * P),
      results: new SharedArrayBuffer(this.maxBatch * slotBytes(geometry)),
    };
    return {
      engine,
      geometry,
      packet: P,
      frames: buf.frames,
      view: new Uint8Array(buf.frames),
      results: buf.results,
      keys: [],
      keyIndex: new Uint8Array(this.maxBatch),
      t0: new Float64Array(this.maxBatch),
      count: 0,
    };
  }

  private seal(): void {
    const b = this.open;
    if (!b) return;
    this.open = undefined;
    this.openCount -= b.count;
    this.inFlightBatches++;
    this.pool.run(
      {
        kind: 'unwrap',
        geometry: b.geometry,
        count: b.count,
        frames: b.frames,
        results: b.results,
        keyIndex: b.keyIndex.slice(0, b.count),
        keys: b.keys.map((k) => ({ epoch: k.epoch, secret: k.secret! })),
      },
      (ok) => this.decided(b, ok),
    );
  }

  private decided(b: OpenBatch, ok: boolean): void {
    try {
      if (!ok) this.lost(b.count);
      else {
        const results = new Uint8Array(b.results);
        const items: UnwrappedFrame[] = new Array<UnwrappedFrame>(b.count);
        for (let i = 0; i < b.count; i++) {
          const { result, tag } = readSlot(b.geometry, results, i);
          items[i] = { epoch: b.keys[b.keyIndex[i]!]!.epoch, result, tag, t0: b.t0[i]! };
        }
        b.engine.admit(items);
      }
    } finally {
      const list = this.free.get(b.packet) ?? [];
      if (list.length < 16) list.push({ frames: b.frames, results: b.results });
      this.free.set(b.packet, list);
      if (--this.inFlightBatches === 0) for (const w of this.drainWaiters.splice(0)) w();
    }
  }

  /** Frames waiting for a worker or in one. */
  get queuedFrames(): number {
    return this.openCount + this.pool.pendingFrames;
  }

  /** Shutdown: hands over the open batch and waits until every batch is decided. */
  async drain(): Promise<void> {
    this.seal();
    while (this.inFlightBatches > 0) await new Promise<void>((r) => this.drainWaiters.push(r));
  }
}
