/**
 * The simulation state and its event loop: clients' Poisson streams, packets moving through the
 * pools of mixes and gateways, and the protocol around them (fragments, ACKs through SURBs to
 * the home gateway's mailbox, the mailbox downlink, retransmission, node loop cover). Every
 * link event is written to the adversary's trace and offered to the analyses (forward,
 * backward, timing, and the attacks), which live in their own modules.
 *
 * Event codes: kind in the low 3 bits, an index (client, node, packet, fragment) above.
 */
import { mailboxRate } from '../proto/mailbox/index.ts';
import { payloadTick, sampleExponential } from '../proto/mixing/params.ts';
import type { SenderPosterior } from './backward.ts';
import { ackTimeoutSeconds, ClientProtocol } from './clients.ts';
import { InlineExits, REQ_FULL, REQ_TARGET, type ExitConfig, type ExitRunner } from './exit-analyses.ts';
import { ForwardTracker, type ExitSink } from './forward.ts';
import { OP_DROP, OP_LOST_NEW, OP_START } from './forward-replay.ts';
import { CalendarQueue } from './calendar.ts';
import { LogHistogram } from './histogram.ts';
import { Network } from './network.ts';
import {
  F_DELAYS,
  F_REC,
  F_T0,
  I_FRAG,
  I_HOP,
  I_KIND,
  I_MASS,
  I_NHOPS,
  I_NODES,
  I_SRC,
  I_TARGET,
  KIND_DECOY,
  KIND_DROP,
  KIND_FRAGMENT,
  KIND_GWLOOP,
  KIND_LOOP,
  KIND_MIXLOOP,
  KIND_REAL,
  PacketTable,
} from './packets.ts';
import { Rng } from './rng.ts';
import { fragmentCapacityOf, fragmentCountFor, mixingParamsOf, type Scenario } from './scenario.ts';
import { ErlangTable, type TimingSummary } from './timing.ts';
import { AUX_EXIT, EntryRing, SRC_GATEWAY, SRC_MIX, SRC_SELF, TR_ARRIVE, TR_DEPART, TraceRing } from './trace.ts';
import { ThreadedExits } from './analysis-thread.ts';

const EV_PAYLOAD = 0;
const EV_LOOP = 1;
const EV_DROP = 2;
const EV_MSG = 3;
const EV_NODELOOP = 4;
const EV_ARRIVE = 5;
const EV_DEPART = 6;
const EV_ACK = 7;

const POOL_HIST = 4096;

export interface Progress {
  simTime: number;
  duration: number;
  events: number;
  targetsDone: number;
}

/** What the analyses and attacks are told as the run goes (all optional). */
export interface Observers {
  /** a packet of a followed message leaves the mix network; its sender posterior */
  fragmentExit?(msg: number, frag: number, attempt: number, post: SenderPosterior, t: number): void;
  /** an item becomes ready in the target client's mailbox (ACK or loop) */
  targetMailboxItem?(t: number, isAck: boolean): void;
  /** the target client sends a packet (any kind) at `t` */
  targetSend?(t: number, kind: number): void;
  /** a packet arrives at gateway index `g` at `t` (the GPA sees it) */
  gatewayArrival?(g: number, t: number): void;
  /** a reply-path target (the ACK of fragment `frag` of followed message `msg`) has left the mixes */
  replyPosterior?(msg: number, frag: number, post: SenderPosterior): void;
}

export class Simulation implements ExitSink {
  readonly sc: Scenario;
  readonly net: Network;
  readonly pk: PacketTable;
  readonly heap: CalendarQueue;
  readonly trace: TraceRing;
  readonly entries: EntryRing;
  /** the reply-path targets' forward tracking (the forward targets' is replayed from the trace by `exits`) */
  readonly fwd: ForwardTracker;
  /** the exit analyses (backward walks, timing attack), on this thread or another */
  readonly exits: ExitRunner;
  /** the timing attack's summary, once the run is over */
  timing: TimingSummary | null = null;
  readonly proto: ClientProtocol | null;
  private readonly rng: Rng;
  private readonly uni: () => number;
  readonly mu: number;
  readonly postmix: boolean;
  private readonly hopGap: number;
  private readonly L: number;
  private readonly NM: number;
  private readonly N: number;
  private readonly TW: number;
  private readonly comp: Uint8Array;
  /** link latency + processing time: 0 lets a packet's next arrival happen inside its departure */
  private readonly gapZero: boolean;
  private readonly linkZero: boolean;
  private readonly lossy: boolean;
  private readonly threshold: boolean;
  /** trace records a walk reads back, and entries a timing scan reads back */
  readonly traceWindow: number;
  private readonly entryWindow: number;
  /** followed fragments waiting for their posterior: (message, fragment, attempt, t) per REQ_FULL request */
  private readonly fullArgs: number[] = [];
  readonly poolN: Int32Array;
  private readonly waitList: Int32Array[];
  private readonly waitLen: Int32Array;
  private readonly mixLastChange: Float64Array;
  readonly mixPoolArea: Float64Array;
  readonly mixOut: Float64Array;
  /** per layer: time spent at each pool size (views of one flat array; `histBase[m]` is mix m's layer's offset) */
  readonly poolHist: Float64Array[];
  private readonly poolHistFlat: Float64Array;
  private readonly histBase: Int32Array;
  readonly home: Int32Array;
  readonly homeCount: Int32Array;
  readonly contacts: Int32Array;
  private readonly mbNext: Float64Array;
  private readonly mbPhase: Float64Array;
  readonly mbPeriod: number;

