/**
 * A hop's own loop cover traffic (Loopix §4.2), for a mix and a gateway alike: at the rate of
 * the network document (λ_M for a mix, λ_G for a gateway, as Loopix providers send), the node
 * sends a packet on a loop through the rest of the network and back to itself, so that an
 * observer cannot tell its own traffic from forwarded traffic (for a gateway: from the ACKs it
 * sends), and so that the node notices when its loops stop coming back (an n-1 or blocking
 * attack, a broken neighbour, a partition).
 *
 * Gateway route: layer 1 → … → layer L → this gateway (L + 1 hops).
 * Mix route (stratified, every hop in the order the topology allows): for a mix in layer k of L
 *   layer k+1 → … → layer L → a gateway → layer 1 → … → layer k-1 → this node
 * e.g. layer 1 of 3: L2 → L3 → G → self; layer 3 of 3: G → L1 → L2 → self. That is L + 1
 * hops (needs L + 1 <= the geometry's max hops). Each hop is picked uniformly in its layer,
 * each hop's delay is drawn from Exp(μ) like a client's, and the last hop's Deliver command names
 * this node's loop queue id (`loopQueueId`). The payload is a loop payload (proto/fragment
 * `encodeLoop`) with a random 16-byte id; the node keeps the ids it sent with their send time.
 * A returned id counts as a success; an id not back within the timeout counts as lost. The
 * success ratio is taken over the last `window` finished loops.
 */
import { randomBytes } from 'node:crypto';
import { sha256 } from '@noble/hashes/sha2.js';
import { decodePayload, encodeLoop } from '../../proto/fragment/format.ts';
import { layerOf } from '../../proto/pki/topology.ts';
import { samplePerHopDelayMs, sampleExponential, type Uniform } from '../../proto/mixing/params.ts';
import { uniformInt } from '../../proto/util/random.ts';
import type { DocumentBody, NodeEntry } from '../../proto/pki/index.ts';
import { createPacket, fastestSuite, type Geometry, type RouteHop } from '../../proto/sphinx/index.ts';
import { bytesEqual, hex } from '../../proto/util/bytes.ts';

const LOOP_DOMAIN = new TextEncoder().encode('postmix-mix-loop-v1|');

/** Which hop sends the loops: its route and its rate in the document differ. */
export type LoopRole = 'mix' | 'gateway';

/** The queue id a hop's own loop packets are delivered to (at the hop itself). */
export function loopQueueId(nodeId: Uint8Array): Uint8Array {
  const b = new Uint8Array(LOOP_DOMAIN.length + nodeId.length);
  b.set(LOOP_DOMAIN);
  b.set(nodeId, LOOP_DOMAIN.length);
  return sha256(b);
}

/** The loop route for this node in a document, or a reason why there is none. */
export function loopRoute(body: DocumentBody, self: NodeEntry, pick: (n: number) => number): NodeEntry[] | string {
  const L = body.layers.length;
  const k = layerOf(body, self.nodeId);
  if (k === 0) return 'this node is not in the document';
  if (body.gateways.length === 0) return 'the document lists no gateway';
  if (L + 1 > body.geometry.maxHops) return `a loop needs ${L + 1} hops, the geometry allows ${body.geometry.maxHops}`;
  const hops: NodeEntry[] = [];
  const from = (list: readonly NodeEntry[]): NodeEntry | undefined => (list.length === 0 ? undefined : list[pick(list.length)]);
  for (let l = k + 1; l <= L; l++) {
    const n = from(body.layers[l - 1]!);
    if (!n) return `layer ${l} is empty`;
    hops.push(n);
  }
  hops.push(from(body.gateways)!);
  for (let l = 1; l < k; l++) {
    const n = from(body.layers[l - 1]!);
    if (!n) return `layer ${l} is empty`;
    hops.push(n);
  }
  hops.push(self);
  return hops;
}

