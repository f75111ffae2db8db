/**
 * The client's side of the overlay: the verified network document (the PKI client's cache file,
 * re-verified against the configured authorities), the home gateway, the client's mailbox id
 * (random, kept in data_dir so SURBs made before a restart still lead home), and the connection:
 * a dial-only packet link to the layer-1 mixes, whose frame size and admitted peers follow the
 * document, and the `/postmix/mailbox/3` subscription to the home gateway that brings ACKs and
 * returning loops back (runtime/mailbox/subscriber.ts).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MailboxItem } from '../proto/mailbox/index.ts';
import { bytesEqual, findNode, type DocumentBody, type NodeEntry, type VerifiedDocument } from '../proto/pki/index.ts';
import { DEFAULT_GEOMETRY, packetSizes } from '../proto/sphinx/index.ts';
import { NetworkView } from '../runtime/hop/network-view.ts';
import { PacketLink } from '../runtime/link/link.ts';
import { MailboxSubscriber } from '../runtime/mailbox/subscriber.ts';
import { DocumentCache, fetchDocument, type Which } from '../runtime/pki/client.ts';
import { privateDir, privateFile, writePrivateFile } from '../runtime/private-files.ts';
import type { ClientConfig } from './config.ts';
import type { Network } from './core.ts';
import type { PacketSink } from './sender.ts';
import { fromHex } from '../proto/util/bytes.ts';

type Log = { info(o: object, m?: string): void; warn(o: object, m?: string): void } | null;

/** The client's mailbox id: random once, then kept (0600) in data_dir. */
export function loadMailboxId(dataDir: string): Uint8Array {
  const f = join(dataDir, 'mailbox.id');
  privateDir(dataDir);
  if (existsSync(f)) {
    privateFile(f);
    const b = readFileSync(f);
    if (b.length === 32) return new Uint8Array(b);
  }
  const id = randomBytes(32);
  writePrivateFile(f, id);
  return new Uint8Array(id);
}

/** The home gateway: configured by a mail domain it serves or its node id (hex); else the first gateway. */
export function pickHome(doc: DocumentBody, want: string): NodeEntry | null {
  if (want) {
    if (/^[0-9a-f]{64}$/i.test(want)) return findNode(doc, fromHex(want)) ?? null;
    return doc.gateways.find((g) => g.gateway?.domains.includes(want.toLowerCase())) ?? null;
  }
  return doc.gateways[0] ?? null;
}

function verifyOpts(cfg: ClientConfig) {
  return {
    authorities: cfg.network.authorities.map((k) => Uint8Array.from(Buffer.from(k, 'base64'))),
    threshold: cfg.network.threshold,
    now: Math.floor(Date.now() / 1000),
  };
}

/** The cached document, if it still verifies and is not over (else undefined). */
export function cachedDocument(cfg: ClientConfig): VerifiedDocument | undefined {
  if (!cfg.network.document) return undefined;
  return new DocumentCache(cfg.network.document).load(verifyOpts(cfg));
}

/** Fetches a document from the configured authorities and verifies it (at `now`, unix seconds). */
export function fetchNetworkDocument(cfg: ClientConfig, which: Which, now = Date.now() / 1000): Promise<VerifiedDocument> {
  return fetchDocument(which, { ...verifyOpts(cfg), now: Math.floor(now), urls: cfg.network.authority_urls, timeoutMs: 10_000 });
}

/**
 * The newest published document: fetched from the authorities when `authority_urls` are set
 * (the cache file kept up to date), else, or when none answers, the cached copy. Throws when
 * there is none that verifies.
 */
export async function loadDocument(cfg: ClientConfig, log: Log): Promise<VerifiedDocument> {
  if (!cfg.network.document) throw new Error('no network document configured (network.document)');
  if (cfg.network.authorities.length === 0) throw new Error('network.authorities is empty: cannot verify the network document');
  const cache = new DocumentCache(cfg.network.document);
  if (cfg.network.authority_urls.length > 0) {
    try {
      return (await cache.refresh('latest', { ...verifyOpts(cfg), urls: cfg.network.authority_urls })).doc;
    } catch (e) {
      log?.warn({ err: (e as Error).message }, 'could not fetch the network document; trying the cached copy');
    }
  }
  const doc = cache.load(verifyOpts(cfg));
  if (!doc) throw new Error(`${cfg.network.document}: missing, corrupt, expired or not signed by ${cfg.network.threshold} of the configured authorities`);
  return doc;
}

export interface OverlayOptions {
  /** A verified document to start with; without one the overlay waits for one (`update`). */
  readonly document?: VerifiedDocument;
  readonly mailboxId: Uint8Array;
  /** The home gateway: a mail domain it serves, its node id in hex, or '' for the first one. */
  readonly home: string;
  readonly log: Log;
  /** Unix seconds; default the wall clock (tests move it). */
  readonly now?: () => number;
}

/**
 * The client connected to the overlay: the Network the client core routes by (document, home
 * gateway, where packets go) over a dial-only link, and the mailbox subscription. The link is
 * made first and the sink over it, so nothing is patched in afterwards.
 *
 * It holds every verified document it was given that is still of use (the one for this epoch,
 * one fetched ahead for the next) and routes by the newest usable one, re-read at each call:
 * at an epoch boundary the next document takes over without a fetch, and while the authorities
 * are out of reach the last one goes on, each node under its key for the epoch the client is in
 * (proto/pki/validity.ts). With none usable, `document()` is null and the sender holds.
 */
