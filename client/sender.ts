/**
 * Overlay sending. The pure core builds routes and packets; the `Sender` scheduler runs the
 * Loopix streams of one client over the outbox:
 *
 * - the payload stream, Poisson at λ_P: at each tick the next due fragment goes out, or a decoy
 *   when none is due (`payloadTick`), so the rate does not say whether the user is sending. A
 *   decoy goes to a random gateway's mail queue with a SURB, and that gateway answers it as it
 *   answers a fragment, so every tick brings one reply back to the mailbox, real or not;
 * - loop cover at λ_L: layer 1 → … → layer L → the home gateway, into the client's mailbox, as a
 *   reply through a SURB the client made for itself: there it is stored and framed exactly as an
 *   ACK is (docs/spec/mailbox.md: one kind of mailbox item);
 * - drop cover at λ_D: a random route ending in a Drop command.
 *
 * So what the home gateway stores for the client is one SURB reply per payload tick and per loop,
 * of one size, whether the user sends mail or not; the client tells an ACK from a cover reply
 * only once it has opened the reply with its SURB keys (`onMailboxItem`).
 *
 * Each fragment carries the token and a fresh SURB (layer 1 → … → layer L → home gateway →
 * mailbox) for its ACK. An un-ACKed fragment is due again after a randomised exponential
 * backoff over the expected delay of both routes (proto/mixing/retransmit.ts) and is resent on
 * a fresh route with a fresh SURB; after `maxAttempts` sends the recipient bounces. A final
 * refusal ACK (TokenRefused, UnknownRecipient, TooLarge, Inconsistent) bounces at once.
 *
 * Which mixes to avoid (RouteHealth) is learnt from the client's own loop cover only: a loop
 * that comes back clears its nodes, one that does not within its timeout blames them. ACKs, or
 * their absence, never change route choice: the recipient's gateway decides whether an ACK is
 * sent, and if a missing ACK made the client avoid mixes, the gateway could withhold the ACKs of
 * one message and watch which client's first hops change (docs/threat-model.md).
 *
 * Every stream's next packet is built **ahead of its slot** (`prepare`, after each step): the
 * next real fragment's packet with its route and SURB, its outbox row (prepared, the SURB's
 * keys) committed and fsynced before it may leave, and the cover packets alike (decoy, loop,
 * drop). At a slot the scheduler only hands a packet it holds to the link, whatever its kind,
 * so the time from the timer firing to the write on the link does not say whether the packet
 * is real (it did: the real one was built and its in-flight record fsynced inside the slot). A
 * packet is built under the document its slot falls in (the next epoch's keys when the slot is
 * past the boundary); one whose document is no longer the slot's is not sent: cover is built
 * again there and then (counted, `builtInSlot`), a real one gives its slot to cover and is
 * built again after it. (docs/threat-model.md, test/adversary-slot-timing.test.ts.)
 *
 * The scheduler is driven by `step(now)`: the daemon calls it from a timer, tests with a fake
 * clock. All randomness comes from injected sources (the daemon's are CSPRNGs), so a seeded
 * test run is reproducible.
 */
import type { DocumentBody, NodeEntry } from '../proto/pki/codec.ts';
import { AckStatus, ackIsFinalRefusal, decodePayload, encodeDecoy, encodeFragment, encodeLoop, splitMessage } from '../proto/fragment/index.ts';
import { MAIL_QUEUE_ID, type MailboxItem } from '../proto/mailbox/index.ts';
import { payloadTick, sampleExponential, samplePerHopDelayMs, type MixingParams, type Uniform } from '../proto/mixing/params.ts';
import { ackTimeoutBaseMs, retransmitDelayMs, DEFAULT_RETRANSMIT, type RetransmitPolicy } from '../proto/mixing/retransmit.ts';
import {
  SURB_ID_LENGTH,
  createPacket,
  createSurb,
  decodeSurbKeys,
  encodeSurbKeys,
  openSurbReply,
  packetFromSurb,
  packetSizes,
  type Geometry,
  type RouteHop,
  type SphinxSuite,
  type SurbKeys,
} from '../proto/sphinx/index.ts';
import { uniformInt } from '../proto/util/random.ts';
import type { Outbox, FragmentRow, RecipientRow, SentRecord } from './outbox.ts';
import { RouteHealth } from './route-health.ts';
import { bytesEqual, hex } from '../proto/util/bytes.ts';

// ---------------------------------------------------------------------------------------------
// pure core