  // forward (Loopix) targets: 0 .. K−1; reply-path targets K .. K + R − 1
  readonly K: number;
  readonly targetClients: number;
  private readonly targetWindowEnd: number;
  tracked = 0;
  /** forward targets finished, their entropies and lost mass: from the forward replay, once the run is over */
  finished = 0;
  entropyOut: number[] = [];
  readonly senderOut: number[] = [];
  readonly degreeOut: number[] = [];
  truncated = 0;
  lostMass = 0;
  private replyMsg: number[] = [];
  private replyFrag: number[] = [];
  private replyClientMass: Array<Map<number, number>> = [];
  private replyGwMass: Float64Array[] = [];
  replyTracked = 0;

  // followed messages (the target client's, for the message-level attacks)
  readonly followMax: number;
  followed = 0;
  readonly withholdGateway: number;

  // metrics
  readonly latency = new LogHistogram();
  latSamples: number[] | undefined;
  counts = { real: 0, drop: 0, decoy: 0, loop: 0, mixLoop: 0, gwLoop: 0, fragment: 0, ack: 0, lost: 0, loopsReturned: 0, mailboxItems: 0 };
  packets = 0;
  events = 0;

  constructor(
    sc: Scenario,
    private readonly obs: Observers = {},
    keepLatencies = false,
    /** 2: the exit analyses run on a second thread (the results are the same) */
    threads = 1,
  ) {
    this.sc = sc;
    const mp = mixingParamsOf(sc);
    this.mu = mp.mu;
    this.rng = new Rng(sc.seed);
    this.uni = this.rng.uniform();
    this.postmix = sc.realRate !== null;
    this.net = new Network(sc, this.rng);
    this.comp = this.net.compromised;
    const L = (this.L = sc.layers);
    this.NM = this.net.mixes;
    const N = (this.N = sc.clients);
    this.TW = sc.warmup;
    this.hopGap = sc.linkLatency + sc.processingTime;
    this.gapZero = this.hopGap === 0;
    this.linkZero = sc.linkLatency === 0;
    this.lossy = sc.loss > 0;
    this.threshold = sc.mix === 'threshold';
    // route slots: a mix loop may wrap round the layers and a fragment's route carries its ACK's
    // (2L + 2); otherwise a gateway loop's L + 1 hops and its destination are the longest (3
    // layers: 128-byte records, not 192, which fetch as one pair of cache lines)
    this.pk = new PacketTable(this.postmix || sc.mixLoopRate > 0 ? 2 * L + 2 : L + 2);
    const NN = this.net.nodes;
    this.poolN = new Int32Array(NN);
    const threshold = sc.mix === 'threshold';
    this.waitList = threshold ? Array.from({ length: NN }, () => new Int32Array(sc.threshold)) : [];
    this.waitLen = new Int32Array(threshold ? NN : 0);
    this.mixLastChange = new Float64Array(this.NM).fill(sc.warmup);
    this.mixPoolArea = new Float64Array(this.NM);
    this.mixOut = new Float64Array(this.NM);
    this.poolHistFlat = new Float64Array(L * POOL_HIST);
    this.poolHist = Array.from({ length: L }, (_, l) => this.poolHistFlat.subarray(l * POOL_HIST, (l + 1) * POOL_HIST));
    this.histBase = Int32Array.from({ length: this.NM }, (_, m) => this.net.layerOf(m) * POOL_HIST);
    this.latSamples = keepLatencies ? [] : undefined;

    // clients: home gateway round-robin, contacts a seeded choice of distinct gateways
    const G = sc.gateways;
    this.home = new Int32Array(N);
    this.homeCount = new Int32Array(G);
    for (let c = 0; c < N; c++) {
      this.home[c] = c % G;
      this.homeCount[c % G]!++;
    }
    const m = sc.contacts;
    this.contacts = new Int32Array(N * m);
    const krng = new Rng(sc.seed ^ 0xc0ac);
    for (let c = 0; c < N; c++) {
      // people write to other providers; to their own only when there are too few others
      const order = Array.from({ length: G }, (_, i) => i).filter((g) => G <= m || g !== this.home[c]);
      for (let i = 0; i < m; i++) {
        const j = i + krng.int(order.length - i);
        const t = order[i]!;
        order[i] = order[j]!;
        order[j] = t;
        this.contacts[c * m + i] = order[i]!;
      }
    }
    this.withholdGateway = sc.withholdAcks ? this.net.gateway(this.contacts[0]!) : -1;
    if (this.withholdGateway >= 0) this.net.compromised[this.withholdGateway] = 1;

    this.mbPeriod = 1 / mailboxRate(mp);
    this.mbNext = new Float64Array(this.postmix ? N : 0);
    this.mbPhase = Float64Array.from({ length: G }, () => this.rng.next() * this.mbPeriod);
    this.proto = this.postmix ? new ClientProtocol(N, ackTimeoutSeconds(L, this.mu) * 1000, this.uni, sc.maxAttempts, sc.warmup, sc.acks) : null;
    this.followMax = this.postmix ? sc.messageTargets : 0;

    // forward targets: packets of one client (more only if one cannot supply K)
    const T = sc.duration;
    const perClientRate = sc.rate + sc.loopRate + sc.dropRate;
    const routeHops = L;
    const tail = Math.min((T - sc.warmup) / 2, (routeHops * 10) / this.mu + routeHops * this.hopGap + 1);
    const window = Math.max(1e-9, T - sc.warmup - tail);
    this.K = sc.targets;
    this.targetClients = Math.min(N, Math.max(1, Math.ceil(this.K / Math.max(1e-9, perClientRate * window * 0.9))));
    this.targetWindowEnd = T - tail;
    const R = this.postmix ? this.followMax * 64 : 0;

    // trace: enough records for a walk back over the longest plausible route delay
    const table = new ErlangTable(L, this.mu);
    let TC = sc.traceCapacity;
    if (TC === 0) {
      const hopsPerPacket = this.postmix ? 2 * L + 3 : L;
      const pps = N * (sc.rate + sc.loopRate + sc.dropRate) + this.NM * sc.mixLoopRate + G * sc.gatewayLoopRate;
      const perSecond = 2 * hopsPerPacket * pps;
      TC = Math.min(1 << 27, Math.max(1 << 20, Math.ceil(perSecond * (1.5 * table.horizon + 2 * L * this.hopGap + 0.5))));
    }
    const EC = Math.max(1024, Math.ceil(N * (sc.rate + sc.loopRate + sc.dropRate) * (1.5 * table.horizon + 2 * L * this.hopGap + 0.5)));
    this.traceWindow = TC;
    this.entryWindow = EC;
    const cfg: ExitConfig = {
      compromised: this.net.compromised,
      clients: N,
      layers: L,
      mu: this.mu,
      timingOffset: (L - 1) * this.hopGap,
      traceWindow: TC,
      entryWindow: EC,
      mixes: this.NM,
      nodes: NN,
      targets: this.K,
    };
    this.exits = threads >= 2 ? new ThreadedExits(cfg) : new InlineExits(new TraceRing(TC), new EntryRing(EC), cfg);
    this.trace = this.exits.trace;
    this.entries = this.exits.entries;
    this.fwd = new ForwardTracker(this.pk, this.net.compromised, NN, this.K + R, this);
    // the queue holds each packet's next departure (arrivals with no gap happen inside the
    // departure before them) and the streams' next events
    const hopsPerPacket = this.postmix ? 2 * L + 3 : L;
    const pps = N * (sc.rate + sc.loopRate + sc.dropRate) + this.NM * sc.mixLoopRate + G * sc.gatewayLoopRate;
    this.heap = CalendarQueue.sized(pps * (hopsPerPacket + 1), 10 / this.mu + 2 * L * this.hopGap);
    this.heap.onBucket = (codes, n) => this.warm(codes, n);
  }

