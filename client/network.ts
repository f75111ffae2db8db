/**
 * The client's side of the overlay: the verified network document (the PKI client's cache file,
 * re-verified against the configured authorities), the home gateway, the client's mailbox id
 * (random, kept in data_dir so SURBs made before a restart still lead home), and the connection:
 * a dial-only packet link to the layer-1 mixes, whose frame size and admitted peers follow the
 * document, and the `/postmix/mailbox/2` subscription to the home gateway that brings ACKs and
 * returning loops back (runtime/mailbox/subscriber.ts).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MailboxItem } from '../proto/mailbox/index.ts';
import { findNode, type DocumentBody, type NodeEntry, type VerifiedDocument } from '../proto/pki/index.ts';
import { packetSizes } from '../proto/sphinx/index.ts';
import { NetworkView } from '../runtime/hop/network-view.ts';
import { PacketLink } from '../runtime/link/link.ts';
import { MailboxSubscriber } from '../runtime/mailbox/subscriber.ts';
import { DocumentCache } from '../runtime/pki/client.ts';
import { privateDir, privateFile, writePrivateFile } from '../runtime/private-files.ts';
import type { ClientConfig } from './config.ts';
import type { Network } from './core.ts';
import type { PacketSink } from './sender.ts';

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
    if (/^[0-9a-f]{64}$/i.test(want)) return findNode(doc, Uint8Array.from(Buffer.from(want, 'hex'))) ?? null;
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

/**
 * The current document: fetched from the authorities when `authority_urls` are set (the cache
 * file kept up to date), else, or when none answers, the cached copy. Throws when there is none
 * that verifies.
 */
export async function loadDocument(cfg: ClientConfig, log: Log): Promise<VerifiedDocument> {
  if (!cfg.network.document) throw new Error('no network document configured (network.document)');
  if (cfg.network.authorities.length === 0) throw new Error('network.authorities is empty: cannot verify the network document');
  const cache = new DocumentCache(cfg.network.document);
  if (cfg.network.authority_urls.length > 0) {
    try {
      return (await cache.refresh('current', { ...verifyOpts(cfg), urls: cfg.network.authority_urls })).doc;
    } catch (e) {
      log?.warn({ err: (e as Error).message }, 'could not fetch the network document; trying the cached copy');
    }
  }
  const doc = cache.load(verifyOpts(cfg));
  if (!doc) throw new Error(`${cfg.network.document}: missing, corrupt, expired or not signed by ${cfg.network.threshold} of the configured authorities`);
  return doc;
}

export interface OverlayOptions {
  readonly document: VerifiedDocument;
  readonly mailboxId: Uint8Array;
  /** The home gateway: a mail domain it serves, its node id in hex, or '' for the first one. */
  readonly home: string;
  readonly log: Log;
}

/**
 * The client connected to the overlay: the Network the client core routes by (document, home
 * gateway, where packets go) over a dial-only link, and the mailbox subscription. The link is
 * made first and the sink over it, so nothing is patched in afterwards.
 */
export class OverlayConnection implements Network {
  readonly sink: PacketSink;
  readonly mailboxId: Uint8Array;
  private subscriber: MailboxSubscriber | undefined;

  private constructor(
    readonly link: PacketLink,
    private readonly view: NetworkView,
    private readonly o: OverlayOptions,
  ) {
    this.mailboxId = o.mailboxId;
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
    view.add(o.document);
    view.update(o.document.body.epoch, false);
    const link = await PacketLink.create({
      identity: new Uint8Array(randomBytes(32)),
      listen: [],
      packetSize: packetSizes(o.document.body.geometry).packet,
      onFrame: () => undefined,
      isAllowedPeer: (p) => view.isKnownPeer(p),
      addressesOf: (p) => view.addressesOf(p),
    });
    o.log?.info({ epoch: o.document.body.epoch, layers: o.document.body.layers.length, gateways: o.document.body.gateways.length }, 'network document loaded');
    return new OverlayConnection(link, view, o);
  }

  document(): DocumentBody | null {
    return this.view.current?.body ?? null;
  }

  home(): NodeEntry | null {
    const d = this.document();
    return d ? pickHome(d, this.o.home) : null;
  }

  /** Follows a newer document: routing, the link's frame size, the admitted peers. */
  update(doc: VerifiedDocument): void {
    const before = this.view.current?.body.epoch;
    this.view.add(doc);
    if (!this.view.update(doc.body.epoch, false)) return;
    this.link.setPacketSize(packetSizes(doc.body.geometry).packet);
    void this.link.enforceAllowedPeers().catch(() => {});
    if (before !== doc.body.epoch) this.o.log?.info({ epoch: doc.body.epoch }, 'network document updated');
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