/** Picks one node of `layer` (uniformly: the document carries no weights yet). */
export function pickNode(layer: readonly NodeEntry[], uniform: Uniform): NodeEntry {
  if (layer.length === 0) throw new Error('a mix layer is empty');
  return layer[uniformInt(layer.length, uniform)]!;
}

function hop(n: NodeEntry, mu: number, uniform: Uniform): RouteHop {
  return { nodeId: n.nodeId, publicKey: n.sphinxKey, delayMs: samplePerHopDelayMs(mu, uniform) };
}

/**
 * One random node per layer, then `last`; every hop's delay drawn from Exp(μ). With `health`,
 * nodes that recently lost packets are left out while their layer has others.
 */
export function chooseRoute(doc: DocumentBody, last: NodeEntry, uniform: Uniform, health?: RouteHealth): RouteHop[] {
  const route = doc.layers.map((l) => hop(pickNode(health ? health.usable(l) : l, uniform), doc.mixing.mu, uniform));
  route.push(hop(last, doc.mixing.mu, uniform));
  return route;
}

/** What an overlay recipient's fragments look like under a geometry. */
export interface OverlayPlan {
  readonly payloadSize: number;
  readonly surbLength: number;
  readonly fragmentCount: number;
}

export function planOverlay(raw: Uint8Array, recipient: string, token: Uint8Array, geom: Geometry): OverlayPlan {
  const surbLength = packetSizes(geom).surb;
  const parts = splitMessage({ message: raw, payloadSize: geom.payloadSize, recipient, token, surbLength });
  return { payloadSize: geom.payloadSize, surbLength, fragmentCount: parts.length };
}

export interface FragmentPacketInput {
  readonly suite: SphinxSuite;
  readonly doc: DocumentBody;
  readonly gateway: NodeEntry;
  readonly home: NodeEntry;
  readonly mailboxId: Uint8Array;
  readonly wireId: Uint8Array;
  readonly recipient: string;
  readonly token: Uint8Array;
  readonly index: number;
  readonly count: number;
  readonly totalLength: number;
  readonly data: Uint8Array;
  readonly uniform: Uniform;
  readonly surbId: Uint8Array;
  readonly health?: RouteHealth;
}

export interface BuiltFragmentPacket {
  readonly firstHop: Uint8Array;
  readonly packet: Uint8Array;
  readonly surbKeys: Uint8Array;
  readonly forwardHops: number;
  readonly replyHops: number;
  /** The forward route's node ids (for tests and logs at debug level). */
  readonly route: readonly Uint8Array[];
  /** The SURB's reply route's node ids. */
  readonly replyRoute: readonly Uint8Array[];
}

/** A fragment of one recipient's message, with a fresh SURB, in a packet on a fresh route. */
export function buildFragmentPacket(i: FragmentPacketInput): BuiltFragmentPacket {
  const geom = i.doc.geometry;
  const replyRoute = chooseRoute(i.doc, i.home, i.uniform, i.health);
  const { surb, keys } = createSurb(i.suite, geom, { route: replyRoute, queueId: i.mailboxId, surbId: i.surbId, keyEpoch: i.doc.epoch });
  const payload = encodeFragment(
    {
      messageId: i.wireId,
      index: i.index,
      count: i.count,
      totalLength: i.totalLength,
      recipient: i.recipient,
      token: i.token,
      surb,
      data: i.data,
    },
    geom.payloadSize,
  );
  const route = chooseRoute(i.doc, i.gateway, i.uniform, i.health);
  const p = createPacket(i.suite, geom, { route, terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID }, payload, keyEpoch: i.doc.epoch });
  return {
    firstHop: p.firstHop,
    packet: p.packet,
    surbKeys: encodeSurbKeys(keys),
    forwardHops: route.length,
    replyHops: replyRoute.length,
    route: route.map((h) => h.nodeId),
    replyRoute: replyRoute.map((h) => h.nodeId),
  };
}

/**
 * Loop cover: through every layer to the home gateway, into our own mailbox, built as a reply
 * through a SURB of our own (the route an ACK's SURB takes, the loop id as its payload), so the
 * home gateway receives it as it receives an ACK: a SURB reply, one kind of mailbox item. Cover
 * routes avoid the same suspect mixes real ones do, so the kinds stay alike on the wire.
 */