export class OverlayConnection implements Network {
  readonly sink: PacketSink;
  readonly mailboxId: Uint8Array;
  private subscriber: MailboxSubscriber | undefined;
  private readonly now: () => number;
  /** The routing document's epoch and geometry the link was last set up for. */
  private installed: { epoch: number; geometry: string } | undefined;

  private constructor(
    readonly link: PacketLink,
    private readonly view: NetworkView,
    private readonly o: OverlayOptions,
  ) {
    this.mailboxId = o.mailboxId;
    this.now = o.now ?? (() => Date.now() / 1000);
    this.sink = {
      send: (firstHop, packet) => {
        const p = view.peerOf(firstHop);
        if (!p) {
          o.log?.warn({}, 'first hop not in the network document; packet dropped');
          return;
        }
        link.send(p.peerId, packet);
      },
    };
  }

  static async open(o: OverlayOptions): Promise<OverlayConnection> {
    // the client is in no document: every node of it is a peer it may reach
    const view = new NetworkView(new Uint8Array(randomBytes(32)));
    if (o.document) view.add(o.document);
    view.updateAt((o.now ?? (() => Date.now() / 1000))());
    const link = await PacketLink.create({
      identity: new Uint8Array(randomBytes(32)),
      listen: [],
      packetSize: packetSizes(view.current?.body.geometry ?? DEFAULT_GEOMETRY).packet,
      onFrame: () => undefined,
      isAllowedPeer: (p) => view.isKnownPeer(p),
      addressesOf: (p) => view.addressesOf(p),
    });
    const c = new OverlayConnection(link, view, o);
    c.follow();
    return c;
  }

  /**
   * The document as of now (each node under its key for this epoch), or null: none usable. With
   * `aheadMs`, as of that long from now, from the documents held now (one fetched ahead for the
   * next epoch once that time reaches it): for a packet built ahead of its slot.
   */
  document(aheadMs = 0): DocumentBody | null {
    this.follow();
    const t = this.now() + aheadMs / 1000;
    return (aheadMs > 0 ? this.view.documentAhead(t) : this.view.documentAt(t)) ?? null;
  }

  home(aheadMs = 0): NodeEntry | null {
    const d = this.document(aheadMs);
    return d ? pickHome(d, this.o.home) : null;
  }

  /** The verified document routing now (not projected), if any. */
  get current(): VerifiedDocument | undefined {
    this.follow();
    return this.view.current;
  }

  /** True while routing by a document older than the epoch (the next one has not come). */
  get stale(): boolean {
    this.follow();
    return this.view.stale;
  }

  /** The held documents, oldest first. */
  documents(): VerifiedDocument[] {
    return this.view.epochs().map((e) => this.view.get(e)!);
  }

  /**
   * Takes a newly verified document. A second body for an epoch already held (the authorities
   * signed two: equivocation) is refused and the first kept, so the client's view stays stable;
   * returns whether the document was taken.
   */
  update(doc: VerifiedDocument): boolean {
    const held = this.view.get(doc.body.epoch);
    if (held && !bytesEqual(held.digest, doc.digest)) {
      this.o.log?.warn({ epoch: doc.body.epoch }, 'the authorities signed two different documents for one epoch; keeping the first seen');
      return false;
    }
    if (held) return true; // the same body (perhaps with more signatures)
    this.view.add(doc);
    this.follow();
    return true;
  }

  /** Moves the view to the clock's epoch; on a change, the link follows (frame size, peers). */
  private follow(): void {
    const changed = this.view.updateAt(this.now());
    const cur = this.view.current;
    if (!changed || !cur) return;
    const g = cur.body.geometry;
    const key = `${g.maxHops}/${g.perHopSize}/${g.payloadSize}`;
    if (this.installed?.geometry !== key) this.link.setPacketSize(packetSizes(g).packet);
    void this.link.enforceAllowedPeers().catch(() => {});
    if (this.installed?.epoch !== cur.body.epoch)
      this.o.log?.info(
        { epoch: this.view.epoch, document: cur.body.epoch, layers: cur.body.layers.length, gateways: cur.body.gateways.length },
        'network document in use',
      );
    this.installed = { epoch: cur.body.epoch, geometry: key };
  }

  /** Starts the mailbox subscription; its items go to `onItem`. */
  subscribe(onItem: (item: MailboxItem) => void): void {
    this.subscriber ??= new MailboxSubscriber({
      link: this.link,
      mailboxId: this.mailboxId,
      home: () => {
        const h = this.home();
        return h ? (this.view.peerOf(h.nodeId)?.peerId ?? null) : null;
      },
      payloadSize: () => this.document()?.geometry.payloadSize ?? 0,
      onItem,
      log: this.o.log,
    });
    this.subscriber.start();
  }

  get mailbox(): MailboxSubscriber | undefined {
    return this.subscriber;
  }

  async close(): Promise<void> {
    this.subscriber?.stop();
    await this.link.stop();
  }
}