  /** read by no one: keeps the loads in `warm` from being optimised away */
  private warmed = 0;

  /**
   * A bucket of events moves to the front of the queue: read each packet event's first integer
   * and first double (its record's two hot cache lines), so the bucket's records are fetched
   * together, a few dozen independent loads in flight, rather than one cache miss after another
   * as the events are popped (the records are cold: a packet waits a hop's delay between events).
   */
  private warm(codes: Int32Array, n: number): void {
    const pk = this.pk;
    const i32 = pk.i32;
    const f64 = pk.f64;
    const IS = pk.IS;
    const FS = pk.FS;
    const FO = pk.FO;
    let s = 0;
    for (let i = 0; i < n; i++) {
      const c = codes[i]!;
      const k = c & 7;
      if (k === EV_DEPART || k === EV_ARRIVE) {
        const p = c >>> 3;
        s += i32[p * IS]! + f64[p * FS + FO]!;
      }
    }
    this.warmed += s;
  }

  private expo(rate: number): number {
    return sampleExponential(rate, this.uni);
  }

  // ---- ExitSink: forward mass leaving the mix network ----

  exit(tg: number, m: number, p: number, _t: number): void {
    // reply path (the only targets this tracker holds): where does this packet land, and whose mailbox is it?
    const r = tg - this.K;
    const pk = this.pk;
    const i32 = pk.i32;
    const o = p * pk.IS;
    const h = i32[o + I_HOP]!;
    const nHops = i32[o + I_NHOPS]!;
    const next = i32[o + I_NODES + (h + 1 < nHops ? h + 1 : nHops)]!;
    if (next < this.NM) return; // lost with the packet
    const g = next - this.NM;
    if (this.net.compromised[next] === 1) {
      const k = i32[o + I_KIND]!;
      const owner = ((k === KIND_FRAGMENT || k === KIND_DECOY) && h > this.L) || k === KIND_LOOP ? i32[o + I_SRC]! : -1;
      if (owner >= 0) {
        const mm = this.replyClientMass[r]!;
        mm.set(owner, (mm.get(owner) ?? 0) + m);
      }
      // not a mailbox item: the gateway knows it is not the ACK
    } else this.replyGwMass[r]![g]! += m;
  }