export function buildLoopPacket(
  suite: SphinxSuite,
  doc: DocumentBody,
  home: NodeEntry,
  mailboxId: Uint8Array,
  loopId: Uint8Array,
  surbId: Uint8Array,
  uniform: Uniform,
  health?: RouteHealth,
): { firstHop: Uint8Array; packet: Uint8Array; keys: SurbKeys; route: Uint8Array[] } {
  const route = chooseRoute(doc, home, uniform, health);
  const { surb, keys } = createSurb(suite, doc.geometry, { route, queueId: mailboxId, surbId, keyEpoch: doc.epoch });
  const p = packetFromSurb(suite, doc.geometry, surb, encodeLoop(loopId));
  if (!p.ok) throw new Error(`loop packet: ${p.reason}`);
  return { firstHop: p.firstHop, packet: p.packet, keys, route: route.map((h) => h.nodeId) };
}

/**
 * A decoy, the payload stream's cover: to a random gateway's mail queue, carrying a SURB (the
 * reply route of a fragment's ACK) that the gateway answers, as it answers a fragment, with the
 * loop payload of `id`. Forward and reply routes are chosen as a fragment's are.
 */
export function buildDecoyPacket(
  suite: SphinxSuite,
  doc: DocumentBody,
  home: NodeEntry,
  mailboxId: Uint8Array,
  id: Uint8Array,
  surbId: Uint8Array,
  uniform: Uniform,
  health?: RouteHealth,
): { firstHop: Uint8Array; packet: Uint8Array; keys: SurbKeys; forwardHops: number; replyHops: number } {
  const geom = doc.geometry;
  const replyRoute = chooseRoute(doc, home, uniform, health);
  const { surb, keys } = createSurb(suite, geom, { route: replyRoute, queueId: mailboxId, surbId, keyEpoch: doc.epoch });
  const route = chooseRoute(doc, pickNode(doc.gateways, uniform), uniform, health);
  const payload = encodeDecoy({ id, surb }, geom.payloadSize);
  const p = createPacket(suite, geom, { route, terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID }, payload, keyEpoch: doc.epoch });
  return { firstHop: p.firstHop, packet: p.packet, keys, forwardHops: route.length, replyHops: replyRoute.length };
}

/** Drop cover: through every layer to a random gateway, which discards it. */
export function buildDropPacket(suite: SphinxSuite, doc: DocumentBody, uniform: Uniform, health?: RouteHealth) {
  const gw = pickNode(doc.gateways, uniform);
  const route = chooseRoute(doc, gw, uniform, health);
  return createPacket(suite, doc.geometry, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(0), keyEpoch: doc.epoch });
}

// ---------------------------------------------------------------------------------------------
// the scheduler

export interface PacketSink {
  /** Hands a packet to the link for the layer-1 node `firstHop`. */
  send(firstHop: Uint8Array, packet: Uint8Array): void;
}

export interface SenderStats {
  real: number;
  resent: number;
  /** drop cover (the λ_D stream) */
  drop: number;
  /** decoys: the payload stream's cover, each answered through its SURB by the gateway it reaches */
  decoy: number;
  loop: number;
  loopsReturned: number;
  /** loops not back within their timeout (they blame their nodes in RouteHealth) */
  loopsLost: number;
  decoysReturned: number;
  /** decoys whose reply did not come back in time (counted only: route health learns from loops) */
  decoysLost: number;
  acks: number;
  badReplies: number;
  bounced: number;
  /** times the scheduler woke more than `maxLateMs` late (a stall, a suspend) and resampled its streams */
  gaps: number;
  /**
   * cover packets built inside their slot, because none built ahead was usable there (the
   * first slot of a stream, a document that changed since, a second event in one step)
   */
  builtInSlot: number;
  /** real packets built ahead that did not leave (their document was not their slot's, their recipient stopped) */
  unprepared: number;
}

export interface BounceNotice {
  readonly messageId: string;
  readonly recipient: RecipientRow;
  readonly reason: string;
}

