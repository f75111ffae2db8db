/**
 * One simulation run: the state and event loop (engine.ts) with the analyses and attacks
 * attached, summarised into one result.
 *
 * Two models share the engine. The idealised Loopix model (`realRate: null`, the literature
 * checks): every payload tick carries a one-packet real message, gateways deliver on arrival,
 * no ACKs. The postmix model (`realRate` set): messages of a configurable size cut into
 * fragments by the proto/fragment rule, each fragment on L mixes to its recipient's gateway
 * (which holds it for its hop delay, delivers it, and sends the ACK through the fragment's
 * SURB: L mixes to the sender's home gateway, into its mailbox, out on the constant-rate
 * downlink), resent on timeout, with gateway loop cover (λ_G) and mix loops (λ_M).
 *
 * The adversary sees every link and the inside of the nodes it holds. Analyses:
 *  - forward (forward.ts): the Loopix per-packet entropy over packets leaving the last layer;
 *  - backward (backward.ts): each delivered target packet's sender posterior over all clients;
 *  - timing (timing.ts): the Erlang-likelihood ranking of clients;
 *  - attacks (attacks/): ACK withholding, the home gateway's mailbox watch, the statistical
 *    disclosure attack over the trace, and compromised mixes and gateways (message level).
 */
import type { SenderPosterior } from './backward.ts';
import { Simulation, type Progress } from './engine.ts';
import { threadCpuSeconds } from '../runtime/thread-cpu.ts';
import { LogHistogram, meanOf, quantileOf } from './histogram.ts';
import { combine, messagesUntilSure } from './attacks/evidence.ts';
import { watchMailbox, type MailboxWatchReport } from './attacks/mailbox-watch.ts';
import { SdaOverTrace, type SdaTraceReport } from './attacks/sda-trace.ts';
import { makeScenario, meanFragments, type Scenario } from './scenario.ts';
import { ErlangTable, type TimingSummary } from './timing.ts';

export { KIND_DROP, KIND_LOOP, KIND_MIXLOOP, KIND_REAL } from './packets.ts';
export type { Progress } from './engine.ts';

export interface RunOptions {
  /** called about every `progressEvery` events */
  onProgress?: (p: Progress) => void;
  progressEvery?: number;
  /** keep the per-target arrays (entropy, sender entropy) in the result */
  keepSamples?: boolean;
  /** record every real packet's end-to-end latency (tests only: unbounded memory) */
  keepLatencies?: boolean;
  /**
   * 2: the exit analyses (backward walks, timing attack) run on a second thread while the event
   * loop goes on; the results are identical to one thread's (default 1)
   */
  threads?: number;
  /** filled with figures about how the run went (not part of the result, which threads do not change) */
  perf?: RunPerf;
}

export interface RunPerf {
  threads: number;
  /** seconds the event loop waited for the analysis thread (ring full, or the last walks at the end) */
  analysis_wait_s: number;
  /** trace records a walk may read back, and the ring's size in records (twice that on two threads) */
  trace_window: number;
  trace_ring: number;
  /** CPU seconds of the event loop's thread during the run, and of the analysis thread (NaN: one thread, or not Linux) */
  loop_cpu_s: number;
  analysis_cpu_s: number;
}

export interface Summary {
  mean: number;
  median: number;
  p5: number;
  p95: number;
  n: number;
}

export interface LatencySummary {
  mean: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  n: number;
}

export interface AckWithholdingReport {
  /** the withholding gateway (index), or null when no gateway withholds */
  gateway: number | null;
  messages: number;
  /** mean sends per fragment the gateway saw */
  attempts_per_fragment: number;
  /** messages until the target's posterior reaches 0.95, from every attempt; null: not within the run */
  messages_to_sure: number | null;
  /** the same from first attempts only (what an honest gateway's ACKs leave to see) */
  messages_to_sure_first_attempts: number | null;
  final_true_sender_prob: number;
  final_true_sender_prob_first_attempts: number;
  curve: number[];
}

export interface CompromiseReport {
  mixes_compromised: number;
  gateways_compromised: number;
  /** followed messages delivered to a compromised gateway (it groups their fragments) */
  messages: number;
  message_entropy_mean: number;
  true_sender_prob_mean: number;
  /** fraction of those messages whose posterior names the sender with >= 0.95 */
  identified: number;
  /** the same messages, fragments alone (no ACK path) */
  fragments_only_entropy_mean: number;
  /** one packet's sender entropy, for comparison */
  packet_entropy_mean: number;
}