  finish(tg: number): void {
    const r = tg - this.K;
    const cm = this.replyClientMass[r]!;
    const gm = this.replyGwMass[r]!;
    const score = new Map<number, number>(cm);
    for (let g = 0; g < gm.length; g++) {
      if (gm[g] === 0) continue;
      const share = gm[g]! / this.homeCount[g]!;
      for (let c = g; c < this.N; c += this.sc.gateways) score.set(c, (score.get(c) ?? 0) + share);
    }
    let tot = 0;
    for (const v of score.values()) tot += v;
    const clients = new Int32Array(score.size);
    const probs = new Float64Array(score.size);
    let i = 0;
    let h = 0;
    for (const [c, v] of score) {
      clients[i] = c;
      const q = tot > 0 ? v / tot : 0;
      probs[i++] = q;
      if (q > 0) h -= q * Math.log2(q);
    }
    this.obs.replyPosterior?.(this.replyMsg[r]!, this.replyFrag[r]!, { clients, probs, entropy: h, truncated: false });
    this.replyClientMass[r] = new Map();
  }

  // ---- sending ----

  private newPacket(kind: number, src: number, t0: number): number {
    const pk = this.pk;
    const p = pk.alloc();
    const i32 = pk.i32;
    const o = p * pk.IS;
    i32[o + I_HOP] = 0;
    i32[o + I_KIND] = kind;
    i32[o + I_SRC] = src;
    i32[o + I_MASS] = -1;
    i32[o + I_TARGET] = -1;
    i32[o + I_FRAG] = -1;
    const d = p * pk.FS + pk.FO;
    pk.f64[d + F_T0] = t0;
    pk.f64[d + F_REC] = -1;
    this.packets++;
    return p;
  }

  private delays(p: number, from: number, n: number): void {
    const pk = this.pk;
    const f64 = pk.f64;
    const base = p * pk.FS + pk.FO + F_DELAYS;
    for (let h = from; h < from + n; h++) f64[base + h] = this.expo(this.mu);
  }

  /** A client packet of `kind` (fragment `frag` for KIND_FRAGMENT) leaves client `c` at `t`. */
  private sendClientPacket(c: number, kind: number, t: number, t0: number, frag = -1): void {
    const pk = this.pk;
    const L = this.L;
    const p = this.newPacket(kind, c, t0);
    const i32 = pk.i32;
    const o = p * pk.IS;
    const base = o + I_NODES;
    this.net.mixRoute(i32, base, 0, L);
    this.delays(p, 0, L);
    if (kind === KIND_FRAGMENT || kind === KIND_DECOY) {
      const proto = this.proto!;
      i32[o + I_FRAG] = frag;
      // a decoy goes to a random gateway, which answers it as it answers a fragment
      const gw = kind === KIND_DECOY ? this.net.randomGateway() : proto.msGateway[proto.frMsg[frag]!]!;
      if (this.sc.acks) {
        i32[base + L] = gw; // the gateway's delay is drawn when the fragment arrives
        this.net.mixRoute(i32, base + L + 1, 0, L);
        this.delays(p, L + 1, L);
        i32[o + I_NHOPS] = 2 * L + 1;
        i32[base + 2 * L + 1] = this.net.gateway(this.home[c]!);
      } else {
        i32[o + I_NHOPS] = L;
        i32[base + L] = gw;
      }
      if (t > this.TW) this.counts[kind === KIND_DECOY ? 'decoy' : 'fragment']++;
    } else {
      i32[o + I_NHOPS] = L;
      i32[base + L] = kind === KIND_LOOP ? this.net.gateway(this.home[c]!) : this.net.randomGateway();
      if (t > this.TW) {
        if (kind === KIND_REAL) this.counts.real++;
        else if (kind === KIND_DROP) this.counts.drop++;
        else this.counts.loop++;
      }
    }
    if (c < this.targetClients && this.tracked < this.K && t > this.TW && t < this.targetWindowEnd) {
      // its mass starts with its first trace record (OP_START in enterPool)
      i32[o + I_TARGET] = this.tracked++;
    }
    if (c === 0 && t > this.TW) this.obs.targetSend?.(t, kind);
    this.toNextHop(p, t);
  }

  /** Packet `p` leaves for its next node at `t`: it arrives a hop's gap later (inside this event when there is none). */
  private toNextHop(p: number, t: number): void {
    if (this.gapZero) {
      this.events++;
      this.arrive(p, t);
    } else this.heap.push(t + this.hopGap, EV_ARRIVE | (p << 3));
  }

