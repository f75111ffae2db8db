/**
 * The gateway's half of `/postmix/mailbox/3` (docs/spec/mailbox.md; the frames are
 * proto/mailbox): the SURB replies the hop delivers for a client mailbox are stored (one kind of
 * item, whether it answers a fragment, a decoy or is the client's own loop: the gateway cannot
 * tell), and a pacer writes one fixed-size frame per tick to each subscribed stream, the oldest
 * waiting item or a dummy, so that what the client's link shows depends neither on what arrived
 * nor when.
 *
 * The pacer ticks at the mailbox rate of the current document, re-read each tick. Only the
 * first stream of a mailbox is written to (a client that reconnects before its old stream is
 * gone gets the new one as soon as the old one ends). An item whose write fails goes back into
 * the mailbox.
 */
import { MAILBOX_PROTOCOL, decodeSubscribe, encodeDummyItem, encodeItem, mailboxRate, type MailboxItem } from '../../proto/mailbox/index.ts';
import type { MixingParams } from '../../proto/mixing/params.ts';
import { bytesKey } from '../../proto/util/bytes.ts';
import type { FrameStream, FrameStreamHandlers, PacketLink } from '../link/link.ts';

/** Missed ticks caught up after the event loop lagged, at most (then the schedule restarts). */
const MAX_CATCH_UP = 8;

/** The subscribe frame: version || mailbox id. */
const SUBSCRIBE_FRAME_BYTES = 33;

/** Where mailbox items wait (the gateway's SQLite store). Times are ms. */
export interface MailboxStore {
  /** Appends an item, dropping the oldest beyond `maxItems`; returns how many were dropped. */
  mailboxPut(mailbox: Uint8Array, item: MailboxItem, now: number, ttlMs: number, maxItems: number): number;
  /** Removes and returns up to `limit` unexpired items, oldest first. */
  mailboxTake(mailbox: Uint8Array, now: number, limit: number): MailboxItem[];
  mailboxSize(mailbox: Uint8Array): number;
  purgeExpiredMailbox(now: number): number;
}

export type MailboxFrameKind = 'item' | 'dummy';
export type MailboxDropReason = 'full' | 'expired' | 'other-geometry';

/** Plain counters, read at scrape time by the gateway's metrics. */
export interface MailboxCounters {
  /** Items stored for client mailboxes. */
  stored: number;
  /** Frames written to subscribed streams, by kind. */
  sent: Record<MailboxFrameKind, number>;
  dropped: Record<MailboxDropReason, number>;
  /** Subscribe frames refused (bad version, the mail queue id, wrong size). */
  refused: number;
}

export interface MailboxServerOptions {
  readonly store: MailboxStore;
  readonly ttlMs: number;
  readonly maxItems: number;
  /** The Sphinx payload size of the current geometry (every frame is sized for it). */
  readonly payloadSize: () => number;
  /** The current document's mixing parameters (the pacer's rate), if any. */
  readonly mixing: () => Pick<MixingParams, 'lambdaP' | 'lambdaL'> | undefined;
  /** Unix ms. */
  readonly now: () => number;
  readonly log: { debug(o: object, m?: string): void };
}

interface Subscription {
  readonly id: Uint8Array;
  readonly streams: Set<FrameStream>;
  /** An upper bound on the items waiting: a tick for an idle mailbox (a dummy, the usual case) costs no store query. */
  pending: number;
}

export class MailboxServer {
  readonly counters: MailboxCounters = {
    stored: 0,
    sent: { item: 0, dummy: 0 },
    dropped: { full: 0, expired: 0, 'other-geometry': 0 },
    refused: 0,
  };
  private readonly subscriptions = new Map<string, Subscription>();
  private timer: NodeJS.Timeout | undefined;
  /** When the pacer's next tick is due (performance.now() ms). */
  private nextTickAt: number | undefined;
  private closed = false;

  constructor(private readonly o: MailboxServerOptions) {}

  /** Serves the protocol on `link` (before the link takes connections from clients). */
  async serve(link: PacketLink): Promise<void> {
    await link.handle(MAILBOX_PROTOCOL, { maxInboundStreams: 4, maxOutboundStreams: 0 }, (stream) => this.accept(stream));
  }