export interface RunResult {
  scenario: Scenario;
  model: 'loopix' | 'postmix';
  entropy: Summary & { lost_mass: number };
  sender_entropy: Summary & { degree_mean: number; max_possible: number; truncated: number };
  /** real packets (idealised) or fragments (postmix): submission to the gateway */
  latency: LatencySummary;
  overhead: {
    real: number;
    cover: number;
    loop: number;
    drop: number;
    /** decoys (postmix: the payload stream's cover, each answered through its SURB) */
    decoy: number;
    mix_loop: number;
    gateway_loop: number;
    ack: number;
    cover_per_real: number;
    ack_per_real: number;
    /** mailbox downlink frames (constant rate) per real packet */
    downlink_per_real: number;
  };
  load: {
    per_mix_pps: { mean: number; min: number; max: number };
    pool_mean: number;
    per_layer_pool_mean: number[];
    pool_size_hist: number[][];
  };
  messages?: {
    submitted: number;
    fragments_per_message: number;
    delivered: number;
    acked: number;
    bounced: number;
    sent: number;
    resent: number;
    lost_packets: number;
    /** submission to the last fragment at the gateway */
    latency_delivered: LatencySummary;
    /** submission to the last ACK at the client */
    latency_acked: LatencySummary;
    downlink: { frames_per_client_s: number; items: number; dummy_fraction: number };
  };
  attacks: {
    timing: TimingSummary;
    ack_withholding?: AckWithholdingReport;
    home_gateway?: MailboxWatchReport;
    sda?: SdaTraceReport;
    compromise?: CompromiseReport;
  };
  targets: { requested: number; tracked: number; finished: number; target_clients: number };
  packets: number;
  events: number;
  sim_s: number;
  wall_s: number;
  events_per_s: number;
  samples?: { entropy: number[]; sender_entropy: number[]; latencies?: number[] };
  latency_cdf: Array<{ x: number; p: number }>;
}

function summarize(xs: ArrayLike<number>): Summary {
  return { mean: meanOf(xs), median: quantileOf(xs, 0.5), p5: quantileOf(xs, 0.05), p95: quantileOf(xs, 0.95), n: xs.length };
}

function latencyOf(h: LogHistogram): LatencySummary {
  return { mean: h.mean(), p50: h.quantile(0.5), p95: h.quantile(0.95), p99: h.quantile(0.99), max: h.count > 0 ? h.max : NaN, n: h.count };
}

/** The evidence the message-level attacks collect for each followed message. */
interface Followed {
  attempts: SenderPosterior[][];
  replies: SenderPosterior[];
}