  /** Packet `p` arrives at its current hop: into the pool, or at the node it ends at. */
  private arrive(p: number, t: number): void {
    const i32 = this.pk.i32;
    const o = p * this.pk.IS;
    const h = i32[o + I_HOP]!;
    if (h === i32[o + I_NHOPS]) return this.atDestination(p, t);
    let src: number;
    if (h === 0) src = i32[o + I_SRC]! >= 0 ? i32[o + I_SRC]! : SRC_SELF;
    else src = i32[o + I_NODES + h - 1]! >= this.NM ? SRC_GATEWAY : SRC_MIX;
    this.enterPool(p, t, src);
  }

  /** A mix's or gateway's own loop (it enters the node's own pool unseen); returns the packet. */
  private sendNodeLoop(node: number, t: number): number {
    const pk = this.pk;
    const L = this.L;
    const NM = this.NM;
    if (node < NM) {
      const p = this.newPacket(KIND_MIXLOOP, -1 - node, t);
      const i32 = pk.i32;
      const base = p * pk.IS + I_NODES;
      const free = this.sc.topology === 'free-route';
      const layer = this.net.layerOf(node);
      const after = free ? L - 1 : L - 1 - layer;
      i32[base] = node;
      this.net.mixRoute(i32, base + 1, layer + 1, after, node % this.net.W);
      i32[base + 1 + after] = this.net.randomGateway();
      const wrap = free ? 0 : layer;
      this.net.mixRoute(i32, base + 2 + after, 0, wrap, node % this.net.W);
      const nHops = 2 + after + wrap;
      i32[p * pk.IS + I_NHOPS] = nHops;
      i32[base + nHops] = node;
      this.delays(p, 0, nHops);
      // the idealised model's gateways pass packets on at once
      if (!this.postmix) pk.f64[p * pk.FS + pk.FO + F_DELAYS + 1 + after] = 0;
      if (t > this.TW) this.counts.mixLoop++;
      return p;
    }
    {
      const p = this.newPacket(KIND_GWLOOP, -1 - node, t);
      const i32 = pk.i32;
      const base = p * pk.IS + I_NODES;
      i32[base] = node;
      this.net.mixRoute(i32, base + 1, 0, L);
      i32[p * pk.IS + I_NHOPS] = L + 1;
      i32[base + L + 1] = node;
      this.delays(p, 0, L + 1);
      if (t > this.TW) this.counts.gwLoop++;
      return p;
    }
  }

  // ---- pools ----

  private notePool(m: number, t: number): void {
    if (t <= this.TW || m >= this.NM) return;
    const n = this.poolN[m]!;
    const dt = t - this.mixLastChange[m]!;
    this.mixPoolArea[m]! += n * dt;
    this.poolHistFlat[this.histBase[m]! + (n < POOL_HIST ? n : POOL_HIST - 1)]! += dt;
    this.mixLastChange[m] = t;
  }

  /** Packet `p` enters the pool of its current hop at `t`; `src` is the trace's source code. */
  private enterPool(p: number, t: number, src: number): void {
    const pk = this.pk;
    const i32 = pk.i32;
    const f64 = pk.f64;
    const o = p * pk.IS;
    const d = p * pk.FS + pk.FO;
    const h = i32[o + I_HOP]!;
    const node = i32[o + I_NODES + h]!;
    if (this.lossy && src !== SRC_SELF && this.rng.next() < this.sc.loss) return this.lose(p, t, h);
    if (node >= this.NM && i32[o + I_KIND] === KIND_DECOY) {
      // a decoy's gateway answers it as a fragment's gateway does: the same delays
      f64[d + F_DELAYS + h] = (this.postmix ? this.expo(this.mu) : 0) + (this.sc.ackDelay ? this.expo(this.mu) : 0);
    } else if (node >= this.NM && i32[o + I_KIND] === KIND_FRAGMENT) {
      // the recipient's gateway: the fragment is delivered after the hop's delay, and the ACK
      // leaves after any ACK delay on top
      const dDeliver = this.postmix ? this.expo(this.mu) : 0;
      const dAck = this.sc.ackDelay ? this.expo(this.mu) : 0;
      this.proto!.delivered(i32[o + I_FRAG]!, t + dDeliver);
      f64[d + F_DELAYS + h] = dDeliver + dAck;
      if (node === this.withholdGateway && this.proto!.msTarget[this.proto!.frMsg[i32[o + I_FRAG]!]!]! >= 0) {
        // attack 1: the ACK of the target's message is never sent
        this.trace.push(node, TR_ARRIVE, src, f64[d + F_REC]!);
        this.obs.gatewayArrival?.(node - this.NM, t);
        this.fwd.drop(p);
        pk.free(p);
        return;
      }
    }
    this.notePool(node, t);
    this.poolN[node]!++;
    f64[d + F_REC] = this.trace.push(node, TR_ARRIVE, src, src >= 0 || src === SRC_SELF ? -1 : f64[d + F_REC]!);
    if (src >= 0) {
      this.entries.push(t, src);
      if (h === 0 && i32[o + I_TARGET]! >= 0) this.exits.forward(OP_START, i32[o + I_TARGET]!);
    }
    if (node >= this.NM) this.obs.gatewayArrival?.(node - this.NM, t);
    if (i32[o + I_MASS]! >= 0) this.fwd.arrive(p, node);
    if (!this.threshold || node >= this.NM) {
      this.heap.push(t + f64[d + F_DELAYS + h]!, EV_DEPART | (p << 3));
      return;
    }
    // threshold (pool) mix: when the pool reaches the threshold, all but poolKeep packets,
    // chosen uniformly, leave now. One at a time from n, n-1, ... packets, each uniform, is the
    // same as a uniform batch, so the departure rule of the exponential mix tracks it exactly.
    const wl = this.waitList[node]!;
    let len = this.waitLen[node]!;
    wl[len++] = p;
    if (len >= this.sc.threshold) {
      while (len > this.sc.poolKeep) {
        const j = this.rng.int(len);
        const q = wl[j]!;
        wl[j] = wl[--len]!;
        this.heap.push(t, EV_DEPART | (q << 3));
      }
    }
    this.waitLen[node] = len;
  }

