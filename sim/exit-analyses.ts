/**
 * The analyses run when a packet leaves the mix network: its backward walk (sender posterior)
 * and the timing attack's ranking. Both are pure functions of the trace and the entry ring as
 * they stand at that moment, so a request names that moment (the newest record's number and
 * how far back the analysis may read) and the answer does not depend on when, or on which
 * thread, it is computed. `ExitAnalyses.serve` is the one implementation: the engine either
 * calls it at once (`InlineExits`) or hands the requests to a second thread that calls it in
 * the same order over the same records (`analysis-thread.ts`).
 */
import { BackwardWalker, type SenderPosterior, type SenderSummary } from './backward.ts';
import { ForwardReplay, type ForwardResults } from './forward-replay.ts';
import { ErlangTable, TimingAttack, type TimingSummary } from './timing.ts';
import type { EntryRing, TraceRing } from './trace.ts';

/** the packet is a forward target: its sender entropy counts in `sender_entropy` */
export const REQ_TARGET = 1;
/** the full posterior is wanted (a followed message's fragment) */
export const REQ_FULL = 2;

/** Fields of one request, as stored in the shared request queue. */
export const REQ_FIELDS = 7;

export interface ExitRequest {
  /** number of the packet's departure record (the newest when it is made) */
  traceStart: number;
  /** records the walk may read back */
  traceAvail: number;
  /** newest entry number, and entries the timing scan may read back */
  entryStart: number;
  entryAvail: number;
  tExit: number;
  /** the true sender for the timing attack, or −1 (no timing observation) */
  sender: number;
  flags: number;
}

/** What the engine needs to build the analyses and to size their windows. */
export interface ExitConfig {
  compromised: Uint8Array;
  clients: number;
  layers: number;
  mu: number;
  /** constant non-pool time on the way (timing attack) */
  timingOffset: number;
  /** the most trace records a walk reads, and entries a timing scan reads */
  traceWindow: number;
  entryWindow: number;
  /** the forward replay's network: mixes (nodes below this), all nodes, forward targets */
  mixes: number;
  nodes: number;
  targets: number;
}

/** Results, in request order. */
export interface ExitResults {
  /** per REQ_TARGET request: the sender entropy (NaN: no client had weight) */
  senderEntropy: Float64Array;
  /** per REQ_TARGET request: 1 when the walk ran out of trace */
  truncated: Uint8Array;
  /** per REQ_FULL request: the posterior */
  posteriors: SenderPosterior[];
  timing: TimingSummary;
  /** the targets' forward tracking (forward-replay.ts) */
  forward: ForwardResults;
}

export class ExitAnalyses {
  private readonly walker: BackwardWalker;
  readonly timing: TimingAttack;
  private readonly sum: SenderSummary = { touched: 0, entropy: 0, truncated: false };
  private senderEntropy: number[] = [];
  private truncated: number[] = [];
  private posteriors: SenderPosterior[] = [];
  /** the targets' forward tracking, replayed from the same trace (driven by the runner, not by `serve`) */
  readonly replay: ForwardReplay;

  constructor(trace: TraceRing, entries: EntryRing, cfg: ExitConfig) {
    this.replay = new ForwardReplay(trace, cfg.compromised, cfg.mixes, cfg.nodes, cfg.targets);
    this.walker = new BackwardWalker(trace, cfg.compromised, cfg.clients, cfg.traceWindow);
    this.timing = new TimingAttack(entries, new ErlangTable(cfg.layers, cfg.mu), cfg.timingOffset, cfg.clients);
  }

  serve(r: ExitRequest): void {
    if (r.flags & REQ_FULL) {
      const post = this.walker.walk(r.traceStart, r.traceAvail);
      this.posteriors.push(post);
      if (r.flags & REQ_TARGET) this.noteTarget(post.clients.length, post.entropy, post.truncated);
    } else if (r.flags & REQ_TARGET) {
      const s = this.walker.summary(r.traceStart, r.traceAvail, this.sum);
      this.noteTarget(s.touched, s.entropy, s.truncated);
    }
    if (r.sender >= 0) this.timing.observe(r.tExit, r.sender, r.entryStart, r.entryAvail);
  }

  private noteTarget(touched: number, entropy: number, truncated: boolean): void {
    this.senderEntropy.push(touched > 0 ? entropy : NaN);
    this.truncated.push(truncated ? 1 : 0);
  }

  results(): ExitResults {
    return {
      senderEntropy: Float64Array.from(this.senderEntropy),
      truncated: Uint8Array.from(this.truncated),
      posteriors: this.posteriors,
      timing: this.timing.summary(),
      forward: this.replay.results(),
    };
  }
}

/** How the engine reaches the analyses: at once, or through another thread. */
export interface ExitRunner {
  readonly trace: TraceRing;
  readonly entries: EntryRing;
  request(r: ExitRequest): void;
  /** a forward-replay op (forward-replay.ts), placed after the records written so far */
  forward(kind: number, arg: number): void;
  /** targets whose forward tracking is done (so far: for progress reports) */
  forwardFinished(): number;
  /** every request served and every record replayed; the results in request order */
  finish(): ExitResults;
}

/** Records the forward replay is let fall behind the writer (at most the ring's capacity). */
export const REPLAY_CHUNK = 4096;

/**
 * The one-thread runner: each request is served when it is made; the forward replay catches up
 * with the trace every `REPLAY_CHUNK` records (before the ring overwrites them) and before each op.
 */
export class InlineExits implements ExitRunner {
  readonly analyses: ExitAnalyses;
  private readonly replay: ForwardReplay;

  constructor(
    readonly trace: TraceRing,
    readonly entries: EntryRing,
    cfg: ExitConfig,
  ) {
    this.analyses = new ExitAnalyses(trace, entries, cfg);
    this.replay = this.analyses.replay;
    const chunk = Math.min(REPLAY_CHUNK, trace.capacity);
    trace.limit = chunk;
    trace.onFull = (w) => {
      this.replay.advance(w);
      trace.limit = w + chunk;
    };
  }

  request(r: ExitRequest): void {
    this.analyses.serve(r);
  }

  forward(kind: number, arg: number): void {
    this.replay.apply(this.trace.written, kind, arg);
  }

  forwardFinished(): number {
    return this.replay.finished;
  }

  finish(): ExitResults {
    this.replay.advance(this.trace.written);
    return this.analyses.results();
  }
}