export function runSimulation(partial: Partial<Scenario>, opts: RunOptions = {}): RunResult {
  const sc = makeScenario(partial);
  const wallStart = performance.now();
  const followed: Followed[] = [];
  const mailboxItems: Array<{ t: number; ack: boolean }> = [];
  const postmix = sc.realRate !== null;
  const fol = (m: number): Followed => (followed[m] ??= { attempts: [], replies: [] });
  let sda: SdaOverTrace | null = null;
  const sim: Simulation = new Simulation(
    sc,
    postmix
      ? {
          fragmentExit: (m, frag, _attempt, post) => {
            const f = fol(m);
            (f.attempts[frag] ??= []).push(post);
          },
          replyPosterior: (m, _frag, post) => fol(m).replies.push(post),
          targetMailboxItem: (t, ack) => mailboxItems.push({ t, ack }),
          targetSend: (t) => sda?.targetSend(t),
          gatewayArrival: (g, t) => sda?.arrival(g, t),
        }
      : {},
    opts.keepLatencies ?? false,
    opts.threads ?? 1,
  );
  if (postmix) {
    const contacts = Array.from(sim.contacts.subarray(0, sc.contacts));
    const step = Math.max(1, (sc.duration - sc.warmup) / 200);
    sda = new SdaOverTrace(
      sc.gateways,
      contacts,
      sim.home[0]!,
      new ErlangTable(sc.layers, sim.mu),
      sc.layers * (sc.linkLatency + sc.processingTime),
      sc.warmup,
      sc.duration,
      step,
    );
  }
  const loopCpu0 = threadCpuSeconds();
  sim.run(opts.onProgress, opts.progressEvery ?? 1_000_000);
  if (opts.perf) {
    opts.perf.loop_cpu_s = threadCpuSeconds() - loopCpu0;
    opts.perf.analysis_cpu_s = sim.analysisCpuS();
    opts.perf.threads = opts.threads ?? 1;
    opts.perf.analysis_wait_s = sim.analysisWaitMs() / 1000;
    opts.perf.trace_window = sim.traceWindow;
    opts.perf.trace_ring = sim.trace.capacity;
  }

  const N = sc.clients;
  const L = sc.layers;
  const W = sc.layerSize;
  const T = sc.duration;
  const span = T - sc.warmup;
  const perMix = Array.from(sim.mixOut, (x) => x / span);
  const layerPool: number[] = [];
  for (let l = 0; l < L; l++) {
    let s = 0;
    for (let w = 0; w < W; w++) s += sim.mixPoolArea[l * W + w]!;
    layerPool.push(s / W / span);
  }
  const poolHistOut = sim.poolHist.map((h) => {
    let last = 0;
    for (let i = 0; i < h.length; i++) if (h[i]! > 0) last = i;
    const tot = h.reduce((a, b) => a + b, 0);
    return Array.from(h.subarray(0, last + 1), (x) => (tot > 0 ? x / tot : 0));
  });
  const k = sim.counts;
  const real = k.real + k.fragment;
  const cover = k.drop + k.decoy + k.loop + k.mixLoop + k.gwLoop;
  const proto = sim.proto;
  const latencyHist = proto ? proto.fragmentLatency : sim.latency;
  const downlinkFrames = postmix ? (N * span) / sim.mbPeriod : 0;
  const res: RunResult = {
    scenario: sc,
    model: postmix ? 'postmix' : 'loopix',
    entropy: { ...summarize(sim.entropyOut), lost_mass: sim.finished > 0 ? sim.lostMass / sim.finished : 0 },
    sender_entropy: {
      ...summarize(sim.senderOut),
      degree_mean: meanOf(sim.degreeOut),
      max_possible: Math.log2(N),
      truncated: sim.truncated,
    },
    latency: latencyOf(latencyHist),
    overhead: {
      real,
      cover,
      loop: k.loop,
      drop: k.drop,
      decoy: k.decoy,
      mix_loop: k.mixLoop,
      gateway_loop: k.gwLoop,
      ack: k.ack,
      cover_per_real: real > 0 ? cover / real : cover > 0 ? Infinity : 0,
      ack_per_real: real > 0 ? k.ack / real : 0,
      downlink_per_real: real > 0 ? downlinkFrames / real : 0,
    },
    load: {
      per_mix_pps: { mean: meanOf(perMix), min: Math.min(...perMix), max: Math.max(...perMix) },
      pool_mean: meanOf(layerPool),
      per_layer_pool_mean: layerPool,
      pool_size_hist: poolHistOut,
    },
    attacks: { timing: sim.timing! },
    targets: { requested: sc.targets, tracked: sim.tracked, finished: sim.finished, target_clients: sim.targetClients },
    packets: sim.packets,
    events: sim.events,
    sim_s: T,
    wall_s: 0,
    events_per_s: 0,
    latency_cdf: latencyHist.cdf(100),
  };
  if (proto) {
    const st = proto.stats;
    res.messages = {
      submitted: st.messages,
      fragments_per_message: st.messages > 0 ? st.fragments / st.messages : meanFragments(sc),
      delivered: st.delivered,
      acked: st.acked,
      bounced: st.bounced,
      sent: st.sent,
      resent: st.resent,
      lost_packets: k.lost,
      latency_delivered: latencyOf(proto.deliveredLatency),
      latency_acked: latencyOf(proto.ackedLatency),
      downlink: {
        frames_per_client_s: 1 / sim.mbPeriod,
        items: k.mailboxItems,
        dummy_fraction: downlinkFrames > 0 ? Math.max(0, 1 - k.mailboxItems / downlinkFrames) : 0,
      },
    };
    res.attacks.home_gateway = watchMailbox(mailboxItems, sc.warmup, T, mailboxWindow(sc), sc.payloadCover === 'drop' ? sc.loopRate : sc.loopRate + sc.rate);
    res.attacks.sda = sda!.report();
    res.attacks.ack_withholding = ackWithholding(sim, followed);
    res.attacks.compromise = compromise(sim, followed);
  }
  const wall = (performance.now() - wallStart) / 1000;
  res.wall_s = wall;
  res.events_per_s = sim.events / Math.max(wall, 1e-9);
  if (opts.keepSamples) {
    res.samples = { entropy: sim.entropyOut, sender_entropy: sim.senderOut };
    if (sim.latSamples) res.samples.latencies = sim.latSamples;
  }
  return res;
}