export interface SenderOptions {
  readonly outbox: Outbox;
  readonly suite: SphinxSuite;
  readonly sink: PacketSink;
  /**
   * The network document as of now, or as of `aheadMs` from now (for a packet built ahead of its
   * slot): each node under its Sphinx key for that time's epoch, `epoch` the epoch of those keys
   * (proto/pki/validity.ts documentAt). Null while none is usable: nothing is sent, no attempt is
   * spent and nothing bounces until one is.
   */
  readonly document: (aheadMs?: number) => DocumentBody | null;
  /** The client's home gateway (its mailbox), from the document (as of `aheadMs` from now). */
  readonly home: (aheadMs?: number) => NodeEntry | null;
  readonly mailboxId: Uint8Array;
  readonly uniform: Uniform;
  readonly random: (n: number) => Uint8Array;
  readonly maxAttempts?: number;
  /** When to resend an un-ACKed fragment, and when a loop counts as lost. */
  readonly timeout?: RetransmitPolicy;
  /** Back-off when the gateway answers RateLimited, ms. */
  readonly rateLimitBackoffMs?: number;
  /** Emit cover traffic (loop/drop, and drop in place of real packets). Default true. */
  readonly cover?: boolean;
  /**
   * A stream event more than this late (ms) is not emitted: its stream restarts from `now`.
   * Default 1000, the daemon's longest sleep, so only a stall or a suspend is that late.
   */
  readonly maxLateMs?: number;
  readonly onBounce?: (b: BounceNotice) => void;
  readonly onDelivered?: (messageId: string, recipient: string) => void;
  readonly log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

interface Streams {
  payload: number;
  loop: number;
  drop: number;
}

/** A loop or decoy waiting for its reply. */
interface PendingCover {
  /** The id its reply must carry (a loop payload). */
  readonly id: Uint8Array;
  readonly keys: SurbKeys;
  readonly deadline: number;
}

/** Bound on each kind of cover waiting for its reply (the oldest counts as lost beyond it). */
const MAX_PENDING_COVER = 10_000;

/** A packet built ahead of its slot, under `doc`. */
interface Ready {
  readonly firstHop: Uint8Array;
  readonly packet: Uint8Array;
  readonly doc: DocumentBody;
}

/** A real fragment's packet built ahead; it may leave once its outbox row is on disk (`durable`). */
interface ReadyReal extends Ready {
  readonly f: FragmentRow;
  readonly surbId: Uint8Array;
  /** the resend wait after it leaves, ms (drawn when it was built) */
  readonly waitMs: number;
  durable: boolean;
  /** the fsync failed, or it will not leave: forget it (`settle`) */
  dead: boolean;
}

/** A loop or decoy built ahead: what its reply must carry, through which SURB, within how long. */
interface ReadyCover extends Ready {
  readonly id: Uint8Array;
  readonly surbId: Uint8Array;
  readonly keys: SurbKeys;
  readonly timeoutMs: number;
}

interface ReadyLoop extends ReadyCover {
  readonly route: readonly Uint8Array[];
}

/**
 * Whether a packet built under `built` may leave under `now`, the slot's document: the same
 * document (by identity, or, for a view derived from one held document for a later epoch, the
 * same epoch, start and predecessor, hence the same source), so its keys are the epoch's.
 */
function sameDocument(built: DocumentBody, now: DocumentBody): boolean {
  return built === now || (built.epoch === now.epoch && built.validAfter === now.validAfter && bytesEqual(built.previousDigest, now.previousDigest));
}

/** Next event time after `now` for a Poisson process of rate `lambda` per second (ms; Infinity when 0). */
export function nextPoisson(now: number, lambda: number, uniform: Uniform): number {
  const s = sampleExponential(lambda, uniform);
  return Number.isFinite(s) ? now + s * 1000 : Infinity;
}

export class Sender {
  readonly stats: SenderStats = {
    real: 0,
    resent: 0,
    drop: 0,
    decoy: 0,
    loop: 0,
    loopsReturned: 0,
    loopsLost: 0,
    decoysReturned: 0,
    decoysLost: 0,
    acks: 0,
    badReplies: 0,
    bounced: 0,
    gaps: 0,
    builtInSlot: 0,
    unprepared: 0,
  };
  private next: Streams | null = null;
  /** Each stream's next packet, built ahead of its slot (`prepare`); the payload stream's cover is a decoy. */
  private readonly ready: { real: ReadyReal | null; decoy: ReadyCover | null; loop: ReadyLoop | null; drop: Ready | null } = {
    real: null,
    decoy: null,
    loop: null,
    drop: null,
  };
  /** Real packets that left in this step, recorded in flight after it (`settle`). */
  private sentReal: { r: ReadyReal; at: number }[] = [];
  private mixing: MixingParams | null = null;
  private readonly cache = new Map<string, Uint8Array[]>();
  /**
   * Cover waiting for its reply, by SURB id (hex): the loop or decoy id the reply must carry, the
   * SURB's keys (in memory: after a restart a late reply just fails to open), when it counts as
   * lost (ms). Insertion order is send order; one map per kind, as their timeouts differ.
   */
  private readonly pendingLoops = new Map<string, PendingCover>();
  private readonly pendingDecoys = new Map<string, PendingCover>();
  private readonly maxAttempts: number;
  private readonly timeout: RetransmitPolicy;
  /** Mixes that lost our loops lately (see RouteHealth); learnt from loops only. */
  readonly health = new RouteHealth();