  private lose(p: number, _t: number, h: number): void {
    const pk = this.pk;
    const o = p * pk.IS;
    if (pk.i32[o + I_FRAG]! >= 0 || pk.i32[o + I_KIND] !== KIND_MIXLOOP) this.counts.lost++;
    if (pk.i32[o + I_MASS]! >= 0) this.fwd.drop(p);
    // any forward mass it carries is lost with it (a target's own mass if this was its first hop)
    const rec = pk.f64[p * pk.FS + pk.FO + F_REC]!;
    if (rec >= 0) this.exits.forward(OP_DROP, rec);
    else if (h === 0 && pk.i32[o + I_TARGET]! >= 0) this.exits.forward(OP_LOST_NEW, pk.i32[o + I_TARGET]!);
    pk.free(p);
  }

  private depart(p: number, t: number): void {
    const pk = this.pk;
    const i32 = pk.i32;
    const o = p * pk.IS;
    const d = p * pk.FS + pk.FO;
    const h = i32[o + I_HOP]!;
    const nHops = i32[o + I_NHOPS]!;
    const node = i32[o + I_NODES + h]!;
    const next = i32[o + I_NODES + (h + 1 < nHops ? h + 1 : nHops)]!;
    const n = this.poolN[node]!;
    const NM = this.NM;
    const isMix = node < NM;
    const isExit = isMix && next >= NM;
    pk.f64[d + F_REC] = this.trace.push(node, TR_DEPART, isExit ? n | AUX_EXIT : n, pk.f64[d + F_REC]!);
    if (isMix) {
      if (t > this.TW) this.mixOut[node]!++;
      if (this.comp[node] === 0 ? this.fwd.holds(node) : isExit && i32[o + I_MASS]! >= 0) this.fwd.depart(p, node, n, isExit, t);
    } else if (i32[o + I_KIND] === KIND_FRAGMENT) {
      if (t > this.TW) this.counts.ack++;
      if (this.net.compromised[node] === 1) this.followReply(p);
    }
    this.notePool(node, t);
    this.poolN[node]!--;
    if (isExit && i32[o + I_TARGET]! >= 0) this.analyseExit(p, t, true);
    else if (isExit && i32[o + I_FRAG]! >= 0 && h < this.L) this.analyseExit(p, t, false);
    if (h + 1 < nHops) {
      i32[o + I_HOP] = h + 1;
      this.toNextHop(p, t);
      return;
    }
    // the last pooled hop: on to the destination (postmix), or the end (idealised)
    if (this.postmix) {
      i32[o + I_HOP] = nHops;
      if (this.linkZero) {
        this.events++;
        this.atDestination(p, t);
      } else this.heap.push(t + this.sc.linkLatency, EV_ARRIVE | (p << 3));
      return;
    }
    if (i32[o + I_KIND] === KIND_REAL && t > this.TW) {
      const lat = t + this.sc.linkLatency - pk.f64[d + F_T0]!;
      this.latency.add(lat);
      this.latSamples?.push(lat);
    }
    if (i32[o + I_MASS]! >= 0) this.fwd.drop(p);
    // it ends at a mix (a mix loop) with no record there: the forward mass it carries is lost
    if (!isExit) this.exits.forward(OP_DROP, pk.f64[d + F_REC]!);
    pk.free(p);
  }

