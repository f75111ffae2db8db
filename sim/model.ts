/**
 * The discrete-event model of a Loopix-style mixnet with a global passive adversary.
 *
 * Clients send as Poisson processes (payload stream λ_P in which real packets replace drop
 * cover, loop cover λ_L, drop cover λ_D); every packet crosses L mixing hops (stratified:
 * one mix per layer, uniform; cascade: one fixed chain; free-route: any mix per hop) and
 * then reaches the gateway. The sender draws each hop's delay from Exp(μ) at send time, with
 * the shared rule in proto/mixing. Mixes may emit their own loop cover (λ_M).
 *
 * The adversary sees every link (who sent what to whom, and when) and the pool of a
 * compromised mix (which input left as which output). Two analyses run while the simulation
 * streams:
 *  - forward, per target packet (the Loopix measure): the probability that each packet leaving
 *    the last layer is the target, by exact probability tracking through each mix's pool.
 *    In an honest exponential mix every packet in the pool is equally likely to leave next
 *    (memorylessness), so a departure from a pool of n packets carries 1/n of the target's
 *    probability mass in that pool and leaves (n−1)/n behind;
 *  - backward, per delivered target packet (sender anonymity): the transpose of the same
 *    linear map run over a bounded ring buffer of the link trace, giving the probability of
 *    each client being the sender.
 *    The timing-correlation attack ranks clients by the Erlang likelihood of their send times.
 *
 * Hot-loop state lives in typed arrays (struct of arrays with free lists); no allocation per
 * event except when a tracked target's probability mass moves (a small number of entries).
 */
import { payloadTick, sampleExponential } from '../proto/mixing/params.ts';
import { erlangPdf, erlangQuantile } from './analytic.ts';
import { EventHeap } from './heap.ts';
import { LogHistogram, meanOf, quantileOf } from './histogram.ts';
import { Rng } from './rng.ts';
import { makeScenario, mixingParamsOf, type Scenario } from './scenario.ts';

// event kinds (low 3 bits of an event code)
const EV_PAYLOAD = 0;
const EV_LOOP = 1;
const EV_DROP = 2;
const EV_MSG = 3;
const EV_MIXLOOP = 4;
const EV_ARRIVE = 5;
const EV_DEPART = 6;

// packet kinds
export const KIND_REAL = 0;
export const KIND_DROP = 1;
export const KIND_LOOP = 2;
export const KIND_MIXLOOP = 3;

/** A target's probability mass below this is dropped (counted in `entropy.lost_mass`). */
const EPS = 1e-10;
const POOL_HIST = 4096;

export interface Progress {
  simTime: number;
  duration: number;
  events: number;
  targetsDone: number;
}

export interface RunOptions {
  /** called about every `progressEvery` events */
  onProgress?: (p: Progress) => void;
  progressEvery?: number;
  /** keep the per-target arrays (entropy, sender entropy) in the result */
  keepSamples?: boolean;
  /** record every real packet's end-to-end latency (tests only: unbounded memory) */
  keepLatencies?: boolean;
}

export interface Summary {
  mean: number;
  median: number;
  p5: number;
  p95: number;
  n: number;
}

