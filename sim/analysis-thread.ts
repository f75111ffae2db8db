/**
 * The exit analyses on a second thread. The event loop writes the trace and the entry ring into
 * shared memory and queues one request per exiting packet (the number of its departure record
 * and how far back the analyses may read: exit-analyses.ts); a worker thread serves the
 * requests in order with the same `ExitAnalyses.serve` the one-thread run calls, over the same
 * records, so the results are identical by construction.
 *
 * Each ring is twice the analyses' window: a request made at record s reads records
 * s − window + 1 .. s, so the event loop may run ahead until record s + window, and waits
 * (Atomics.wait) only if the worker is that far behind. The request queue is a ring of
 * `QUEUE` slots with two counters (published, done) in shared memory.
 */
import { createRequire } from 'node:module';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { ExitAnalyses, REQ_FIELDS, type ExitConfig, type ExitRequest, type ExitResults, type ExitRunner } from './exit-analyses.ts';
import { EntryRing, TraceRing } from './trace.ts';

const C_PUBLISHED = 0;
const C_DONE = 1;
const C_STOP = 2;
const C_STATE = 3;

const ST_RUNNING = 1;
const ST_FAILED = 2;
const ST_FINISHED = 3;
const QUEUE = 4096;
/** how long the event loop waits for the worker without any progress before it gives up */
const STALL_MS = 300_000;

interface WorkerData {
  /** tsx's loader when the sources run (null: compiled, dist/) */
  tsxApi: string | null;
  url: string;
  ctrl: SharedArrayBuffer;
  reqs: SharedArrayBuffer;
  trace: SharedArrayBuffer;
  traceCapacity: number;
  entries: SharedArrayBuffer;
  entryCapacity: number;
  cfg: ExitConfig;
  port: MessagePort;
}