  /** A packet reaches the node it ends at (postmix mode): the gateway that takes it, or its mix. */
  private atDestination(p: number, t: number): void {
    const pk = this.pk;
    const i32 = pk.i32;
    const o = p * pk.IS;
    const d = p * pk.FS + pk.FO;
    const nHops = i32[o + I_NHOPS]!;
    const node = i32[o + I_NODES + nHops]!;
    const kind = i32[o + I_KIND]!;
    if (i32[o + I_MASS]! >= 0) this.fwd.drop(p);
    // at a mix (a mix loop) it leaves no record: the forward mass it carries is lost (none
    // reaches a gateway: the departure to one is an exit)
    if (node < this.NM) this.exits.forward(OP_DROP, pk.f64[d + F_REC]!);
    if (node >= this.NM) {
      this.trace.push(node, TR_ARRIVE, SRC_MIX, pk.f64[d + F_REC]!);
      this.obs.gatewayArrival?.(node - this.NM, t);
      // the gateway hop's own delay, then: a mailbox item (a client's loop, or an ACK), a
      // fragment without ACKs delivered, a drop discarded, a node loop home
      const ready = t + this.expo(this.mu);
      if (kind === KIND_LOOP || ((kind === KIND_FRAGMENT || kind === KIND_DECOY) && nHops > this.L))
        this.toMailbox(i32[o + I_SRC]!, ready, kind === KIND_FRAGMENT ? i32[o + I_FRAG]! : -1);
      else if (kind === KIND_FRAGMENT) this.proto!.delivered(i32[o + I_FRAG]!, ready);
      else if (kind === KIND_REAL && t > this.TW) {
        const lat = t - pk.f64[d + F_T0]!;
        this.latency.add(lat);
        this.latSamples?.push(lat);
      }
    }
    pk.free(p);
  }

  /**
   * An item ready in client `c`'s mailbox at `ready`: the gateway writes one frame per tick to
   * each subscriber (proto/mailbox rate), the oldest waiting item or a dummy, so the item leaves
   * at the first free tick.
   */
  private toMailbox(c: number, ready: number, frag: number): void {
    const per = this.mbPeriod;
    const ph = this.mbPhase[this.home[c]!]!;
    let at = ph + Math.ceil((ready - ph) / per) * per;
    if (at < this.mbNext[c]!) at = this.mbNext[c]!;
    this.mbNext[c] = at + per;
    if (ready > this.TW) this.counts.mailboxItems++;
    if (c === 0 && ready > this.TW) this.obs.targetMailboxItem?.(ready, frag >= 0);
    if (frag >= 0) this.heap.push(at + this.sc.linkLatency, EV_ACK | (frag << 3));
    else if (ready > this.TW) this.counts.loopsReturned++;
  }

  // ---- analyses at exit ----

  /**
   * Packet `p`, whose departure is the newest trace record, leaves the mix network at `t`: a
   * forward target (`target`: its sender entropy and the timing attack) and/or a fragment of a
   * followed message (its full posterior for the message-level attacks).
   */
  private analyseExit(p: number, t: number, target: boolean): void {
    const i32 = this.pk.i32;
    const o = p * this.pk.IS;
    let flags = target ? REQ_TARGET : 0;
    const f = i32[o + I_FRAG]!;
    if (f >= 0 && this.obs.fragmentExit) {
      const proto = this.proto!;
      const m = proto.frMsg[f]!;
      if (proto.msTarget[m]! >= 0) {
        flags |= REQ_FULL;
        this.fullArgs.push(proto.msTarget[m]!, f - proto.msFirst[m]!, proto.frAttempts[f]!, t);
      }
    }
    if (flags === 0) return;
    const tw = this.trace.written;
    const ew = this.entries.written;
    this.exits.request({
      traceStart: tw - 1,
      traceAvail: Math.min(tw, this.traceWindow),
      entryStart: ew - 1,
      entryAvail: Math.min(ew, this.entryWindow),
      tExit: t,
      sender: target && i32[o + I_KIND] !== KIND_MIXLOOP ? i32[o + I_SRC]! : -1,
      flags,
    });
    if (target) i32[o + I_TARGET] = -1;
  }

  /** Milliseconds the event loop waited for the analysis thread (0 on one thread). */
  analysisWaitMs(): number {
    return this.exits instanceof ThreadedExits ? this.exits.waitedMs : 0;
  }

  /** CPU seconds of the analysis thread (NaN on one thread, or where the OS does not say). */
  analysisCpuS(): number {
    return this.exits instanceof ThreadedExits ? this.exits.workerCpuS : NaN;
  }

  /** Every exit analysis done (on whichever thread): their results into the metrics and observers. */
  private collectExits(): void {
    const r = this.exits.finish();
    this.finished = r.forward.finished;
    this.lostMass = r.forward.lostMass;
    this.entropyOut = Array.from(r.forward.entropy);
    const logN = Math.log2(this.N);
    for (let i = 0; i < r.senderEntropy.length; i++) {
      if (r.truncated[i] === 1) this.truncated++;
      const h = r.senderEntropy[i]!;
      if (Number.isNaN(h)) continue;
      this.senderOut.push(h);
      this.degreeOut.push(this.N > 1 ? h / logN : 0);
    }
    const a = this.fullArgs;
    for (let i = 0; i < r.posteriors.length; i++) this.obs.fragmentExit!(a[4 * i]!, a[4 * i + 1]!, a[4 * i + 2]!, r.posteriors[i]!, a[4 * i + 3]!);
    this.timing = r.timing;
  }