  constructor(private readonly o: SenderOptions) {
    this.maxAttempts = o.maxAttempts ?? 5;
    this.timeout = o.timeout ?? DEFAULT_RETRANSMIT;
    // packets an earlier run prepared: each may have left or not; built again (outbox.ts)
    const left = o.outbox.recoverPrepared();
    if (left.length > 0)
      o.log?.info({ fragments: left.length }, 'fragments prepared before the restart are sent again (a copy that left is answered Duplicate)');
  }

  /** When the next stream event is due (ms), or Infinity. */
  nextEventAt(): number {
    if (!this.next) return Infinity;
    return Math.min(this.next.payload, this.next.loop, this.next.drop);
  }

  private schedule(now: number, doc: DocumentBody): void {
    const m = doc.mixing;
    const u = this.o.uniform;
    if (!this.next || !this.mixing || JSON.stringify(this.mixing) !== JSON.stringify(m)) {
      this.mixing = m;
      const cover = this.o.cover ?? true;
      this.next = {
        payload: nextPoisson(now, m.lambdaP, u),
        loop: cover ? nextPoisson(now, m.lambdaL, u) : Infinity,
        drop: cover ? nextPoisson(now, m.lambdaD, u) : Infinity,
      };
    }
  }

  /**
   * After a gap (the process stalled or the machine slept: an event more than `maxLateMs`
   * overdue), restarts every overdue stream from `now` instead of emitting what was missed at
   * once: a burst of packets on the client's link, which an observer sees, and says when the
   * client was away. A Poisson stream is memoryless, so a stream restarted at `now` is what an
   * observer expects after a silence; nothing real is lost (fragments wait in the outbox).
   */
  private resampleAfterGap(now: number, n: Streams, m: MixingParams): void {
    if (!(Math.min(n.payload, n.loop, n.drop) < now - (this.o.maxLateMs ?? 1000))) return;
    // every overdue stream restarts, not only the very late ones: what fell due during the
    // last second of the gap would otherwise still leave at this one instant
    const u = this.o.uniform;
    if (n.payload <= now) n.payload = nextPoisson(now, m.lambdaP, u);
    if (n.loop <= now) n.loop = nextPoisson(now, m.lambdaL, u);
    if (n.drop <= now) n.drop = nextPoisson(now, m.lambdaD, u);
    this.stats.gaps++;
  }

  /**
   * Runs every stream event due at or before `now`, in time order (after a gap, see
   * `resampleAfterGap`). Returns how many packets went out. With no document (or no home
   * gateway) nothing can be built; streams restart when one arrives.
   */
  step(now: number): number {
    const doc = this.o.document();
    const home = this.o.home();
    if (!doc || !home) {
      this.next = null;
      return 0;
    }
    this.schedule(now, doc);
    this.health.tick(now);
    this.expireLoops(now);
    const n = this.next!;
    const m = doc.mixing;
    this.resampleAfterGap(now, n, m);
    const u = this.o.uniform;
    let sent = 0;
    // at a slot: take the packet built ahead, hand it to the link; nothing else
    for (let guard = 0; guard < 100_000; guard++) {
      const t = Math.min(n.payload, n.loop, n.drop);
      if (!(t <= now)) break;
      if (t === n.payload) {
        n.payload = nextPoisson(t, m.lambdaP, u);
        if (this.sendPayload(t, doc, home)) sent++;
      } else if (t === n.loop) {
        n.loop = nextPoisson(t, m.lambdaL, u);
        if (this.sendLoop(t, doc, home)) sent++;
      } else {
        n.drop = nextPoisson(t, m.lambdaD, u);
        if (this.sendDrop(doc)) sent++;
      }
    }
    this.settle(now);
    return sent;
  }

  /**
   * The payload stream's slot: the real packet built ahead if it is on disk and its document is
   * the slot's, else a decoy (built ahead too), so real and cover take this one path.
   */
  private sendPayload(t: number, doc: DocumentBody, home: NodeEntry): boolean {
    const r = this.ready.real;
    if (r && r.durable && !r.dead) {
      this.ready.real = null;
      if (sameDocument(r.doc, doc)) {
        // recorded before the send, so a sink that throws cannot leave the fragment prepared for ever
        this.sentReal.push({ r, at: t });
        this.o.sink.send(r.firstHop, r.packet);
        this.stats.real++;
        if (r.f.attempts > 0) this.stats.resent++;
        return true;
      }
      // built under keys that are not the slot's: it gives the slot to cover and is built again
      r.dead = true;
      this.ready.real = r;
    }
    return (this.o.cover ?? true) && payloadTick(0) === 'decoy' && this.sendDecoy(t, doc, home);
  }

