/**
 * The packet pipeline every hop runs, a mix or a gateway alike: check the frame, peel one
 * Sphinx layer with the key its header's key phase names (this epoch's, or the previous epoch's
 * during the grace window), refuse
 * replays, hold the packet for the delay its header names, then hand it on. Drops are counted
 * per reason and never answered. No I/O here: the caller supplies the link (`forward`), what
 * the final hop does (`deliver`), the replay store and the clock.
 */
import {
  SPHINX_DROP_REASONS,
  SPHINX_VERSION,
  keyPhase,
  packetKeyPhase,
  packetSizes,
  processPacket,
  type Geometry,
  type HopDeliver,
  type HopPrivateKey,
  type HopResult,
  type NodeId,
  type SphinxDropReason,
} from '../sphinx/index.ts';
import { DelayQueue } from './delay-queue.ts';

/**
 * The replay tags a hop has seen, per epoch key, kept across restarts (runtime/hop/replay-store.ts
 * has the SQLite and append-log implementations).
 */
export interface ReplayTagStore {
  /** True when `tag` was seen under `epoch` before; otherwise takes it (exact at once, in memory). */
  seenOrAdd(epoch: number, tag: Uint8Array): boolean;
  seenOrAddMany(epoch: number, tags: readonly Uint8Array[]): boolean[];
  /**
   * Makes every tag taken so far durable (survives the process dying). A store may hold new tags
   * in memory until then; the engine calls it before any packet leaves (`release`, and a final
   * hop taken at once), so a packet is never out while its tag could still be lost. A replay of
   * a packet that had not left when the process died is then taken once, as if the first copy
   * had been lost with the delay queue. Throws when the write fails (the tags stay pending).
   */
  flush(): void;
  has(epoch: number, tag: Uint8Array): boolean;
  count(epoch: number): number;
  epochs(): number[];
  dropEpoch(epoch: number): void;
  dropEpochsBefore(epoch: number): number[];
  close(): void;
}

/** A Sphinx key the hop accepts now, with the epoch whose replay set it uses. */
export interface EpochHopKey {
  readonly epoch: number;
  readonly key: HopPrivateKey;
  /**
   * The raw X25519 secret, for a pool of worker threads that prepares the key on its own
   * suite (runtime/hop/unwrap-pool.ts); a key without it is always processed on this thread.
   */
  readonly secret?: Uint8Array;
}

/**
 * One Sphinx layer peeled off this thread (a worker's result, proto/hop/unwrap-batch.ts), for
 * `HopEngine.admit`: the result without a replay check, and the replay tag when the MAC held.
 */
export interface UnwrappedFrame {
  /** The epoch of the key that opened it (whose replay set the tag goes into). */
  readonly epoch: number;
  readonly result: HopResult;
  /** Set once the MAC was valid, also when a later check failed (as processPacket records it). */
  readonly tag: Uint8Array | undefined;
  /** performance.now() when the frame arrived (the processing histogram). */
  readonly t0: number;
}

/**
 * Why the hop dropped a packet: a Sphinx reason, or `expired-key` (the header's key phase names
 * no key this hop holds: built under an epoch's key that is gone, or one not yet made; told
 * apart from a forged packet, `bad-mac`, without any public-key operation), `unknown-next-hop`
 * (not a legal next hop in the document), `queue-full` (delay queue at its byte bound),
 * `no-key` (no Sphinx key for now), `not-deliverable` (a final-hop packet this hop does not
 * take, see `admitDeliver`).
 */
export type HopDropReason = SphinxDropReason | 'expired-key' | 'unknown-next-hop' | 'queue-full' | 'no-key' | 'not-deliverable' | 'replay-store-failed';

export const HOP_DROP_REASONS: readonly HopDropReason[] = [
  ...SPHINX_DROP_REASONS,
  'expired-key',
  'unknown-next-hop',
  'queue-full',
  'no-key',
  'not-deliverable',
  'replay-store-failed',
];