  /** A compromised recipient gateway sends the ACK of a followed message: follow it home. */
  private followReply(p: number): void {
    const proto = this.proto!;
    const f = this.pk.i32[p * this.pk.IS + I_FRAG]!;
    const m = proto.frMsg[f]!;
    if (proto.msTarget[m]! < 0 || !this.obs.replyPosterior) return;
    const r = this.replyTracked;
    if (r >= this.followMax * 64) return;
    this.replyTracked++;
    this.replyMsg[r] = proto.msTarget[m]!;
    this.replyFrag[r] = f - proto.msFirst[m]!;
    this.replyClientMass[r] = new Map();
    this.replyGwMass[r] = new Float64Array(this.sc.gateways);
    this.fwd.attach(p, this.K + r, 1);
  }

  // ---- the loop ----

  run(onProgress?: (p: Progress) => void, progressEvery = 1_000_000): void {
    const sc = this.sc;
    const N = this.N;
    const heap = this.heap;
    const T = sc.duration;
    // Each client's streams are Poisson; N independent Poisson(λ) streams are one Poisson(N·λ)
    // stream whose events fall on a uniformly drawn client, which keeps four events in the heap
    // instead of 4·N (the heap's depth is most of an event's cost at 100,000 clients).
    const payloadRate = N * sc.rate;
    const loopRate = N * sc.loopRate;
    const dropRate = N * sc.dropRate;
    const msgRate = N * (sc.realRate ?? 0);
    if (payloadRate > 0) heap.push(this.expo(payloadRate), EV_PAYLOAD);
    if (loopRate > 0) heap.push(this.expo(loopRate), EV_LOOP);
    if (dropRate > 0) heap.push(this.expo(dropRate), EV_DROP);
    if (msgRate > 0) heap.push(this.expo(msgRate), EV_MSG);
    if (sc.mixLoopRate > 0) for (let m = 0; m < this.NM; m++) heap.push(this.expo(sc.mixLoopRate), EV_NODELOOP | (m << 3));
    if (sc.gatewayLoopRate > 0) for (let g = 0; g < sc.gateways; g++) heap.push(this.expo(sc.gatewayLoopRate), EV_NODELOOP | ((this.NM + g) << 3));
    const fragCap = this.postmix ? fragmentCapacityOf(sc) : 0;
    const proto = this.proto;
    let nextProgress = progressEvery;
    while (heap.size > 0) {
      const t = heap.peekTime();
      if (t > T) break;
      const code = heap.peekCode();
      heap.pop();
      this.events++;
      if (this.events >= nextProgress && onProgress) {
        nextProgress += progressEvery;
        onProgress({ simTime: t, duration: T, events: this.events, targetsDone: this.exits.forwardFinished() });
      }
      const idx = code >>> 3;
      switch (code & 7) {
        case EV_PAYLOAD: {
          heap.push(t + this.expo(payloadRate), code);
          const idx = this.rng.int(N);
          if (proto) {
            const f = payloadTick(proto.dueCount(idx, t)) === 'real' ? proto.nextDue(idx, t) : -1;
            if (f >= 0) this.sendClientPacket(idx, KIND_FRAGMENT, t, proto.msT0[proto.frMsg[f]!]!, f);
            else this.sendClientPacket(idx, sc.payloadCover === 'decoy' ? KIND_DECOY : sc.payloadCover === 'loop' ? KIND_LOOP : KIND_DROP, t, t);
          } else this.sendClientPacket(idx, KIND_REAL, t, t);
          break;
        }
        case EV_LOOP:
          heap.push(t + this.expo(loopRate), code);
          this.sendClientPacket(this.rng.int(N), KIND_LOOP, t, t);
          break;
        case EV_DROP:
          heap.push(t + this.expo(dropRate), code);
          this.sendClientPacket(this.rng.int(N), KIND_DROP, t, t);
          break;
        case EV_MSG: {
          heap.push(t + this.expo(msgRate), code);
          const idx = this.rng.int(N);
          const bytes = sc.messageBytesSigma > 0 ? sc.messageBytes * Math.exp(sc.messageBytesSigma * gauss(this.uni)) : sc.messageBytes;
          const count = fragmentCountFor(bytes, fragCap);
          const gw = this.net.gateway(this.contacts[idx * sc.contacts + this.rng.int(sc.contacts)]!);
          const follow = idx === 0 && t > this.TW && this.followed < this.followMax ? this.followed++ : -1;
          proto!.submit(idx, t, count, gw, follow);
          break;
        }
        case EV_NODELOOP: {
          heap.push(t + this.expo(idx < this.NM ? sc.mixLoopRate : sc.gatewayLoopRate), code);
          this.enterPool(this.sendNodeLoop(idx, t), t, SRC_SELF);
          break;
        }
        case EV_ARRIVE:
          this.arrive(idx, t);
          break;
        case EV_DEPART:
          this.depart(idx, t);
          break;
        case EV_ACK:
          proto!.ackReceived(idx, t);
          break;
      }
    }
    for (let m = 0; m < this.NM; m++) this.notePool(m, T);
    this.collectExits();
  }
}

/** One standard normal draw (Box–Muller), for log-normal message sizes. */
function gauss(u: () => number): number {
  const a = 1 - u();
  const b = u();
  return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * b);
}
