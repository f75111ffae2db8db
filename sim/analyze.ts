/**
 * The simulator's metrics from a real network's link capture (`postmix testnet --capture DIR`):
 * what a global passive adversary computes from the timings it sees on the links.
 *
 * Every node stamped each Sphinx frame it wrote or read (runtime/link/capture.ts). A frame that
 * A wrote to B is the frame B read from A: links are ordered streams, so frames pair up in
 * order (skipping a write never read, as when a connection drops, and a read with no write). That gives every link traversal its two ends. Inside a node
 * the adversary cannot tell which input left as which output, which is the mixing; so the
 * traversals, in time order, are exactly the trace the simulator's adversary reads: arrivals
 * into each node's pool (from a client, a mix or a gateway) and departures from it, with the
 * pool's size at each departure (arrivals minus departures so far). The same analyses then run
 * on it: the forward per-packet entropy (forward.ts), the backward sender posterior
 * (backward.ts). Per-hop delay is the pool's time-average size over its throughput (Little's
 * law), per node; the link latency is the mean time between the two ends of a traversal; the
 * end-to-end latency is the testnet's own per-message latency (submission to the MX's mailbox).
 *
 * What the capture cannot show: packets a node makes itself (a mix's loops, λ_M) enter its pool
 * unseen, so runs to compare with the model should set λ_M = 0, and the pool sizes here count
 * only what the links show.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readCapturedTimeline } from '../runtime/link/index.ts';
import { BackwardWalker } from './backward.ts';
import { ForwardTracker, type ExitSink } from './forward.ts';
import { meanOf, quantileOf } from './histogram.ts';
import { PacketTable } from './packets.ts';
import { SRC_GATEWAY, SRC_MIX, TR_ARRIVE, TR_DEPART, TraceRing } from './trace.ts';

interface NodeInfo {
  kind: 'mix' | 'gateway' | 'client';
  layer?: number;
  name: string;
}

export interface CaptureAnalysis {
  capture_dir: string;
  nodes: { clients: number; mixes: number; gateways: number; layers: number };
  frames: { matched: number; unmatched: number };
  span_s: number;
  warmup_s: number;
  rates: { client_pps: number; per_mix_pps: number };
  link_latency_s: number;
  /** mixes only: a gateway's deliveries never leave, so Little's law does not apply there */
  per_hop_delay_s: { mean: number; per_layer: number[]; expected: number | null };
  entropy: { mean: number; median: number; p5: number; p95: number; n: number };
  sender_entropy: { mean: number; median: number; n: number; max_possible: number };
  latency: { messages: number; mean: number | null; p50: number | null; max: number | null };
  parameters: Record<string, unknown> | null;
}

const SPHINX = '/postmix/sphinx/';
/**
 * A write is stamped just after the frame is handed to the stream, so on a loaded host (the
 * writer descheduled in between) its read can be stamped first; a read this much before its
 * write has none.
 */
const CLOCK_NOISE_S = 0.5;
/** a frame not read within this of its write was lost (a dropped connection) */
const MAX_LINK_S = 5;

export interface AnalyzeOptions {
  /** seconds after the first client packet before anything counts (default 2) */
  warmup?: number;
  /** tracked target packets (default 1,000) */
  targets?: number;
}