export interface HopCounters {
  received: number;
  forwarded: number;
  delivered: number;
  /** Drop cover that reached its last hop (normal, not an error). */
  coverEnded: number;
  dropped: Record<HopDropReason, number>;
}

export interface HopEngineOptions<P> {
  readonly geometry: Geometry;
  readonly replay: ReplayTagStore;
  /** The keys accepted now, current epoch first (then the previous one within its grace). */
  readonly keys: () => readonly EpochHopKey[];
  /** Maps a next-hop node id to where the link sends it; undefined when not in the document. */
  readonly resolveNext: (nodeId: NodeId) => P | undefined;
  /** Sends a due packet to the next hop. */
  readonly forward: (next: P, packet: Uint8Array) => void;
  /** Hands a due final-hop packet to the local queue. */
  readonly deliver: (result: HopDeliver, epoch: number) => void;
  /**
   * Optional filter on final-hop packets, applied before they are queued: false drops the
   * packet at once (counted as `not-deliverable`) instead of holding it for its delay. A mix
   * uses it to take only its own loop cover; a gateway leaves it unset.
   */
  readonly admitDeliver?: (result: HopDeliver) => boolean;
  /**
   * Final-hop packets the role takes at once, ignoring their header delay, because the role
   * holds what it sends in answer for its own hop delay through `emit` instead (the gateway:
   * a fragment is committed at arrival and its ACK leaves one hop delay after the arrival).
   */
  readonly deliverAtOnce?: (result: HopDeliver) => boolean;
  /** Bound on bytes held in the delay queue (packets past it are dropped and counted). */
  readonly maxQueuedBytes: number;
  /** Processing time of one packet, seconds (a histogram in the daemon). */
  readonly observeProcessing?: (seconds: number) => void;
  /** How late (ms) each packet left the delay queue after its due time: the scheduler's added latency. */
  readonly observeLateness?: (lateMs: number) => void;
  /** Called for each drop (logging at debug level, metrics). */
  readonly onDrop?: (reason: HopDropReason) => void;
  readonly now?: () => number;
  readonly autoTimer?: boolean;
  /** When true, delays in headers are ignored (benchmarks of the bare pipeline). */
  readonly ignoreDelays?: boolean;
}

type Due<P> =
  | { kind: 'forward'; next: P; packet: Uint8Array }
  | { kind: 'deliver'; result: HopDeliver; epoch: number }
  | { kind: 'emit'; next: P | undefined; packet: Uint8Array | undefined; then: (() => void) | undefined };

export class HopEngine<P> {
  readonly counters: HopCounters;
  private readonly queue: DelayQueue<Due<P>>;
  private readonly packetBytes: number;
  private readonly frameBytes: number;

  constructor(private readonly opts: HopEngineOptions<P>) {
    const dropped = Object.fromEntries(HOP_DROP_REASONS.map((r) => [r, 0])) as Record<HopDropReason, number>;
    this.counters = { received: 0, forwarded: 0, delivered: 0, coverEnded: 0, dropped };
    this.packetBytes = opts.geometry.payloadSize + 512;
    this.frameBytes = packetSizes(opts.geometry).packet;
    this.queue = new DelayQueue<Due<P>>({
      maxBytes: opts.maxQueuedBytes,
      onDue: opts.observeLateness
        ? (d, late) => {
            opts.observeLateness!(late);
            this.release(d);
          }
        : (d) => this.release(d),
      ...(opts.now ? { now: opts.now } : {}),
      ...(opts.autoTimer === undefined ? {} : { autoTimer: opts.autoTimer }),
    });
  }

  /** The Sphinx geometry of the packets this engine takes. */
  get geometry(): Geometry {
    return this.opts.geometry;
  }

  /** Packets held right now, and their bytes. */
  get held(): { packets: number; bytes: number } {
    return { packets: this.queue.size, bytes: this.queue.bytes };
  }

  /** Releases due packets when the caller drives time (autoTimer: false). */
  releaseDue(now?: number): number {
    return this.queue.releaseDue(now);
  }

  private drop(reason: HopDropReason): void {
    this.counters.dropped[reason]++;
    this.opts.onDrop?.(reason);
  }

