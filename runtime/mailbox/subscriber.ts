/**
 * The client's half of `/postmix/mailbox/3` (docs/spec/mailbox.md; the frames are
 * proto/mailbox): one stream to the home gateway, subscribed to the client's mailbox, whose
 * items (SURB replies, returning loops) go to `onItem`; dummies are dropped. The stream is
 * reopened with a bounded back-off when it ends or cannot be opened.
 */
import type { PeerId } from '@libp2p/interface';
import { MAILBOX_PROTOCOL, decodeItem, encodeSubscribe, mailboxItemSize, type MailboxItem } from '../../proto/mailbox/index.ts';
import type { FrameStream, PacketLink } from '../link/link.ts';

const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;

export interface MailboxSubscriberOptions {
  readonly link: PacketLink;
  readonly mailboxId: Uint8Array;
  /** The home gateway's peer now (the document may change it), or null when there is none. */
  readonly home: () => PeerId | null;
  /** The Sphinx payload size of the current geometry: every item frame is sized for it. */
  readonly payloadSize: () => number;
  readonly onItem: (item: MailboxItem) => void;
  readonly log: { info(o: object, m?: string): void; warn(o: object, m?: string): void } | null;
}

/** Plain counters (the client's metrics and tests read them). */
export interface SubscriberCounters {
  items: number;
  dummies: number;
  /** Frames of the right size that do not decode (dropped). */
  malformed: number;
  /** Streams opened (the first and every reconnection). */
  subscriptions: number;
}

export class MailboxSubscriber {
  readonly counters: SubscriberCounters = { items: 0, dummies: 0, malformed: 0, subscriptions: 0 };
  private stream: FrameStream | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  private running = false;

  constructor(private readonly o: MailboxSubscriberOptions) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.run();
  }

  private async run(): Promise<void> {
    for (let backoff = FIRST_BACKOFF_MS; !this.stopped; backoff = Math.min(backoff * 2, MAX_BACKOFF_MS)) {
      const home = this.o.home();
      if (home) {
        try {
          const stream = await this.o.link.dial(MAILBOX_PROTOCOL, home, {
            frameSize: () => mailboxItemSize(this.o.payloadSize()),
            onFrame: (frame) => this.onFrame(frame, home),
          });
          this.stream = stream;
          if (this.stopped) break;
          if (!stream.send(encodeSubscribe(this.o.mailboxId))) throw new Error('the subscribe frame could not be written');
          this.counters.subscriptions++;
          this.o.log?.info({ gateway: home.toString() }, 'mailbox subscribed');
          backoff = FIRST_BACKOFF_MS;
          await stream.ended;
          if (!this.stopped) this.o.log?.warn({ gateway: home.toString() }, 'mailbox stream ended; reopening');
        } catch (e) {
          if (!this.stopped) this.o.log?.warn({ err: String(e) }, 'mailbox stream failed; retrying');
        }
      }
      if (!this.stopped) await new Promise<void>((r) => setTimeout((this.wake = r), backoff).unref());
    }
  }

  private onFrame(frame: Uint8Array, home: PeerId): void {
    const item = decodeItem(frame);
    // dummies keep the gateway's constant rate; nothing to do with them
    if (item === 'dummy') {
      this.counters.dummies++;
      return;
    }
    if (item === null) {
      this.counters.malformed++;
      this.o.log?.warn({ gateway: home.toString() }, 'malformed mailbox frame dropped');
      return;
    }
    this.counters.items++;
    try {
      this.o.onItem(item);
    } catch (e) {
      this.o.log?.warn({ err: String(e) }, 'mailbox item handling failed');
    }
  }

  /** Ends the stream and stops reconnecting (a dial in flight fails once the link stops). */
  stop(): void {
    this.stopped = true;
    this.stream?.abort('client stopping');
    this.wake?.();
  }
}