export function analyzeCapture(dir: string, opts: AnalyzeOptions = {}): CaptureAnalysis {
  if (!existsSync(dir)) throw new Error(`no capture directory ${dir}`);
  const peers = readdirSync(dir)
    .filter((f) => f.endsWith('.frames.json'))
    .map((f) => f.slice(0, -'.frames.json'.length));
  if (peers.length === 0) throw new Error(`${dir}: no frame timelines (*.frames.json); was it captured with postmix testnet --capture DIR?`);
  const info = new Map<string, NodeInfo>();
  const nodesFile = join(dir, 'nodes.json');
  if (!existsSync(nodesFile)) throw new Error(`${dir}: no nodes.json (which peers are mixes and gateways)`);
  for (const n of JSON.parse(readFileSync(nodesFile, 'utf8')) as Array<{ peerId: string; kind: 'mix' | 'gateway'; layer?: number; name: string }>)
    info.set(n.peerId, { kind: n.kind, ...(n.layer !== undefined ? { layer: n.layer } : {}), name: n.name });
  for (const p of peers) if (!info.has(p)) info.set(p, { kind: 'client', name: p });
  const testnetFile = join(dir, 'testnet.json');
  const testnet = existsSync(testnetFile)
    ? (JSON.parse(readFileSync(testnetFile, 'utf8')) as { topology?: Record<string, unknown>; messages?: Array<{ latency_s: number | null; path: string }> })
    : null;

  // node indices: mixes by layer, then gateways; clients separately
  const mixes = [...info].filter(([, v]) => v.kind === 'mix').sort((a, b) => (a[1].layer ?? 0) - (b[1].layer ?? 0) || a[1].name.localeCompare(b[1].name));
  const gateways = [...info].filter(([, v]) => v.kind === 'gateway');
  const clients = [...info].filter(([, v]) => v.kind === 'client');
  const index = new Map<string, number>();
  mixes.forEach(([p], i) => index.set(p, i));
  gateways.forEach(([p], i) => index.set(p, mixes.length + i));
  const clientIndex = new Map(clients.map(([p], i) => [p, i]));
  const NM = mixes.length;
  const NN = NM + gateways.length;
  const layers = Math.max(0, ...mixes.map(([, v]) => v.layer ?? 0));
  const layerOf = (n: number) => (n < NM ? mixes[n]![1].layer! : -1);

  // per directed link: the writer's and the reader's stamps
  const outs = new Map<string, number[]>();
  const ins = new Map<string, number[]>();
  for (const p of peers) {
    const tl = readCapturedTimeline(dir, p);
    const keyOf = tl.links.map((k) => {
      const [proto, dirn, nb] = k.split(' ');
      return proto!.startsWith(SPHINX) ? { dirn: dirn!, nb: nb! } : null;
    });
    for (let i = 0; i < tl.time.length; i++) {
      const k = keyOf[tl.link[i]!];
      if (!k) continue;
      const key = k.dirn === 'out' ? `${p} ${k.nb}` : `${k.nb} ${p}`;
      const m = k.dirn === 'out' ? outs : ins;
      let a = m.get(key);
      if (!a) m.set(key, (a = []));
      a.push(tl.time[i]! / 1000);
    }
  }
  // traversals: the k-th frame written on a link is the k-th read
  interface Trav {
    from: string;
    to: string;
    tOut: number;
    tIn: number;
  }
  const trav: Trav[] = [];
  let unmatched = 0;
  let linkLat = 0;
  for (const [key, o] of outs) {
    const i = ins.get(key) ?? [];
    o.sort((a, b) => a - b);
    i.sort((a, b) => a - b);
    const [from, to] = key.split(' ') as [string, string];
    // in order, but a frame lost with a dropped connection must not shift every later pair:
    // a read stamped before the write (beyond clock noise) has no write, a write whose next
    // read comes more than MAX_LINK_S later was lost
    let a = 0;
    let b = 0;
    while (a < o.length && b < i.length) {
      const d = i[b]! - o[a]!;
      if (d < -CLOCK_NOISE_S) {
        b++;
        unmatched++;
      } else if (d > MAX_LINK_S) {
        a++;
        unmatched++;
      } else {
        trav.push({ from, to, tOut: o[a]!, tIn: Math.max(o[a]!, i[b]!) });
        linkLat += Math.max(0, d);
        a++;
        b++;
      }
    }
    unmatched += o.length - a + (i.length - b);
  }
  for (const [key, i] of ins) if (!outs.has(key)) unmatched += i.length;
  if (trav.length === 0) throw new Error(`${dir}: no Sphinx frames matched between nodes`);

  // the events, in time order (a traversal's departure before its arrival)
  const evT = new Float64Array(2 * trav.length);
  const evCode = new Int32Array(2 * trav.length);
  trav.forEach((tr, k) => {
    evT[2 * k] = tr.tOut;
    evCode[2 * k] = 2 * k;
    evT[2 * k + 1] = tr.tIn;
    evCode[2 * k + 1] = 2 * k + 1;
  });
  const order = Array.from(evCode).sort((a, b) => evT[a]! - evT[b]! || a - b);
  // the window in which every client is sending (they start one after another; a client alone
  // on the network would make its packets easy to attribute, in the capture but not the model)
  const first = new Map<string, number>();
  const lastSend = new Map<string, number>();
  for (const t of trav)
    if (clientIndex.has(t.from)) {
      first.set(t.from, Math.min(first.get(t.from) ?? Infinity, t.tOut));
      lastSend.set(t.from, Math.max(lastSend.get(t.from) ?? -Infinity, t.tOut));
    }
  if (first.size === 0) throw new Error(`${dir}: no client sent a Sphinx frame`);
  const warmup = opts.warmup ?? 2;
  const t0 = Math.max(...first.values()) + warmup;
  const tEnd = Math.min(...lastSend.values());
  if (!(tEnd > t0)) throw new Error(`${dir}: the clients were never all sending for longer than the warm-up (${warmup} s)`);
  const K = opts.targets ?? 1000;
  // targets must have time to leave before the capture ends: 10 mean route delays
  const expectedHop = typeof testnet?.topology?.mean_delay_per_hop_ms === 'number' ? testnet.topology.mean_delay_per_hop_ms / 1000 : 0.1;
  const tail = 10 * Math.max(1, layers) * expectedHop;

  const pk = new PacketTable(1);
  const ring = new TraceRing(Math.max(1 << 16, 2 * trav.length + 16));
  const comp = new Uint8Array(NN);
  const entropies: number[] = [];
  const tgH: number[] = [];
  const tgM: number[] = [];
  const sink: ExitSink = {
    exit: (tg, m) => {
      if (m > 0) {
        tgH[tg]! -= m * Math.log2(m);
        tgM[tg]! += m;
      }
    },
    finish: (tg) => {
      const M = tgM[tg]!;
      entropies.push(M > 0 ? tgH[tg]! / M + Math.log2(M) : 0);
    },
  };
  const fwd = new ForwardTracker(pk, comp, NN, K, sink);
  const back = new BackwardWalker(ring, comp, Math.max(1, clients.length));
  const senders: number[] = [];
  const pool = new Int32Array(NN);
  const area = new Float64Array(NN);
  const outCount = new Float64Array(NN);
  const last = new Float64Array(NN).fill(t0);
  const packetOf = new Int32Array(trav.length).fill(-1);
  const recOf = new Float64Array(trav.length).fill(-1);
  let tracked = 0;
  let clientSends = 0;
  let closed = false;
  const note = (n: number, t: number) => {
    if (t <= t0 || t > tEnd) return;
    area[n]! += pool[n]! * (t - last[n]!);
    last[n] = t;
  };
  for (const code of order) {
    const k = code >> 1;
    const tr = trav[k]!;
    const t = evT[code]!;
    if (t > tEnd + tail) break;
    if (t > tEnd && !closed) {
      closed = true;
      for (let n = 0; n < NN; n++) area[n]! += pool[n]! * (tEnd - Math.max(t0, last[n]!));
    }
    if ((code & 1) === 0) {
      // departure from tr.from
      const p = pk.alloc();
      pk.setMass(p, -1);
      packetOf[k] = p;
      const n = index.get(tr.from);
      if (n === undefined) {
        if (t > t0 && t <= tEnd) clientSends++;
        continue; // a client's send: its arrival carries the source
      }
      note(n, t);
      const size = Math.max(1, pool[n]!);
      const to = index.get(tr.to);
      const isExit = n < NM && to !== undefined && to >= NM;
      recOf[k] = ring.push(n, TR_DEPART, size, -1);
      if (n < NM && fwd.holds(n)) fwd.depart(p, n, size, isExit, t);
      if (pool[n]! > 0) pool[n]!--;
      if (t > t0 && t <= tEnd) outCount[n]!++;
      if (isExit && senders.length < K && t > t0 + tail / 2 && t <= tEnd) {
        const post = back.walk();
        if (post.clients.length > 0) senders.push(post.entropy);
      }
    } else {
      const n = index.get(tr.to);
      const p = packetOf[k]!;
      if (n === undefined) {
        fwd.drop(p);
        pk.free(p);
        continue; // into a client (its mailbox downlink is not Sphinx; nothing else goes there)
      }
      note(n, t);
      pool[n]!++;
      const c = clientIndex.get(tr.from);
      const src = c !== undefined ? c : index.get(tr.from)! >= NM ? SRC_GATEWAY : SRC_MIX;
      ring.push(n, TR_ARRIVE, src, c !== undefined ? -1 : recOf[k]!);
      if (c !== undefined && n < NM && t > t0 && tracked < K && t < tEnd) {
        const tg = tracked++;
        tgH[tg] = 0;
        tgM[tg] = 0;
        fwd.attach(p, tg, 1);
      }
      if (pk.mass(p) >= 0) fwd.arrive(p, n);
      pk.free(p);
    }
  }
  if (!closed) for (let n = 0; n < NN; n++) area[n]! += pool[n]! * (tEnd - Math.max(t0, last[n]!));
  const perLayer: number[] = [];
  for (let l = 1; l <= layers; l++) {
    const ms = mixes.map((_, i) => i).filter((i) => layerOf(i) === l);
    let a = 0;
    let o = 0;
    for (const i of ms) {
      a += area[i]!;
      o += outCount[i]!;
    }
    perLayer.push(o > 0 ? a / o : NaN);
  }
  let aM = 0;
  let oM = 0;
  for (let i = 0; i < NM; i++) {
    aM += area[i]!;
    oM += outCount[i]!;
  }
  const span = tEnd - t0;
  const lats = (testnet?.messages ?? []).filter((m) => m.path === 'overlay' && m.latency_s !== null).map((m) => m.latency_s!);
  const meanDelayMs = testnet?.topology?.mean_delay_per_hop_ms;
  return {
    capture_dir: dir,
    nodes: { clients: clients.length, mixes: NM, gateways: gateways.length, layers },
    frames: { matched: trav.length, unmatched },
    span_s: span,
    warmup_s: warmup,
    rates: { client_pps: clients.length > 0 ? clientSends / span / clients.length : 0, per_mix_pps: NM > 0 ? oM / span / NM : 0 },
    link_latency_s: linkLat / trav.length,
    per_hop_delay_s: { mean: oM > 0 ? aM / oM : NaN, per_layer: perLayer, expected: typeof meanDelayMs === 'number' ? meanDelayMs / 1000 : null },
    entropy: {
      mean: meanOf(entropies),
      median: quantileOf(entropies, 0.5),
      p5: quantileOf(entropies, 0.05),
      p95: quantileOf(entropies, 0.95),
      n: entropies.length,
    },
    sender_entropy: { mean: meanOf(senders), median: quantileOf(senders, 0.5), n: senders.length, max_possible: Math.log2(Math.max(1, clients.length)) },
    latency: {
      messages: lats.length,
      mean: lats.length > 0 ? meanOf(lats) : null,
      p50: lats.length > 0 ? quantileOf(lats, 0.5) : null,
      max: lats.length > 0 ? Math.max(...lats) : null,
    },
    parameters: testnet?.topology ?? null,
  };
}