  /** Processes one frame as it comes off the link. Never throws. */
  handle(frame: Uint8Array): void {
    this.counters.received++;
    const t0 = performance.now();
    const k = this.keyFor(frame, t0);
    if (!k) return;
    const r = processPacket(this.opts.geometry, k.key, frame, {
      isReplay: (tag) => this.opts.replay.seenOrAdd(k.epoch, tag),
    });
    this.schedule(r, k.epoch, t0);
  }

  /**
   * The key a frame's header names, or undefined when there is none (the drop is counted and
   * observed). No public-key operation: the first step of `handle`, and the part of the split
   * pipeline (`precheck` … `admit`) that stays on this thread before the layer is peeled.
   */
  private keyFor(frame: Uint8Array, t0: number): EpochHopKey | undefined {
    const keys = this.opts.keys();
    if (keys.length === 0) {
      this.drop('no-key');
      return undefined;
    }
    // the header names the epoch of its keys (docs/spec/sphinx.md §5): one DH, never a trial
    const phase = packetKeyPhase(frame);
    const k = keys.find((x) => keyPhase(x.epoch) === phase);
    if (!k) {
      // a frame of the wrong size or version is dropped for that, not for its key
      const reason = frame.length !== this.frameBytes ? 'bad-length' : frame[0] !== SPHINX_VERSION ? 'bad-version' : 'expired-key';
      this.finish(t0, reason);
      return undefined;
    }
    return k;
  }

  /**
   * Split pipeline, step 1 (this thread, as the frame arrives): the key to peel it with, or
   * undefined when it is dropped at once (counted as received and by reason, as `handle` would).
   * A frame with a key is counted as received only when `admit` decides on it, so that
   * `received` always equals what was decided (dropped, queued, delivered, cover).
   */
  precheck(frame: Uint8Array, t0 = performance.now()): EpochHopKey | undefined {
    const k = this.keyFor(frame, t0);
    if (!k) this.counters.received++;
    return k;
  }

