/**
 * The exit analyses and the targets' forward tracking on a second thread. The event loop writes
 * the trace and the entry ring into shared memory and queues one request per exiting packet
 * (the number of its departure record and how far back the analyses may read:
 * exit-analyses.ts) and the forward replay's few ops (forward-replay.ts); a worker thread
 * serves the requests in order with the same `ExitAnalyses.serve` the one-thread run calls,
 * and replays the trace records and the ops in order with the same `ForwardReplay`, over the
 * same records, so the results are identical by construction.
 *
 * Each ring is twice the analyses' window: a request made at record s reads records
 * s − window + 1 .. s, so the event loop may run ahead until record s + window, and waits
 * (Atomics.wait) only if the worker is that far behind; the replay reads each record once, so
 * the loop may not write more than a ring ahead of it. The request queue and the op queue are
 * rings of `QUEUE` slots with counters (published, done) in shared memory; the loop publishes
 * how many trace records it has written every `PUBLISH` records (through the ring's `limit`,
 * so the write path has no extra test).
 */
import { createRequire } from 'node:module';
import { threadCpuSeconds } from '../runtime/thread-cpu.ts';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { ExitAnalyses, REQ_FIELDS, type ExitConfig, type ExitRequest, type ExitResults, type ExitRunner } from './exit-analyses.ts';
import { OP_FIELDS } from './forward-replay.ts';
import { EntryRing, TraceRing } from './trace.ts';

const C_PUBLISHED = 0;
const C_DONE = 1;
const C_STOP = 2;
const C_STATE = 3;
/** ops published, ops replayed */
const C_OPS = 4;
const C_OPS_DONE = 5;
/** bumped by the worker whenever it has done something (the loop waits on it) */
const C_PROGRESS = 6;
/** bumped by the loop whenever it has published something (the worker waits on it) */
const C_WAKE = 7;
/** forward targets finished (progress reports) */
const C_FWD_FINISHED = 8;
const CTRL_INTS = 9;
/** in the 64-bit counters: trace records published, trace records replayed */
const W_TRACE_PUB = 0;
const W_SCANNED = 1;

const ST_RUNNING = 1;
const ST_FAILED = 2;
const ST_FINISHED = 3;
const QUEUE = 4096;
/** trace records between two publications of the writer's position */
const PUBLISH = 16384;
/** trace records the worker replays between two looks at the request queue */
const SCAN_CHUNK = 65536;
/** how long the event loop waits for the worker without any progress before it gives up */
const STALL_MS = 300_000;

interface WorkerData {
  /** tsx's loader when the sources run (null: compiled, dist/) */
  tsxApi: string | null;
  url: string;
  ctrl: SharedArrayBuffer;
  ctrl64: SharedArrayBuffer;
  reqs: SharedArrayBuffer;
  ops: SharedArrayBuffer;
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
  private readonly ctrl64: BigInt64Array;
  private readonly reqs: Float64Array;
  private readonly ops: Float64Array;
  private opsPublished = 0;
  /** the writer's position is published when it reaches this record */
  private nextPublish: number;
  /** the first trace record the writer may not write yet (the walks' and the replay's needs) */
  private traceLimit = Infinity;
  private readonly traceStart = new Float64Array(QUEUE);
  private readonly entryStart = new Float64Array(QUEUE);
  private published = 0;
  private readonly worker: Worker;
  private readonly port: MessagePort;
  /** time the event loop spent waiting for the worker (ms) */
  waitedMs = 0;
  /** CPU seconds the worker thread used, once it has finished */
  workerCpuS = NaN;

  constructor(private readonly cfg: ExitConfig) {
    this.trace = TraceRing.shared(2 * cfg.traceWindow);
    this.entries = EntryRing.shared(2 * cfg.entryWindow);
    const ctrl = new SharedArrayBuffer(CTRL_INTS * 4);
    const ctrl64 = new SharedArrayBuffer(2 * 8);
    const reqs = new SharedArrayBuffer(QUEUE * REQ_FIELDS * 8);
    const ops = new SharedArrayBuffer(QUEUE * OP_FIELDS * 8);
    this.ctrl = new Int32Array(ctrl);
    this.ctrl64 = new BigInt64Array(ctrl64);
    this.reqs = new Float64Array(reqs);
    this.ops = new Float64Array(ops);
    this.nextPublish = Math.min(PUBLISH, this.trace.capacity - cfg.traceWindow);
    this.updateLimits();
    this.trace.onFull = (w) => {
      if (w >= this.nextPublish) {
        Atomics.store(this.ctrl64, W_TRACE_PUB, BigInt(w));
        this.nextPublish = w + Math.min(PUBLISH, this.trace.capacity - cfg.traceWindow);
        this.wake();
      }
      this.updateLimits();
      if (w >= this.traceLimit) this.waitUntil(() => w < this.traceLimit);
    };
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
      ctrl64,
      reqs,
      ops,
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
    this.wake();
    this.updateLimits();
  }

  forward(kind: number, arg: number): void {
    if (this.opsPublished - Atomics.load(this.ctrl, C_OPS_DONE) >= QUEUE) this.waitUntil(() => this.opsPublished - Atomics.load(this.ctrl, C_OPS_DONE) < QUEUE);
    const o = (this.opsPublished % QUEUE) * OP_FIELDS;
    this.ops[o] = this.trace.written;
    this.ops[o + 1] = kind;
    this.ops[o + 2] = arg;
    this.opsPublished++;
    Atomics.store(this.ctrl, C_OPS, this.opsPublished);
    this.wake();
  }

  forwardFinished(): number {
    return Atomics.load(this.ctrl, C_FWD_FINISHED);
  }

  private wake(): void {
    Atomics.add(this.ctrl, C_WAKE, 1);
    Atomics.notify(this.ctrl, C_WAKE);
  }