  /** The payload stream's cover: a decoy, whose reply comes back as an ACK's would. */
  private sendDecoy(t: number, doc: DocumentBody, home: NodeEntry): boolean {
    let p = this.ready.decoy;
    this.ready.decoy = null;
    if (!p || !sameDocument(p.doc, doc)) {
      p = this.buildDecoy(doc, home);
      if (!p) return false;
      this.stats.builtInSlot++;
    }
    this.o.sink.send(p.firstHop, p.packet);
    if (this.pendingDecoys.size >= MAX_PENDING_COVER) this.coverLost(this.pendingDecoys, this.pendingDecoys.keys().next().value!);
    this.pendingDecoys.set(hex(p.surbId), { id: p.id, keys: p.keys, deadline: t + p.timeoutMs });
    this.stats.decoy++;
    return true;
  }

  /** A drop-cover slot (the λ_D stream). */
  private sendDrop(doc: DocumentBody): boolean {
    let p = this.ready.drop;
    this.ready.drop = null;
    if (!p || !sameDocument(p.doc, doc)) {
      p = this.buildDrop(doc);
      if (!p) return false;
      this.stats.builtInSlot++;
    }
    this.o.sink.send(p.firstHop, p.packet);
    this.stats.drop++;
    return true;
  }

  private sendLoop(t: number, doc: DocumentBody, home: NodeEntry): boolean {
    let p = this.ready.loop;
    this.ready.loop = null;
    if (!p || !sameDocument(p.doc, doc)) {
      p = this.buildLoop(doc, home);
      this.stats.builtInSlot++;
    }
    this.o.sink.send(p.firstHop, p.packet);
    this.health.sent(p.id, p.route);
    if (this.pendingLoops.size >= MAX_PENDING_COVER) this.coverLost(this.pendingLoops, this.pendingLoops.keys().next().value!);
    this.pendingLoops.set(hex(p.surbId), { id: p.id, keys: p.keys, deadline: t + p.timeoutMs });
    this.stats.loop++;
    return true;
  }

  /** The real packets that left in this step, as in-flight records with their ACK deadlines. */
  private sentRecords(): SentRecord[] {
    return this.sentReal.map(({ r, at }) => ({ messageId: r.f.messageId, address: r.f.address, index: r.f.index, surbId: r.surbId, deadline: at + r.waitMs }));
  }

  /**
   * After the slots: forgets a real packet that will not leave, builds every stream's next
   * packet, and records the real packets that left in flight (in the next real packet's commit
   * when there is one; not waited for, see Outbox.markSent). What a commit that failed (the
   * database busy) did not record stays for the next step.
   */
  private settle(now: number): void {
    this.dropReal((r) => r.dead);
    this.prepare(now);
    if (this.sentReal.length > 0) {
      this.o.outbox.markSent(this.sentRecords());
      this.sentReal = [];
    }
  }

  /** Forgets the real packet built ahead when `match` says so (it will not leave). */
  private dropReal(match: (r: ReadyReal) => boolean): void {
    const r = this.ready.real;
    if (!r || !match(r)) return;
    this.o.outbox.unprepare(r.f.messageId, r.f.address, r.f.index, r.surbId);
    this.ready.real = null;
    this.stats.unprepared++;
  }

  /**
   * Builds each stream's next packet for its next slot, under the document of that slot's time
   * (the next epoch's keys when the slot is past the boundary): the cover packets, and the next
   * due fragment's, whose outbox row is committed now and fsynced before it may leave.
   */
  private prepare(now: number): void {
    const n = this.next;
    if (!n) return;
    const cover = this.o.cover ?? true;
    const at = (slot: number) => this.o.document(Math.max(0, slot - now));
    if (cover && !this.ready.decoy && Number.isFinite(n.payload)) {
      const d = at(n.payload);
      const h = d && this.o.home(Math.max(0, n.payload - now));
      this.ready.decoy = d && h ? this.buildDecoy(d, h) : null;
    }
    if (!this.ready.loop && Number.isFinite(n.loop)) {
      const d = at(n.loop);
      const h = d && this.o.home(Math.max(0, n.loop - now));
      this.ready.loop = d && h ? this.buildLoop(d, h) : null;
    }
    if (!this.ready.drop && Number.isFinite(n.drop)) {
      const d = at(n.drop);
      this.ready.drop = d && this.buildDrop(d);
    }
    if (!this.ready.real && Number.isFinite(n.payload)) {
      const d = at(n.payload);
      const h = d && this.o.home(Math.max(0, n.payload - now));
      if (d && h) this.prepareReal(now, d, h);
    }
  }