/** The home gateway's window: long enough to hold a few messages' ACKs, at least 10 s. */
function mailboxWindow(sc: Scenario): number {
  return Math.max(10, 1 / Math.max(1e-9, sc.realRate ?? 1) / 2);
}

/** The recipient gateway (node) of each followed message. */
function followedGateways(sim: Simulation): number[] {
  const proto = sim.proto!;
  const out: number[] = [];
  for (let id = 0; id < proto.messageCount(); id++) if (proto.msTarget[id]! >= 0) out[proto.msTarget[id]!] = proto.msGateway[id]!;
  return out;
}

function ackWithholding(sim: Simulation, followed: Followed[]): AckWithholdingReport {
  const g = sim.withholdGateway;
  // the messages the suspicious gateway receives: those to the target's first contact
  const gw = sim.net.gateway(sim.contacts[0]!);
  const gateways = followedGateways(sim);
  const all: SenderPosterior[][] = [];
  const firsts: SenderPosterior[][] = [];
  let frags = 0;
  let sends = 0;
  for (let m = 0; m < followed.length; m++) {
    const f = followed[m];
    if (!f || gateways[m] !== gw) continue;
    const a: SenderPosterior[] = [];
    const o: SenderPosterior[] = [];
    for (const attempts of f.attempts) {
      if (!attempts || attempts.length === 0) continue;
      frags++;
      sends += attempts.length;
      a.push(...attempts);
      o.push(attempts[0]!);
    }
    if (a.length === 0) continue;
    all.push(a);
    firsts.push(o);
  }
  const every = messagesUntilSure(all, 0);
  const first = messagesUntilSure(firsts, 0);
  return {
    gateway: g >= 0 ? g - sim.net.mixes : null,
    messages: all.length,
    attempts_per_fragment: frags > 0 ? sends / frags : NaN,
    messages_to_sure: every.messages,
    messages_to_sure_first_attempts: first.messages,
    final_true_sender_prob: every.curve.at(-1) ?? NaN,
    final_true_sender_prob_first_attempts: first.curve.at(-1) ?? NaN,
    curve: every.curve,
  };
}

function compromise(sim: Simulation, followed: Followed[]): CompromiseReport {
  const comp = sim.net.compromised;
  let mixes = 0;
  for (let i = 0; i < sim.net.mixes; i++) mixes += comp[i]!;
  let gws = 0;
  for (let i = sim.net.mixes; i < sim.net.nodes; i++) gws += comp[i]!;
  const H: number[] = [];
  const P: number[] = [];
  const Hf: number[] = [];
  const Hp: number[] = [];
  let identified = 0;
  const gateways = followedGateways(sim);
  for (let m = 0; m < followed.length; m++) {
    const f = followed[m];
    if (!f) continue;
    const gw = gateways[m] ?? -1;
    const firsts = f.attempts.filter((a) => a && a.length > 0).map((a) => a[0]!);
    for (const p of firsts) Hp.push(p.entropy);
    if (gw < 0 || comp[gw] !== 1 || firsts.length === 0) continue;
    const v = combine([...firsts, ...f.replies], 0);
    H.push(v.entropy);
    P.push(v.pTrue);
    if (v.pTrue >= 0.95) identified++;
    Hf.push(combine(firsts, 0).entropy);
  }
  return {
    mixes_compromised: mixes,
    gateways_compromised: gws,
    messages: H.length,
    message_entropy_mean: meanOf(H),
    true_sender_prob_mean: meanOf(P),
    identified: H.length > 0 ? identified / H.length : NaN,
    fragments_only_entropy_mean: meanOf(Hf),
    packet_entropy_mean: meanOf(Hp),
  };
}