  /** Stores an item for a mailbox (the gateway's hop delivered it). */
  put(mailbox: Uint8Array, item: MailboxItem): void {
    const dropped = this.o.store.mailboxPut(mailbox, item, this.o.now(), this.o.ttlMs, this.o.maxItems);
    const sub = this.subscriptions.get(bytesKey(mailbox));
    if (sub) sub.pending++;
    this.counters.stored++;
    this.counters.dropped.full += dropped;
  }

  /** Deletes expired items (housekeeping). */
  expire(): void {
    this.counters.dropped.expired += this.o.store.purgeExpiredMailbox(this.o.now());
  }

  /** Subscribed mailboxes right now. */
  get subscribed(): number {
    return this.subscriptions.size;
  }

  start(): void {
    if (this.closed || this.timer) return;
    this.schedule();
  }

  /** Stops the pacer and ends every stream. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const sub of this.subscriptions.values()) for (const s of sub.streams) s.abort('gateway stopping');
    this.subscriptions.clear();
  }

  private accept(stream: FrameStream): FrameStreamHandlers {
    let sub: Subscription | undefined;
    void stream.ended.then(() => {
      if (!sub) return;
      sub.streams.delete(stream);
      if (sub.streams.size === 0) this.subscriptions.delete(bytesKey(sub.id));
    });
    return {
      frameSize: () => SUBSCRIBE_FRAME_BYTES,
      onFrame: (frame) => {
        if (sub) return; // one subscribe per stream; anything after it is ignored
        const id = decodeSubscribe(frame);
        if (!id) {
          this.counters.refused++;
          stream.abort('bad subscribe frame');
          return;
        }
        const key = bytesKey(id);
        sub = this.subscriptions.get(key);
        if (!sub) this.subscriptions.set(key, (sub = { id, streams: new Set(), pending: this.o.store.mailboxSize(id) }));
        sub.streams.add(stream);
        this.o.log.debug({ peer: stream.peer.toString() }, 'mailbox subscribed');
      },
    };
  }

  /**
   * Ticks on an absolute schedule, so the pacer keeps its rate when the event loop lags (a chain
   * of relative timeouts would lose every lag, and items arrive at 2/3 of the rate: a slower pacer
   * backs up). After a lag the missed ticks follow one another without waiting, at most
   * `MAX_CATCH_UP` of them; beyond that (a stall) the schedule restarts from now.
   */
  private schedule(): void {
    if (this.closed) return;
    const period = 1000 / mailboxRate(this.o.mixing() ?? { lambdaP: 1, lambdaL: 0 });
    const now = performance.now();
    this.nextTickAt = this.nextTickAt === undefined ? now + period : this.nextTickAt + period;
    if (this.nextTickAt < now - MAX_CATCH_UP * period) this.nextTickAt = now + period;
    this.timer = setTimeout(
      () => {
        this.tick();
        this.schedule();
      },
      Math.max(0, this.nextTickAt - now),
    );
    this.timer.unref();
  }

  /** One frame on each subscribed mailbox's first stream: the oldest waiting item, or a dummy. */
  tick(): void {
    const payloadSize = this.o.payloadSize();
    const now = this.o.now();
    for (const sub of this.subscriptions.values()) {
      const stream = sub.streams.values().next().value;
      if (stream === undefined) continue;
      let frame: Uint8Array | null = null;
      let taken: MailboxItem | undefined;
      let kind: MailboxFrameKind = 'dummy';
      while (frame === null) {
        taken = sub.pending > 0 ? this.o.store.mailboxTake(sub.id, now, 1)[0] : undefined;
        if (taken) sub.pending--;
        else sub.pending = 0; // expired or purged meanwhile: the bound was loose
        if (!taken) {
          frame = encodeDummyItem(payloadSize);
          kind = 'dummy';
          break;
        }
        try {
          frame = encodeItem(taken, payloadSize);
          kind = 'item';
        } catch {
          // stored under another geometry: it would stand out on the wire, so it is dropped
          this.counters.dropped['other-geometry']++;
        }
      }
      if (stream.send(frame)) {
        this.counters.sent[kind]++;
        continue;
      }
      sub.streams.delete(stream);
      // not lost: back into the mailbox for the next stream the client opens
      if (taken) {
        this.o.store.mailboxPut(sub.id, taken, now, this.o.ttlMs, this.o.maxItems);
        sub.pending++;
      }
    }
  }
}