  /**
   * Split pipeline, step 3 (this thread): layers peeled elsewhere (step 2, a worker), decided
   * in the order given. The replay check is here, not in the worker: this thread is the only
   * one that reads or writes the replay store, and it checks-and-inserts each tag (one
   * `seenOrAddMany` per epoch for the batch, which also catches two copies within the batch)
   * before anything of the batch is scheduled. Two copies of one packet peeled in two workers
   * therefore meet here one after the other: the first is taken, the second dropped as
   * `replay`, with no window in which both pass. A tag whose packet failed after its MAC
   * (bad commands or payload) is recorded too, and a copy of it counts as `replay`, as in
   * `handle`, where processPacket records the tag before those checks.
   */
  admit(items: readonly UnwrappedFrame[]): void {
    // a key may have expired while its frames were away (the grace window ended): they are
    // dropped as if they had come a moment later, and its dropped replay set is not re-created
    const live = this.opts.keys();
    const expired = (e: number) => !live.some((k) => k.epoch === e);
    const seen = this.checkReplays(items, expired);
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      this.counters.received++;
      if (expired(it.epoch)) this.finish(it.t0, 'expired-key');
      else if (seen[i]) this.finish(it.t0, 'replay');
      else this.schedule(it.result, it.epoch, it.t0);
    }
  }

  /** seenOrAdd for every tag of `items` under a live key, grouped by epoch (one store call per epoch), in order. */
  private checkReplays(items: readonly UnwrappedFrame[], expired: (epoch: number) => boolean): boolean[] {
    const seen = new Array<boolean>(items.length).fill(false);
    const byEpoch = new Map<number, number[]>();
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (it.tag === undefined || expired(it.epoch)) continue;
      const idx = byEpoch.get(it.epoch);
      if (idx) idx.push(i);
      else byEpoch.set(it.epoch, [i]);
    }
    for (const [epoch, idx] of byEpoch) {
      const r = this.opts.replay.seenOrAddMany(
        epoch,
        idx.map((i) => items[i]!.tag!),
      );
      for (let j = 0; j < idx.length; j++) seen[idx[j]!] = r[j]!;
    }
    return seen;
  }

  /** A peeled layer whose replay tag was taken: queue it for its delay, or drop it (counted). */
  private schedule(r: HopResult, epoch: number, t0: number): void {
    if (!r.ok) return this.finish(t0, r.reason);
    const delay = this.opts.ignoreDelays ? 0 : r.delayMs;
    if (r.kind === 'forward') {
      const next = this.opts.resolveNext(r.next);
      if (next === undefined) return this.finish(t0, 'unknown-next-hop');
      if (!this.queue.push({ kind: 'forward', next, packet: r.packet }, delay, r.packet.length)) return this.finish(t0, 'queue-full');
    } else if (r.kind === 'deliver') {
      if (this.opts.admitDeliver !== undefined && !this.opts.admitDeliver(r)) return this.finish(t0, 'not-deliverable');
      if (this.opts.deliverAtOnce?.(r) === true) {
        if (!this.tagsDurable()) return this.finish(t0, 'replay-store-failed');
        this.counters.delivered++;
        this.opts.deliver(r, epoch);
        return this.finish(t0);
      }
      if (!this.queue.push({ kind: 'deliver', result: r, epoch }, delay, this.packetBytes)) return this.finish(t0, 'queue-full');
    } else {
      this.counters.coverEnded++;
    }
    return this.finish(t0);
  }

  private finish(t0: number, reason?: HopDropReason): void {
    if (reason) this.drop(reason);
    this.opts.observeProcessing?.((performance.now() - t0) / 1000);
  }

  /**
   * Queues a packet of the node's own (an answer such as the gateway's ACK) to leave `delayMs`
   * from now through the same delay queue as forwarded packets, so it leaves like one of them;
   * `then` runs when it leaves (also when `packet` is undefined: only `then` is held). False when
   * the queue is full or closed (counted as `queue-full`).
   */
  emit(next: P | undefined, packet: Uint8Array | undefined, delayMs: number, then?: () => void): boolean {
    const delay = this.opts.ignoreDelays ? 0 : delayMs;
    if (this.queue.push({ kind: 'emit', next, packet, then }, delay, packet?.length ?? 0)) return true;
    this.drop('queue-full');
    return false;
  }

  /**
   * The replay store's pending tags written (ReplayTagStore.flush) before a processed packet
   * leaves; false when that failed, and the packet must not leave (its tag could be lost).
   */
  private tagsDurable(): boolean {
    try {
      this.opts.replay.flush();
      return true;
    } catch {
      return false;
    }
  }

  private release(d: Due<P>): void {
    if (d.kind === 'emit') {
      // a packet of the node's own: it carries no replay tag
      if (d.next !== undefined && d.packet !== undefined) {
        this.counters.forwarded++;
        this.opts.forward(d.next, d.packet);
      }
      d.then?.();
      return;
    }
    // a processed packet leaves only once its tag is durable, and is dropped (counted) when
    // the store cannot write it
    if (!this.tagsDurable()) return this.drop('replay-store-failed');
    if (d.kind === 'forward') {
      this.counters.forwarded++;
      this.opts.forward(d.next, d.packet);
    } else {
      this.counters.delivered++;
      this.opts.deliver(d.result, d.epoch);
    }
  }

  /**
   * Graceful shutdown, first half: keeps releasing packets that fall due within `boundMs`,
   * then returns how many are still held (they will be dropped by `close`).
   */
  async drain(boundMs: number): Promise<number> {
    const now = this.opts.now ?? (() => performance.now());
    const end = now() + boundMs;
    for (;;) {
      const due = this.queue.peekDue();
      if (due === undefined || due > end) break;
      const wait = Math.max(0, due - now());
      await new Promise((r) => setTimeout(r, Math.min(wait + 1, 50)));
      this.queue.releaseDue();
    }
    return this.queue.size;
  }

  /** Stops the timer; packets still held are dropped (the senders' retransmission covers them). */
  close(): number {
    const n = this.queue.size;
    this.queue.close();
    return n;
  }
}