const WORKER_SRC = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsxApi) (await import(workerData.tsxApi)).register();
  const { runExitWorker } = await import(workerData.url);
  runExitWorker(workerData);
})().catch((e) => {
  workerData.port.postMessage({ error: String((e && e.stack) || e) });
  const c = new Int32Array(workerData.ctrl);
  Atomics.store(c, ${C_STATE}, ${ST_FAILED});
  Atomics.notify(c, ${C_STATE});
});
`;

export class ThreadedExits implements ExitRunner {
  readonly trace: TraceRing;
  readonly entries: EntryRing;
  private readonly ctrl: Int32Array;
  private readonly reqs: Float64Array;
  private readonly traceStart = new Float64Array(QUEUE);
  private readonly entryStart = new Float64Array(QUEUE);
  private published = 0;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  /** time the event loop spent waiting for the worker (ms) */
  waitedMs = 0;

  constructor(private readonly cfg: ExitConfig) {
    this.trace = TraceRing.shared(2 * cfg.traceWindow);
    this.entries = EntryRing.shared(2 * cfg.entryWindow);
    const ctrl = new SharedArrayBuffer(16);
    const reqs = new SharedArrayBuffer(QUEUE * REQ_FIELDS * 8);
    this.ctrl = new Int32Array(ctrl);
    this.reqs = new Float64Array(reqs);
    this.trace.onFull = (w) => this.waitUntil(() => w < this.trace.limit);
    this.entries.onFull = (w) => this.waitUntil(() => w < this.entries.limit);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    // compiled (dist/, this file is .js) the worker loads this module as it is; from the sources it needs tsx
    const compiled = import.meta.url.endsWith('.js');
    const data: WorkerData = {
      tsxApi: compiled
        ? null
        : 'file://' +
          createRequire(import.meta.url)
            .resolve('tsx/esm/api')
            .replace(/\.cjs$/, '.mjs'),
      url: import.meta.url,
      ctrl,
      reqs,
      trace: this.trace.nodeType.buffer as SharedArrayBuffer,
      traceCapacity: this.trace.capacity,
      entries: this.entries.time.buffer as SharedArrayBuffer,
      entryCapacity: this.entries.capacity,
      cfg,
      port: port2,
    };
    this.worker = new Worker(WORKER_SRC, { eval: true, workerData: data, transferList: [port2] });
    // the run is synchronous: nothing here may keep the process alive if it throws
    this.worker.unref();
  }

  request(r: ExitRequest): void {
    if (this.published - Atomics.load(this.ctrl, C_DONE) >= QUEUE) this.waitUntil(() => this.published - Atomics.load(this.ctrl, C_DONE) < QUEUE);
    const slot = this.published % QUEUE;
    const q = this.reqs;
    const o = slot * REQ_FIELDS;
    q[o] = r.traceStart;
    q[o + 1] = r.traceAvail;
    q[o + 2] = r.entryStart;
    q[o + 3] = r.entryAvail;
    q[o + 4] = r.tExit;
    q[o + 5] = r.sender;
    q[o + 6] = r.flags;
    this.traceStart[slot] = r.traceStart;
    this.entryStart[slot] = r.entryStart;
    this.published++;
    Atomics.store(this.ctrl, C_PUBLISHED, this.published);
    Atomics.notify(this.ctrl, C_PUBLISHED);
    this.updateLimits();
  }

  /** The writers' limits from the oldest request not yet served. */
  private updateLimits(): void {
    const done = Atomics.load(this.ctrl, C_DONE);
    if (done >= this.published) {
      this.trace.limit = Infinity;
      this.entries.limit = Infinity;
      return;
    }
    const slot = done % QUEUE;
    this.trace.limit = this.traceStart[slot]! + this.trace.capacity - this.cfg.traceWindow + 1;
    this.entries.limit = this.entryStart[slot]! + this.entries.capacity - this.cfg.entryWindow + 1;
  }

  private waitUntil(ok: () => boolean): void {
    const t0 = performance.now();
    let last = Atomics.load(this.ctrl, C_DONE);
    let lastMove = t0;
    for (;;) {
      this.updateLimits();
      if (ok()) break;
      this.checkWorker();
      const done = Atomics.load(this.ctrl, C_DONE);
      const now = performance.now();
      if (done !== last) {
        last = done;
        lastMove = now;
      } else if (now - lastMove > STALL_MS) throw new Error(`the analysis thread made no progress for ${STALL_MS / 1000} s`);
      Atomics.wait(this.ctrl, C_DONE, done, 1000);
    }
    this.waitedMs += performance.now() - t0;
  }

  private checkWorker(): void {
    if (Atomics.load(this.ctrl, C_STATE) !== ST_FAILED) return;
    const m = receiveMessageOnPort(this.port)?.message as { error?: string } | undefined;
    void this.worker.terminate();
    throw new Error(`the analysis thread failed: ${m?.error ?? 'unknown error'}`);
  }

  finish(): ExitResults {
    Atomics.store(this.ctrl, C_STOP, 1);
    Atomics.notify(this.ctrl, C_PUBLISHED);
    const t0 = performance.now();
    for (;;) {
      const st = Atomics.load(this.ctrl, C_STATE);
      if (st === ST_FINISHED) break;
      this.checkWorker();
      if (performance.now() - t0 > STALL_MS) throw new Error('the analysis thread did not finish');
      Atomics.wait(this.ctrl, C_STATE, st, 1000);
    }
    this.waitedMs += performance.now() - t0;
    const m = receiveMessageOnPort(this.port)?.message as { results?: ExitResults } | undefined;
    void this.worker.terminate();
    if (!m?.results) throw new Error('the analysis thread finished without results');
    return m.results;
  }
}

/** The worker's side: serve requests in order until told to stop, then post the results. */
export function runExitWorker(d: WorkerData): void {
  const ctrl = new Int32Array(d.ctrl);
  const q = new Float64Array(d.reqs);
  const trace = new TraceRing(d.traceCapacity, d.trace);
  const entries = new EntryRing(d.entryCapacity, d.entries);
  const an = new ExitAnalyses(trace, entries, d.cfg);
  Atomics.store(ctrl, C_STATE, ST_RUNNING);
  const r: ExitRequest = { traceStart: 0, traceAvail: 0, entryStart: 0, entryAvail: 0, tExit: 0, sender: -1, flags: 0 };
  let done = 0;
  for (;;) {
    const pub = Atomics.load(ctrl, C_PUBLISHED);
    if (done < pub) {
      const o = (done % QUEUE) * REQ_FIELDS;
      r.traceStart = q[o]!;
      r.traceAvail = q[o + 1]!;
      r.entryStart = q[o + 2]!;
      r.entryAvail = q[o + 3]!;
      r.tExit = q[o + 4]!;
      r.sender = q[o + 5]!;
      r.flags = q[o + 6]!;
      an.serve(r);
      done++;
      Atomics.store(ctrl, C_DONE, done);
      Atomics.notify(ctrl, C_DONE);
      continue;
    }
    if (Atomics.load(ctrl, C_STOP) === 1 && Atomics.load(ctrl, C_PUBLISHED) === done) break;
    Atomics.wait(ctrl, C_PUBLISHED, pub, 200);
  }
  d.port.postMessage({ results: an.results() });
  Atomics.store(ctrl, C_STATE, ST_FINISHED);
  Atomics.notify(ctrl, C_STATE);
}