  private fragmentsOf(r: RecipientRow): Uint8Array[] {
    const key = `${r.messageId}/${r.address}`;
    let parts = this.cache.get(key);
    if (!parts) {
      const raw = this.o.outbox.raw(r.messageId);
      parts = splitMessage({ message: raw, payloadSize: r.payloadSize, recipient: r.address, token: r.token ?? new Uint8Array(0), surbLength: r.surbLength });
      if (this.cache.size >= 8) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(key, parts);
    }
    return parts;
  }

  private bounce(r: RecipientRow, reason: string): void {
    const changed = this.o.outbox.markBounced(r.messageId, r.address, reason);
    // markBounced forgot its prepared rows and SURBs; the packet built ahead must not leave either
    const x = this.ready.real;
    if (x && x.f.messageId === r.messageId && x.f.address === r.address) this.ready.real = null;
    if (!changed) return;
    this.stats.bounced++;
    this.cache.delete(`${r.messageId}/${r.address}`);
    this.o.log?.warn({ message: r.messageId, recipient: r.address, reason }, 'bounced');
    this.o.onBounce?.({ messageId: r.messageId, recipient: { ...r, state: 'bounced', error: reason }, reason });
  }

  /** Builds the next due fragment's packet ahead of its slot and records it prepared (durably before it may leave). */
  private prepareReal(now: number, doc: DocumentBody, home: NodeEntry): void {
    const ob = this.o.outbox;
    for (let guard = 0; guard < 1000; guard++) {
      const f: FragmentRow | undefined = ob.nextDueFragment(now);
      if (!f) return;
      const r = ob.recipient(f.messageId, f.address)!;
      if (f.attempts >= this.maxAttempts) {
        this.bounce(r, `no ACK from the gateway for ${r.domain} after ${f.attempts} attempts (fragment ${f.index + 1} of ${r.fragmentCount})`);
        continue;
      }
      const gw = doc.gateways.find((g) => g.gateway?.domains.includes(r.domain ?? ''));
      if (!gw) {
        this.bounce(r, `the network document (epoch ${doc.epoch}) no longer lists a gateway for ${r.domain}`);
        continue;
      }
      if (doc.geometry.payloadSize !== r.payloadSize || packetSizes(doc.geometry).surb !== r.surbLength) {
        this.bounce(r, `the network's packet geometry changed since the message was accepted; please send it again`);
        continue;
      }
      const parts = this.fragmentsOf(r);
      const surbId = this.o.random(SURB_ID_LENGTH);
      const built = buildFragmentPacket({
        suite: this.o.suite,
        doc,
        gateway: gw,
        home,
        mailboxId: this.o.mailboxId,
        wireId: r.wireId,
        recipient: r.address,
        token: r.token ?? new Uint8Array(0),
        index: f.index,
        count: r.fragmentCount,
        totalLength: parts.reduce((a, p) => a + p.length, 0),
        data: parts[f.index]!,
        uniform: this.o.uniform,
        surbId,
        health: this.health,
      });
      const base = ackTimeoutBaseMs(built.forwardHops, built.replyHops, doc.mixing.mu, this.timeout);
      const waitMs = retransmitDelayMs(f.attempts + 1, base, this.o.uniform, this.timeout);
      const ready: ReadyReal = { firstHop: built.firstHop, packet: built.packet, doc, f, surbId, waitMs, durable: false, dead: false };
      // on disk before the packet may leave: a crash then finds it prepared and builds it again
      ob.prepareFragment(
        f.messageId,
        f.address,
        f.index,
        surbId,
        built.surbKeys,
        now,
        (err) => {
          if (!err) ready.durable = true;
          else {
            ready.dead = true;
            this.o.log?.warn({ err: err.message }, 'the outbox could not be fsynced; the prepared packet is built again');
          }
        },
        this.sentRecords(),
      );
      this.sentReal = [];
      this.ready.real = ready;
      return;
    }
  }

  private buildDrop(doc: DocumentBody): Ready | null {
    if (doc.gateways.length === 0) return null;
    const p = buildDropPacket(this.o.suite, doc, this.o.uniform, this.health);
    return { firstHop: p.firstHop, packet: p.packet, doc };
  }

  private buildLoop(doc: DocumentBody, home: NodeEntry): ReadyLoop {
    const id = this.o.random(16);
    const surbId = this.o.random(SURB_ID_LENGTH);
    const p = buildLoopPacket(this.o.suite, doc, home, this.o.mailboxId, id, surbId, this.o.uniform, this.health);
    const timeoutMs = ackTimeoutBaseMs(p.route.length, 0, doc.mixing.mu, this.timeout);
    return { firstHop: p.firstHop, packet: p.packet, doc, id, surbId, keys: p.keys, route: p.route, timeoutMs };
  }