  /**
   * The writers' limits: from the oldest request not yet served (its walk's and scan's
   * records), and for the trace also from the replay's position (each record read once) and
   * the next publication of the writer's position.
   */
  private updateLimits(): void {
    const done = Atomics.load(this.ctrl, C_DONE);
    const scanned = Number(Atomics.load(this.ctrl64, W_SCANNED));
    let tl = scanned + this.trace.capacity;
    if (done >= this.published) this.entries.limit = Infinity;
    else {
      const slot = done % QUEUE;
      tl = Math.min(tl, this.traceStart[slot]! + this.trace.capacity - this.cfg.traceWindow + 1);
      this.entries.limit = this.entryStart[slot]! + this.entries.capacity - this.cfg.entryWindow + 1;
    }
    this.traceLimit = tl;
    this.trace.limit = Math.min(tl, this.nextPublish);
  }

  private waitUntil(ok: () => boolean): void {
    const t0 = performance.now();
    let last = Atomics.load(this.ctrl, C_PROGRESS);
    let lastMove = t0;
    // the worker may be waiting for records not published yet
    Atomics.store(this.ctrl64, W_TRACE_PUB, BigInt(this.trace.written));
    this.wake();
    for (;;) {
      this.updateLimits();
      if (ok()) break;
      this.checkWorker();
      const prog = Atomics.load(this.ctrl, C_PROGRESS);
      const now = performance.now();
      if (prog !== last) {
        last = prog;
        lastMove = now;
      } else if (now - lastMove > STALL_MS) throw new Error(`the analysis thread made no progress for ${STALL_MS / 1000} s`);
      Atomics.wait(this.ctrl, C_PROGRESS, prog, 1000);
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
    Atomics.store(this.ctrl64, W_TRACE_PUB, BigInt(this.trace.written));
    Atomics.store(this.ctrl, C_STOP, 1);
    this.wake();
    const t0 = performance.now();
    for (;;) {
      const st = Atomics.load(this.ctrl, C_STATE);
      if (st === ST_FINISHED) break;
      this.checkWorker();
      if (performance.now() - t0 > STALL_MS) throw new Error('the analysis thread did not finish');
      Atomics.wait(this.ctrl, C_STATE, st, 1000);
    }
    this.waitedMs += performance.now() - t0;
    const m = receiveMessageOnPort(this.port)?.message as { results?: ExitResults; cpuS?: number } | undefined;
    void this.worker.terminate();
    if (!m?.results) throw new Error('the analysis thread finished without results');
    this.workerCpuS = m.cpuS ?? NaN;
    return m.results;
  }
}

/** The worker's side: serve requests and replay the trace in order until told to stop, then post the results. */
export function runExitWorker(d: WorkerData): void {
  const ctrl = new Int32Array(d.ctrl);
  const ctrl64 = new BigInt64Array(d.ctrl64);
  const q = new Float64Array(d.reqs);
  const ops = new Float64Array(d.ops);
  const trace = new TraceRing(d.traceCapacity, d.trace);
  const entries = new EntryRing(d.entryCapacity, d.entries);
  const an = new ExitAnalyses(trace, entries, d.cfg);
  const replay = an.replay;
  Atomics.store(ctrl, C_STATE, ST_RUNNING);
  const r: ExitRequest = { traceStart: 0, traceAvail: 0, entryStart: 0, entryAvail: 0, tExit: 0, sender: -1, flags: 0 };
  let done = 0;
  let opsDone = 0;
  for (;;) {
    const wake = Atomics.load(ctrl, C_WAKE);
    let worked = false;
    // exit requests, a batch at a time
    const pub = Atomics.load(ctrl, C_PUBLISHED);
    for (let k = 0; k < 64 && done < pub; k++) {
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
      worked = true;
    }
    // the forward replay: records up to the published position, the ops in order between
    // them. The position is read before the op count, so an op not seen yet was made at or
    // after that position, and every op seen was made after the records before its own.
    const tracePub = Number(Atomics.load(ctrl64, W_TRACE_PUB));
    const opsPub = Atomics.load(ctrl, C_OPS);
    let budget = SCAN_CHUNK;
    while (budget > 0) {
      const from = replay.scanned;
      if (opsDone < opsPub) {
        const o = (opsDone % QUEUE) * OP_FIELDS;
        const pos = ops[o]!;
        if (from < pos) replay.advance(Math.min(pos, from + budget));
        else {
          replay.apply(pos, ops[o + 1]!, ops[o + 2]!);
          opsDone++;
          Atomics.store(ctrl, C_OPS_DONE, opsDone);
          budget--;
        }
      } else if (from < tracePub) replay.advance(Math.min(tracePub, from + budget));
      else break;
      budget -= replay.scanned - from;
      worked = true;
    }
    if (worked) {
      Atomics.store(ctrl64, W_SCANNED, BigInt(replay.scanned));
      Atomics.store(ctrl, C_FWD_FINISHED, replay.finished);
      Atomics.add(ctrl, C_PROGRESS, 1);
      Atomics.notify(ctrl, C_PROGRESS);
      continue;
    }
    if (
      Atomics.load(ctrl, C_STOP) === 1 &&
      Atomics.load(ctrl, C_PUBLISHED) === done &&
      Atomics.load(ctrl, C_OPS) === opsDone &&
      Number(Atomics.load(ctrl64, W_TRACE_PUB)) === replay.scanned
    )
      break;
    Atomics.wait(ctrl, C_WAKE, wake, 200);
  }
  d.port.postMessage({ results: an.results(), cpuS: threadCpuSeconds() });
  Atomics.store(ctrl, C_STATE, ST_FINISHED);
  Atomics.notify(ctrl, C_STATE);
}