/**
 * The simulator scenario with the captured network's shape and parameters (as the testnet's
 * topology records them), over the captured span: what `sim analyze --compare` runs next to the
 * capture. The idealised model carries the same packet rates as the real clients' streams. The
 * clients' overlay messages, when the capture records them, run as the postmix model's messages
 * (fragments over the payload stream, ACKed through SURBs), spread over the captured span. The
 * per-hop delay is the one the capture measured (`measured`: real nodes on a loaded host hold
 * packets longer than their headers say) or the document's 1/μ (`configured`).
 */
export function scenarioOfCapture(a: CaptureAnalysis, delays: 'measured' | 'configured' = 'measured', seed = 1): Record<string, unknown> {
  const p = (a.parameters ?? {}) as {
    rates_per_s?: Record<string, number>;
    mean_delay_per_hop_ms?: number;
    payload_bytes?: number;
    workload?: { overlay_messages_per_client?: number; message_bytes?: number };
  };
  const r = p.rates_per_s ?? {};
  if (typeof p.mean_delay_per_hop_ms !== 'number' || r.lambda_p === undefined) throw new Error("the capture has no testnet.json with the run's parameters");
  const duration = Math.max(20, Math.round(a.span_s + a.warmup_s));
  // the real clients' messages (fragments, and an ACK for each back through the mixes) are
  // traffic the mixes mix; a capture without its workload runs the idealised model
  const w = p.workload;
  const workload =
    w && typeof w.overlay_messages_per_client === 'number' && w.overlay_messages_per_client > 0 && typeof w.message_bytes === 'number' && a.span_s > 0
      ? { realRate: w.overlay_messages_per_client / a.span_s, messageBytes: w.message_bytes, payloadSize: p.payload_bytes ?? 2048, acks: true }
      : {};
  return {
    clients: a.nodes.clients,
    layers: a.nodes.layers,
    layerSize: Math.max(1, Math.round(a.nodes.mixes / Math.max(1, a.nodes.layers))),
    gateways: Math.max(1, a.nodes.gateways),
    contacts: 1,
    rate: r.lambda_p,
    loopRate: r.lambda_l ?? 0,
    dropRate: r.lambda_d ?? 0,
    mixLoopRate: r.lambda_m ?? 0,
    meanDelay: delays === 'measured' && Number.isFinite(a.per_hop_delay_s.mean) ? a.per_hop_delay_s.mean : p.mean_delay_per_hop_ms / 1000,
    linkLatency: a.link_latency_s,
    duration,
    warmup: Math.min(a.warmup_s, duration / 4),
    targets: Math.max(10, a.entropy.n),
    seed,
    ...workload,
  };
}