  private buildDecoy(doc: DocumentBody, home: NodeEntry): ReadyCover | null {
    if (doc.gateways.length === 0) return null;
    const id = this.o.random(16);
    const surbId = this.o.random(SURB_ID_LENGTH);
    const p = buildDecoyPacket(this.o.suite, doc, home, this.o.mailboxId, id, surbId, this.o.uniform, this.health);
    const timeoutMs = ackTimeoutBaseMs(p.forwardHops, p.replyHops, doc.mixing.mu, this.timeout);
    return { firstHop: p.firstHop, packet: p.packet, doc, id, surbId, keys: p.keys, timeoutMs };
  }

  /** A loop not back in time blames the nodes it went through; a decoy is only counted. */
  private coverLost(map: Map<string, PendingCover>, key: string): void {
    const c = map.get(key);
    if (!c) return;
    map.delete(key);
    if (map === this.pendingLoops) {
      this.health.failed(c.id);
      this.stats.loopsLost++;
    } else this.stats.decoysLost++;
  }

  /** Cover whose reply is not back by its deadline counts as lost. */
  private expireLoops(now: number): void {
    // insertion order is send order, and a kind's timeout depends only on the document's route
    // length and μ, so the first entry still within its deadline ends the sweep
    for (const map of [this.pendingLoops, this.pendingDecoys])
      for (const [k, c] of map) {
        if (c.deadline > now) break;
        this.coverLost(map, k);
      }
  }

  /**
   * Handles one item fetched from the client's mailbox. Every item is a SURB reply; its keys are
   * those of a loop or decoy we sent (in memory) or of a fragment's SURB (the outbox), and only
   * the opened payload says which it is: a loop payload carrying the id we sent, or an ACK for
   * the fragment the SURB went out with.
   */
  onMailboxItem(item: MailboxItem, now: number): void {
    const ob = this.o.outbox;
    const key = hex(item.surbId);
    const cover = this.pendingLoops.get(key) ?? this.pendingDecoys.get(key);
    const s = cover ? undefined : ob.surb(item.surbId);
    const doc = this.o.document();
    const keys = cover ? cover.keys : s && decodeSurbKeys(s.keys);
    if (!keys || !doc) {
      this.stats.badReplies++;
      return;
    }
    const opened = openSurbReply(this.o.suite, doc.geometry, keys, item.payload);
    const d = opened.ok ? decodePayload(opened.payload) : null;
    if (cover) {
      if (!d || !d.ok || d.kind !== 'loop' || !bytesEqual(d.loopId, cover.id)) {
        this.stats.badReplies++;
        return;
      }
      if (this.pendingLoops.delete(key)) {
        this.stats.loopsReturned++;
        this.health.succeeded(cover.id);
      } else {
        this.pendingDecoys.delete(key);
        this.stats.decoysReturned++;
      }
      return;
    }
    const r = s && ob.recipient(s.messageId, s.address);
    if (!s || !d || !d.ok || d.kind !== 'ack' || !r || d.ack.index !== s.index || !bytesEqual(d.ack.messageId, r.wireId)) {
      this.stats.badReplies++;
      return;
    }
    this.stats.acks++;
    ob.forgetSurb(item.surbId);
    const st = d.ack.status;
    if (st === AckStatus.Stored || st === AckStatus.Queued || st === AckStatus.Duplicate) {
      // a late ACK for an earlier copy: the copy built ahead is no longer needed (markAcked forgets its row)
      const r0 = this.ready.real;
      if (r0 && r0.f.messageId === s.messageId && r0.f.address === s.address && r0.f.index === s.index) this.ready.real = null;
      if (ob.markAcked(s.messageId, s.address, s.index)) {
        this.cache.delete(`${s.messageId}/${s.address}`);
        this.o.log?.info({ message: s.messageId, recipient: s.address }, 'delivered to the gateway (every fragment ACKed)');
        this.o.onDelivered?.(s.messageId, s.address);
      }
    } else if (ackIsFinalRefusal(st)) {
      this.bounce(r, `the gateway for ${r.domain} refused the message: ${AckStatus[st]}`);
    } else if (st === AckStatus.RateLimited) {
      this.dropReal((x) => x.f.messageId === s.messageId && x.f.address === s.address);
      ob.backOff(s.messageId, s.address, now + (this.o.rateLimitBackoffMs ?? 60_000), 'gateway rate limit (open policy); retrying later');
    }
  }
}