export interface RunResult {
  scenario: Scenario;
  entropy: Summary & { lost_mass: number };
  sender_entropy: Summary & { degree_mean: number; max_possible: number; truncated: number };
  latency: { mean: number; p50: number; p95: number; p99: number; max: number; n: number };
  overhead: { real: number; cover: number; loop: number; drop: number; mix_loop: number; cover_per_real: number };
  load: {
    per_mix_pps: { mean: number; min: number; max: number };
    pool_mean: number;
    per_layer_pool_mean: number[];
    pool_size_hist: number[][];
  };
  attacks: {
    timing: { n: number; top1: number; top5: number; baseline_top1: number; baseline_top5: number; true_sender_prob_mean: number };
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

export function runSimulation(partial: Partial<Scenario>, opts: RunOptions = {}): RunResult {
  const sc = makeScenario(partial);
  const wallStart = performance.now();
  const mp = mixingParamsOf(sc);
  const mu = mp.mu;
  const rng = new Rng(sc.seed);
  const uni = rng.uniform();
  const L = sc.layers;
  const W = sc.layerSize;
  const NM = L * W;
  const N = sc.clients;
  const T = sc.duration;
  const TW = sc.warmup;
  const hopGap = sc.linkLatency + sc.processingTime; // wire arrival -> pool entry is processingTime
  const K = sc.targets;

  // ---- compromised mixes (seeded choice) ----
  const compromised = new Uint8Array(NM);
  {
    const nc = Math.round(sc.compromised * NM);
    const order = Array.from({ length: NM }, (_, i) => i);
    const crng = new Rng(sc.seed ^ 0x5eed);
    for (let i = NM - 1; i > 0; i--) {
      const j = crng.int(i + 1);
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    for (let i = 0; i < nc; i++) compromised[order[i]!] = 1;
  }

  // ---- targets: packets of one client (more clients only if one cannot supply K) ----
  const perClientRate = sc.rate + sc.loopRate + sc.dropRate;
  const tail = Math.min((T - TW) / 2, (L * 10) / mu + L * hopGap + 1);
  const window = Math.max(1e-9, T - TW - tail);
  const targetClients = Math.min(N, Math.max(1, Math.ceil(K / Math.max(1e-9, perClientRate * window * 0.9))));
  const targetWindowEnd = T - tail;

  // ---- packets: struct of arrays with a free list ----
  let cap = 1024;
  let pkHop = new Int32Array(cap);
  let pkNHops = new Int32Array(cap);
  let pkExit = new Int32Array(cap);
  let pkSrc = new Int32Array(cap);
  let pkKind = new Uint8Array(cap);
  let pkT0 = new Float64Array(cap);
  let pkSerial = new Int32Array(cap);
  let pkTarget = new Int32Array(cap);
  let pkMass = new Int32Array(cap);
  let pkNodes = new Int32Array(cap * L);
  let pkDelays = new Float64Array(cap * L);
  let freeTop = 0;
  let freeStack = new Int32Array(cap);
  let used = 0;
  const growPackets = () => {
    const nc = cap * 2;
    const g32 = (a: Int32Array, n: number) => {
      const b = new Int32Array(n);
      b.set(a);
      return b;
    };
    const g64 = (a: Float64Array, n: number) => {
      const b = new Float64Array(n);
      b.set(a);
      return b;
    };
    pkHop = g32(pkHop, nc);
    pkNHops = g32(pkNHops, nc);
    pkExit = g32(pkExit, nc);
    pkSrc = g32(pkSrc, nc);
    const k = new Uint8Array(nc);
    k.set(pkKind);
    pkKind = k;
    pkT0 = g64(pkT0, nc);
    pkSerial = g32(pkSerial, nc);
    pkTarget = g32(pkTarget, nc);
    pkMass = g32(pkMass, nc);
    pkNodes = g32(pkNodes, nc * L);
    pkDelays = g64(pkDelays, nc * L);
    freeStack = g32(freeStack, nc);
    cap = nc;
  };
  const allocPacket = (): number => {
    if (freeTop > 0) return freeStack[--freeTop]!;
    if (used === cap) growPackets();
    return used++;
  };
  const freePacket = (p: number) => {
    freeStack[freeTop++] = p;
  };

  // ---- probability-mass arena: linked entries (target, mass) carried by packets ----
  let arCap = 256;
  let arNext = new Int32Array(arCap);
  let arTg = new Int32Array(arCap);
  let arMs = new Float64Array(arCap);
  let arFree = -1;
  let arUsed = 0;
  const arAlloc = (tg: number, ms: number, next: number): number => {
    let e: number;
    if (arFree >= 0) {
      e = arFree;
      arFree = arNext[e]!;
    } else {
      if (arUsed === arCap) {
        const n = arCap * 2;
        const a = new Int32Array(n);
        a.set(arNext);
        arNext = a;
        const b = new Int32Array(n);
        b.set(arTg);
        arTg = b;
        const c = new Float64Array(n);
        c.set(arMs);
        arMs = c;
        arCap = n;
      }
      e = arUsed++;
    }
    arNext[e] = next;
    arTg[e] = tg;
    arMs[e] = ms;
    return e;
  };
  const arRelease = (e: number) => {
    arNext[e] = arFree;
    arFree = e;
  };

  // ---- per-mix state ----
  const poolN = new Int32Array(NM);
  const thresholdMode = sc.mix === 'threshold';
  // threshold mixes: the packets waiting in each pool (not yet chosen to leave)
  const waitList: Int32Array[] = thresholdMode ? Array.from({ length: NM }, () => new Int32Array(sc.threshold)) : [];
  const waitLen = new Int32Array(thresholdMode ? NM : 0);
  const mixTg: number[][] = Array.from({ length: NM }, () => []);
  const mixMs: number[][] = Array.from({ length: NM }, () => []);
  const mixLastChange = new Float64Array(NM).fill(TW);
  const mixPoolArea = new Float64Array(NM);
  const mixOut = new Float64Array(NM);
  const layerOf = (m: number) => Math.floor(m / W);
  const poolHist: Float64Array[] = Array.from({ length: L }, () => new Float64Array(POOL_HIST));
  const notePool = (m: number, t: number) => {
    if (t <= TW) return;
    const n = poolN[m]!;
    const dt = t - mixLastChange[m]!;
    mixPoolArea[m]! += n * dt;
    poolHist[layerOf(m)]![n < POOL_HIST ? n : POOL_HIST - 1]! += dt;
    mixLastChange[m] = t;
  };

  // ---- targets ----
  const tgH = new Float64Array(K);
  const tgM = new Float64Array(K);
  const tgLive = new Int32Array(K);
  const tgDone = new Uint8Array(K);
  const entropyOut: number[] = [];
  const senderOut: number[] = [];
  const degreeOut: number[] = [];
  let tracked = 0;
  let finished = 0;
  let lostMass = 0;
  const finishTarget = (tg: number) => {
    tgDone[tg] = 1;
    finished++;
    const M = tgM[tg]!;
    lostMass += 1 - M;
    entropyOut.push(M > 0 ? tgH[tg]! / M + Math.log2(M) : 0);
  };
  const exitMass = (tg: number, m: number) => {
    if (m > 0) {
      tgH[tg]! -= m * Math.log2(m);
      tgM[tg]! += m;
    }
  };

  // ---- trace ring buffer for the backward analyses ----
  const TC = sc.traceCapacity;
  const trTime = new Float64Array(TC);
  const trSerial = new Int32Array(TC);
  const trMixType = new Int32Array(TC); // mix*2 + (0 arrival into pool, 1 departure)
  const trAux = new Int32Array(TC); // departure: pool n before leaving; arrival: source (client >= 0, -1 mix, -2 mix-generated)
  let trHead = 0; // next write
  let trCount = 0;
  const trace = (t: number, serial: number, mix: number, type: number, aux: number) => {
    trTime[trHead] = t;
    trSerial[trHead] = serial;
    trMixType[trHead] = mix * 2 + type;
    trAux[trHead] = aux;
    trHead = trHead + 1 === TC ? 0 : trHead + 1;
    if (trCount < TC) trCount++;
  };
  const score = new Float64Array(N);
  const B = new Float64Array(NM);
  const pending = new Map<number, number>();
  let truncated = 0;

  // timing attack: density of (exit time − first pool entry) for a client packet
  const timingHorizon = erlangQuantile(1 - 1e-9, L, mu) + (L - 1) * hopGap;
  const timingLik = new Float64Array(N);
  let timingN = 0,
    timingTop1 = 0,
    timingTop5 = 0,
    trueProbSum = 0;

  const analyseDelivered = (p: number, tDep: number) => {
    const trueSender = pkSrc[p]!;
    // backward probability tracking (sender anonymity)
    score.fill(0);
    B.fill(0);
    pending.clear();
    pending.set(pkSerial[p]!, 1);
    let acc = 0;
    let i = trHead;
    let k = 0;
    for (; k < trCount && acc < 1 - 1e-9; k++) {
      i = i === 0 ? TC - 1 : i - 1;
      const mt = trMixType[i]!;
      const mix = mt >> 1;
      const serial = trSerial[i]!;
      if ((mt & 1) === 1) {
        // departure, reversed
        if (compromised[mix] === 1) continue;
        const n = trAux[i]!;
        const w = pending.get(serial);
        const b = B[mix]!;
        if (w !== undefined) {
          pending.delete(serial);
          B[mix] = w / n + ((n - 1) / n) * b;
        } else if (b !== 0) B[mix] = ((n - 1) / n) * b;
      } else {
        // arrival into the pool, reversed
        let w: number;
        if (compromised[mix] === 1) {
          const pw = pending.get(serial);
          if (pw === undefined) continue;
          w = pw;
          pending.delete(serial);
        } else {
          w = B[mix]!;
          if (w === 0) continue;
        }
        const src = trAux[i]!;
        if (src >= 0) {
          score[src]! += w;
          acc += w;
        } else if (src === -1) pending.set(serial, w);
        else acc += w; // a mix's own loop packet: no client sent it
      }
    }
    if (acc < 1 - 1e-6) truncated++;
    let tot = 0;
    for (let c = 0; c < N; c++) tot += score[c]!;
    if (tot > 0) {
      let h = 0;
      for (let c = 0; c < N; c++) {
        const q = score[c]! / tot;
        if (q > 0) h -= q * Math.log2(q);
      }
      senderOut.push(h);
      degreeOut.push(N > 1 ? h / Math.log2(N) : 0);
    }
    // timing correlation: rank clients by the Erlang likelihood of their first-hop pool entries
    timingLik.fill(0);
    i = trHead;
    const offset = (L - 1) * hopGap;
    for (k = 0; k < trCount; k++) {
      i = i === 0 ? TC - 1 : i - 1;
      const age = tDep - trTime[i]!;
      if (age > timingHorizon) break;
      if ((trMixType[i]! & 1) === 1) continue;
      const src = trAux[i]!;
      if (src < 0) continue;
      timingLik[src]! += erlangPdf(age - offset, L, mu);
    }
    let total = 0;
    let above = 0;
    const mine = timingLik[trueSender]!;
    for (let c = 0; c < N; c++) {
      total += timingLik[c]!;
      if (c !== trueSender && timingLik[c]! >= mine) above++;
    }
    timingN++;
    if (above === 0) timingTop1++;
    if (above < 5) timingTop5++;
    if (total > 0) trueProbSum += mine / total;
  };

  // ---- metrics ----
  const latency = new LogHistogram();
  const latSamples: number[] | undefined = opts.keepLatencies ? [] : undefined;
  let nReal = 0,
    nDrop = 0,
    nLoop = 0,
    nMixLoop = 0;
  let serialNext = 0;
  let packets = 0;
  const queued = new Int32Array(N);
  // message arrival times of queued real packets: a small ring per client is overkill; keep the
  // oldest time per client only when realRate is set (FIFO of times in a shared array list)
  const msgTimes: number[][] = sc.realRate !== null ? Array.from({ length: N }, () => []) : [];

  const heap = new EventHeap(4 * N + 1024);
  const expo = (rate: number) => sampleExponential(rate, uni);

  // ---- route choice ----
  const chooseRoute = (p: number, startLayer: number, hops: number, fixedChain = -1) => {
    const base = p * L;
    const chain = sc.topology === 'cascade' ? (fixedChain >= 0 ? fixedChain : rng.int(W)) : 0;
    for (let h = 0; h < hops; h++) {
      let m: number;
      if (sc.topology === 'free-route') m = rng.int(NM);
      else {
        const layer = (startLayer + h) % L;
        m = layer * W + (sc.topology === 'cascade' ? chain : rng.int(W));
      }
      pkNodes[base + h] = m;
      pkDelays[base + h] = expo(mu);
    }
  };

  const sendClientPacket = (c: number, kind: number, t: number, t0: number) => {
    const p = allocPacket();
    pkHop[p] = 0;
    pkNHops[p] = L;
    pkExit[p] = L - 1;
    pkSrc[p] = c;
    pkKind[p] = kind;
    pkT0[p] = t0;
    pkSerial[p] = serialNext++;
    pkMass[p] = -1;
    pkTarget[p] = -1;
    chooseRoute(p, 0, L);
    packets++;
    if (t > TW) {
      if (kind === KIND_REAL) nReal++;
      else if (kind === KIND_DROP) nDrop++;
      else nLoop++;
      if (c < targetClients && tracked < K && t < targetWindowEnd) {
        const tg = tracked++;
        pkTarget[p] = tg;
        pkMass[p] = arAlloc(tg, 1, -1);
        tgLive[tg] = 1;
      }
    }
    heap.push(t + sc.linkLatency + sc.processingTime, EV_ARRIVE | (p << 3));
  };

  // ---- initial events ----
  for (let c = 0; c < N; c++) {
    if (sc.rate > 0) heap.push(expo(sc.rate), EV_PAYLOAD | (c << 3));
    if (sc.loopRate > 0) heap.push(expo(sc.loopRate), EV_LOOP | (c << 3));
    if (sc.dropRate > 0) heap.push(expo(sc.dropRate), EV_DROP | (c << 3));
    if (sc.realRate !== null && sc.realRate > 0) heap.push(expo(sc.realRate), EV_MSG | (c << 3));
  }
  if (sc.mixLoopRate > 0) for (let m = 0; m < NM; m++) heap.push(expo(sc.mixLoopRate), EV_MIXLOOP | (m << 3));

  // ---- main loop ----
  let events = 0;
  const progressEvery = opts.progressEvery ?? 1_000_000;
  let nextProgress = progressEvery;
  while (heap.size > 0) {
    const t = heap.peekTime();
    if (t > T) break;
    const code = heap.peekCode();
    heap.pop();
    events++;
    if (events >= nextProgress && opts.onProgress) {
      nextProgress += progressEvery;
      opts.onProgress({ simTime: t, duration: T, events, targetsDone: finished });
    }
    const kind = code & 7;
    const idx = code >>> 3;
    switch (kind) {
      case EV_PAYLOAD: {
        heap.push(t + expo(sc.rate), code);
        if (sc.realRate === null) sendClientPacket(idx, KIND_REAL, t, t);
        else if (payloadTick(queued[idx]!) === 'real') {
          queued[idx]!--;
          const t0 = msgTimes[idx]!.shift()!;
          sendClientPacket(idx, KIND_REAL, t, t0);
        } else sendClientPacket(idx, KIND_DROP, t, t);
        break;
      }
      case EV_LOOP:
        heap.push(t + expo(sc.loopRate), code);
        sendClientPacket(idx, KIND_LOOP, t, t);
        break;
      case EV_DROP:
        heap.push(t + expo(sc.dropRate), code);
        sendClientPacket(idx, KIND_DROP, t, t);
        break;
      case EV_MSG:
        heap.push(t + expo(sc.realRate!), code);
        queued[idx]!++;
        msgTimes[idx]!.push(t);
        break;
      case EV_MIXLOOP: {
        heap.push(t + expo(sc.mixLoopRate), code);
        // the mix's own loop: enters its own pool unseen, then visits the other layers and returns
        const m = idx;
        const p = allocPacket();
        const layer = layerOf(m);
        pkHop[p] = 0;
        pkNHops[p] = L;
        pkSrc[p] = -1 - m;
        pkKind[p] = KIND_MIXLOOP;
        pkT0[p] = t;
        pkSerial[p] = serialNext++;
        pkMass[p] = -1;
        pkTarget[p] = -1;
        chooseRoute(p, layer, L, m % W);
        pkNodes[p * L] = m;
        pkExit[p] = sc.topology === 'free-route' ? L - 1 : L - 1 - layer;
        packets++;
        if (t > TW) nMixLoop++;
        arrive(p, t, -2);
        break;
      }
      case EV_ARRIVE: {
        const p = idx;
        arrive(p, t, pkHop[p] === 0 ? pkSrc[p]! : -1);
        break;
      }
      case EV_DEPART: {
        const p = idx;
        const h = pkHop[p]!;
        const m = pkNodes[p * L + h]!;
        const n = poolN[m]!;
        trace(t, pkSerial[p]!, m, 1, n);
        const isExit = h === pkExit[p];
        if (t > TW) mixOut[m]!++;
        // forward probability tracking
        if (compromised[m] === 0) {
          const tgs = mixTg[m]!;
          if (tgs.length > 0) {
            const mss = mixMs[m]!;
            for (let j = tgs.length - 1; j >= 0; j--) {
              const tg = tgs[j]!;
              const M = mss[j]!;
              const out = M / n;
              const rest = n === 1 ? 0 : M - out;
              if (isExit) exitMass(tg, out);
              else if (out >= EPS) {
                pkMass[p] = arAlloc(tg, out, pkMass[p]!);
                tgLive[tg]!++;
              }
              if (rest < EPS) {
                const last = tgs.length - 1;
                tgs[j] = tgs[last]!;
                mss[j] = mss[last]!;
                tgs.pop();
                mss.pop();
                if (--tgLive[tg]! === 0) finishTarget(tg);
              } else mss[j] = rest;
            }
          }
        } else if (isExit) {
          let e = pkMass[p]!;
          while (e >= 0) {
            const nx = arNext[e]!;
            const tg = arTg[e]!;
            exitMass(tg, arMs[e]!);
            arRelease(e);
            if (--tgLive[tg]! === 0) finishTarget(tg);
            e = nx;
          }
          pkMass[p] = -1;
        }
        notePool(m, t);
        poolN[m]!--;
        if (isExit && pkTarget[p]! >= 0 && pkKind[p] !== KIND_MIXLOOP) analyseDelivered(p, t);
        if (h + 1 < pkNHops[p]!) {
          pkHop[p] = h + 1;
          heap.push(t + hopGap, EV_ARRIVE | (p << 3));
        } else {
          if (pkKind[p] === KIND_REAL && t > TW) {
            const lat = t + sc.linkLatency - pkT0[p]!;
            latency.add(lat);
            latSamples?.push(lat);
          }
          if (pkMass[p]! >= 0) {
            // mass still riding a packet that ends without leaving the last layer (cannot happen
            // for client packets); count it as lost
            let e = pkMass[p]!;
            while (e >= 0) {
              const nx = arNext[e]!;
              const tg = arTg[e]!;
              arRelease(e);
              if (--tgLive[tg]! === 0) finishTarget(tg);
              e = nx;
            }
          }
          freePacket(p);
        }
        break;
      }
    }
  }

  function arrive(p: number, t: number, src: number) {
    const m = pkNodes[p * L + pkHop[p]!]!;
    notePool(m, t);
    poolN[m]!++;
    trace(t, pkSerial[p]!, m, 0, src);
    if (compromised[m] === 0 && pkMass[p]! >= 0) {
      const tgs = mixTg[m]!;
      const mss = mixMs[m]!;
      let e = pkMass[p]!;
      while (e >= 0) {
        const nx = arNext[e]!;
        const tg = arTg[e]!;
        const j = tgs.indexOf(tg);
        if (j >= 0) {
          mss[j]! += arMs[e]!;
          tgLive[tg]!--;
        } else {
          tgs.push(tg);
          mss.push(arMs[e]!);
        }
        arRelease(e);
        e = nx;
      }
      pkMass[p] = -1;
    }
    if (!thresholdMode) {
      heap.push(t + pkDelays[p * L + pkHop[p]!]!, EV_DEPART | (p << 3));
      return;
    }
    // threshold (pool) mix: when the pool reaches the threshold, all but poolKeep packets,
    // chosen uniformly, leave now. One at a time from n, n-1, ... packets, each uniform, is the
    // same as a uniform batch, so the departure rule of the exponential mix tracks it exactly.
    const wl = waitList[m]!;
    let len = waitLen[m]!;
    wl[len++] = p;
    if (len >= sc.threshold) {
      while (len > sc.poolKeep) {
        const j = rng.int(len);
        const q = wl[j]!;
        wl[j] = wl[--len]!;
        heap.push(t, EV_DEPART | (q << 3));
      }
    }
    waitLen[m] = len;
  }

  for (let m = 0; m < NM; m++) notePool(m, T);

  const wall = (performance.now() - wallStart) / 1000;
  const span = T - TW;
  const perMix = Array.from(mixOut, (x) => x / span);
  const layerPool: number[] = [];
  for (let l = 0; l < L; l++) {
    let s = 0;
    for (let w = 0; w < W; w++) s += mixPoolArea[l * W + w]!;
    layerPool.push(s / W / span);
  }
  const cover = nDrop + nLoop + nMixLoop;
  const poolHistOut = poolHist.map((h) => {
    let last = 0;
    for (let i = 0; i < POOL_HIST; i++) if (h[i]! > 0) last = i;
    const tot = h.reduce((a, b) => a + b, 0);
    return Array.from(h.subarray(0, last + 1), (x) => (tot > 0 ? x / tot : 0));
  });
  const res: RunResult = {
    scenario: sc,
    entropy: { ...summarize(entropyOut), lost_mass: finished > 0 ? lostMass / finished : 0 },
    sender_entropy: {
      ...summarize(senderOut),
      degree_mean: meanOf(degreeOut),
      max_possible: Math.log2(N),
      truncated,
    },
    latency: {
      mean: latency.mean(),
      p50: latency.quantile(0.5),
      p95: latency.quantile(0.95),
      p99: latency.quantile(0.99),
      max: latency.count > 0 ? latency.max : NaN,
      n: latency.count,
    },
    overhead: {
      real: nReal,
      cover,
      loop: nLoop,
      drop: nDrop,
      mix_loop: nMixLoop,
      cover_per_real: nReal > 0 ? cover / nReal : cover > 0 ? Infinity : 0,
    },
    load: {
      per_mix_pps: { mean: meanOf(perMix), min: Math.min(...perMix), max: Math.max(...perMix) },
      pool_mean: meanOf(layerPool),
      per_layer_pool_mean: layerPool,
      pool_size_hist: poolHistOut,
    },
    attacks: {
      timing: {
        n: timingN,
        top1: timingN > 0 ? timingTop1 / timingN : NaN,
        top5: timingN > 0 ? timingTop5 / timingN : NaN,
        baseline_top1: 1 / N,
        baseline_top5: Math.min(5, N) / N,
        true_sender_prob_mean: timingN > 0 ? trueProbSum / timingN : NaN,
      },
    },
    targets: { requested: K, tracked, finished, target_clients: targetClients },
    packets,
    events,
    sim_s: T,
    wall_s: wall,
    events_per_s: events / Math.max(wall, 1e-9),
    latency_cdf: latency.cdf(100),
  };
  if (opts.keepSamples) {
    res.samples = { entropy: entropyOut, sender_entropy: senderOut };
    if (latSamples) res.samples.latencies = latSamples;
  }
  return res;
}