/** The loop route for a gateway: one node per layer in order, then back to the gateway. */
export function gatewayLoopRoute(body: DocumentBody, self: NodeEntry, pick: (n: number) => number): NodeEntry[] | string {
  const L = body.layers.length;
  if (L + 1 > body.geometry.maxHops) return `a loop needs ${L + 1} hops, the geometry allows ${body.geometry.maxHops}`;
  const hops: NodeEntry[] = [];
  for (let l = 1; l <= L; l++) {
    const layer = body.layers[l - 1]!;
    if (layer.length === 0) return `layer ${l} is empty`;
    hops.push(layer[pick(layer.length)]!);
  }
  hops.push(self);
  return hops;
}

/** This node's entry and loop route in a document, or why there is none. */
function routeFor(role: LoopRole, body: DocumentBody, nodeId: Uint8Array, pick: (n: number) => number): NodeEntry[] | string {
  const self = (role === 'mix' ? body.layers.flat() : body.gateways).find((n) => bytesEqual(n.nodeId, nodeId));
  if (!self) return 'this node is not in the document';
  return role === 'mix' ? loopRoute(body, self, pick) : gatewayLoopRoute(body, self, pick);
}

export interface LoopStats {
  sent: number;
  returned: number;
  lost: number;
  /** Loop packets that could not be built or sent (no route, link refused). */
  failed: number;
  /** Returned loop ids we did not send or that already timed out. */
  unknown: number;
}

export interface LoopLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface LoopCoverOptions {
  readonly nodeId: Uint8Array;
  /** 'mix' (default): λ_M and the mix route; 'gateway': λ_G and the gateway route. */
  readonly role?: LoopRole;
  /** The document as of now (each node under its key for this epoch; undefined: none yet). */
  readonly document: () => DocumentBody | undefined;
  /** Sends a built packet to the first hop; false if the link refused it. */
  readonly send: (first: NodeEntry, packet: Uint8Array) => boolean;
  /** 0: automatic (max(10 s, 10 × expected loop delay)). */
  readonly timeoutS: number;
  readonly window: number;
  readonly alertRatio: number;
  readonly minSamples: number;
  readonly log: LoopLogger;
  readonly onRoundTrip?: (seconds: number) => void;
  /** Loop routes, delays and send times are drawn from this (`csprngUniform` in the daemon). */
  readonly uniform: Uniform;
  /** Monotonic ms. */
  readonly now?: () => number;
}

export class LoopCover {
  readonly stats: LoopStats = { sent: 0, returned: 0, lost: 0, failed: 0, unknown: 0 };
  readonly queueId: Uint8Array;
  /** loop id (hex) → send time and deadline (monotonic ms) */
  private readonly pending = new Map<string, { sentAt: number; deadline: number }>();
  /** The last `window` finished loops: true = returned. */
  private readonly recent: boolean[] = [];
  private recentOk = 0;
  private alerting = false;
  private timer: NodeJS.Timeout | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private lastNoRoute = '';
  private readonly now: () => number;
  private readonly random: Uniform;
  static readonly MAX_PENDING = 100_000;

  constructor(private readonly o: LoopCoverOptions) {
    this.queueId = loopQueueId(o.nodeId);
    this.now = o.now ?? (() => performance.now());
    this.random = o.uniform;
  }

  start(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => this.sweep(), 500);
    this.sweeper.unref();
    this.schedule();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.sweeper) clearInterval(this.sweeper);
    this.timer = null;
    this.sweeper = null;
  }

  /** Loops sent and not yet returned or timed out. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Success ratio over the last `window` finished loops (NaN before any finished). */
  get ratio(): number {
    return this.recent.length === 0 ? NaN : this.recentOk / this.recent.length;
  }

  private schedule(): void {
    const m = this.o.document()?.mixing;
    const rate = (this.o.role === 'gateway' ? m?.lambdaG : m?.lambdaM) ?? 0;
    // with no document (or λ_M = 0) look again in a second
    const waitMs = rate > 0 ? sampleExponential(rate, this.random) * 1000 : 1000;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        if (rate > 0) this.emit();
        if (this.sweeper) this.schedule();
      },
      Math.min(waitMs, 2 ** 31 - 1),
    );
    this.timer.unref();
  }

  /** Builds and sends one loop packet now; returns false if none could be sent. */
  emit(): boolean {
    const body = this.o.document();
    if (!body) return false;
    const route = routeFor(this.o.role ?? 'mix', body, this.o.nodeId, (n) => uniformInt(n, this.random));
    if (typeof route === 'string') {
      this.stats.failed++;
      if (route !== this.lastNoRoute) this.o.log.warn({ reason: route }, 'loop cover: no loop route');
      this.lastNoRoute = route;
      return false;
    }
    this.lastNoRoute = '';
    const geometry: Geometry = body.geometry;
    const hops: RouteHop[] = route.map((n) => ({ nodeId: n.nodeId, publicKey: n.sphinxKey, delayMs: samplePerHopDelayMs(body.mixing.mu, this.random) }));
    const loopId = new Uint8Array(randomBytes(16));
    let packet: Uint8Array;
    try {
      packet = createPacket(fastestSuite, geometry, {
        route: hops,
        terminal: { kind: 'deliver', queueId: this.queueId },
        payload: encodeLoop(loopId),
        keyEpoch: body.epoch,
      }).packet;
    } catch (e) {
      this.stats.failed++;
      this.o.log.warn({ err: (e as Error).message }, 'loop cover: cannot build a loop packet');
      return false;
    }
    if (!this.o.send(route[0]!, packet)) {
      this.stats.failed++;
      return false;
    }
    if (this.pending.size >= LoopCover.MAX_PENDING) this.expireOldest();
    const now = this.now();
    const expectedS = hops.length / body.mixing.mu;
    const timeoutS = this.o.timeoutS > 0 ? this.o.timeoutS : Math.max(10, 10 * expectedS);
    this.pending.set(hex(loopId), { sentAt: now, deadline: now + timeoutS * 1000 });
    this.stats.sent++;
    return true;
  }

  /** A final-hop packet for our loop queue arrived: is it one of ours? */
  onReturn(payload: Uint8Array): boolean {
    const d = decodePayload(payload);
    if (!d.ok || d.kind !== 'loop') {
      this.stats.unknown++;
      return false;
    }
    const id = hex(d.loopId);
    const p = this.pending.get(id);
    if (!p) {
      this.stats.unknown++;
      return false;
    }
    this.pending.delete(id);
    this.stats.returned++;
    this.o.onRoundTrip?.((this.now() - p.sentAt) / 1000);
    this.finish(true);
    return true;
  }

  /** Counts loops past their deadline as lost. */
  sweep(now: number = this.now()): number {
    let n = 0;
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(id);
      this.stats.lost++;
      n++;
      this.finish(false);
    }
    return n;
  }

  private expireOldest(): void {
    const first = this.pending.keys().next();
    if (first.done) return;
    this.pending.delete(first.value);
    this.stats.lost++;
    this.finish(false);
  }

  private finish(ok: boolean): void {
    this.recent.push(ok);
    if (ok) this.recentOk++;
    while (this.recent.length > this.o.window) if (this.recent.shift()) this.recentOk--;
    if (this.recent.length < this.o.minSamples) return;
    const r = this.ratio;
    if (!this.alerting && r < this.o.alertRatio) {
      this.alerting = true;
      this.o.log.warn(
        { ratio: r, window: this.recent.length, returned: this.stats.returned, lost: this.stats.lost },
        'loop cover: loops are not coming back (blocking or n-1 attack, broken neighbour, or partition?)',
      );
    } else if (this.alerting && r >= this.o.alertRatio) {
      this.alerting = false;
      this.o.log.info({ ratio: r, window: this.recent.length }, 'loop cover: loops are coming back again');
    }
  }
}
