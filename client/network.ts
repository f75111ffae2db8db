/**
 * The client's view of the overlay: the verified network document (the PKI client's cache file,
 * re-verified against the configured authorities), the home gateway, the client's mailbox id
 * (random, kept in data_dir so SURBs made before a restart still lead home), and the packet
 * link: a dial-only PacketLink to layer-1 mixes plus a `/postmix/mailbox/2` subscription to the
 * home gateway that feeds ACKs and returning loops to the sender.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { peerIdFromString } from '@libp2p/peer-id';
import type { PeerId, Stream } from '@libp2p/interface';
import * as lp from 'it-length-prefixed';
import { PacketLink, parseMultiaddr } from '../runtime/link/index.ts';
import { findNode, type DocumentBody, type NodeEntry, type VerifiedDocument } from '../proto/pki/index.ts';
import { DocumentCache } from '../runtime/pki/client.ts';
import { MAILBOX_PROTOCOL, decodeItem, encodeSubscribe, type MailboxItem } from '../proto/mailbox/index.ts';
import { packetSizes } from '../proto/sphinx/index.ts';
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

/** A Network over a fixed document (tests, or a caller that refreshes the document itself). */
export class StaticNetwork implements Network {
  constructor(
    public doc: DocumentBody | null,
    readonly sink: PacketSink,
    readonly mailboxId: Uint8Array,
    private readonly homeWant = '',
  ) {}
  document(): DocumentBody | null {
    return this.doc;
  }
  home(): NodeEntry | null {
    return this.doc ? pickHome(this.doc, this.homeWant) : null;
  }
}

/**
 * Reads and verifies the cached network document named in the config. Returns null when no
 * document is configured. The returned Network's sink is not connected: see `attachLink`.
 */
function verifyOpts(cfg: ClientConfig) {
  return {
    authorities: cfg.network.authorities.map((h) => Uint8Array.from(Buffer.from(h, 'hex'))),
    threshold: cfg.network.threshold,
    now: Math.floor(Date.now() / 1000),
  };
}

/**
 * Fetches the current document from the authorities (when `authority_urls` are set) and keeps
 * the cache file up to date; falls back to the cached copy. Updates `net` in place.
 */
export async function refreshDocument(net: StaticNetwork, cfg: ClientConfig, log: Log): Promise<void> {
  if (!cfg.network.document || cfg.network.authority_urls.length === 0) return;
  try {
    const r = await new DocumentCache(cfg.network.document).refresh('current', { ...verifyOpts(cfg), urls: cfg.network.authority_urls });
    if (!net.doc || r.doc.body.epoch !== net.doc.epoch) log?.info({ epoch: r.doc.body.epoch, fromCache: r.fromCache }, 'network document updated');
    net.doc = r.doc.body;
  } catch (e) {
    log?.warn({ err: (e as Error).message }, 'network document refresh failed; keeping the current one');
  }
}

export async function loadNetworkDocument(cfg: ClientConfig, log: Log): Promise<StaticNetwork | null> {
  if (!cfg.network.document) return null;
  if (cfg.network.authorities.length === 0) throw new Error('network.authorities is empty: cannot verify the network document');
  const cache = new DocumentCache(cfg.network.document);
  if (cfg.network.authority_urls.length > 0) {
    try {
      await cache.refresh('current', { ...verifyOpts(cfg), urls: cfg.network.authority_urls });
    } catch (e) {
      log?.warn({ err: (e as Error).message }, 'could not fetch the network document; trying the cached copy');
    }
  }
  const doc: VerifiedDocument | undefined = cache.load(verifyOpts(cfg));
  if (!doc) throw new Error(`${cfg.network.document}: missing, corrupt, expired or not signed by ${cfg.network.threshold} of the configured authorities`);
  log?.info({ epoch: doc.body.epoch, layers: doc.body.layers.length, gateways: doc.body.gateways.length }, 'network document loaded');
  return new StaticNetwork(doc.body, { send: () => undefined }, loadMailboxId(cfg.data_dir), cfg.network.home_gateway);
}

export interface AttachedLink {
  readonly link: PacketLink;
  stop(): Promise<void>;
}

function peerOf(doc: DocumentBody, nodeId: Uint8Array): NodeEntry | undefined {
  return findNode(doc, nodeId);
}

/**
 * Connects a StaticNetwork to the mixnet: packets go to layer-1 mixes over a dial-only
 * PacketLink; the home gateway's mailbox stream delivers items to `onItem`, and is reopened
 * (bounded back-off) when it drops.
 */
export async function attachLink(net: StaticNetwork, onItem: (item: MailboxItem) => void, log: Log): Promise<AttachedLink> {
  const doc0 = net.document();
  if (!doc0) throw new Error('no network document');
  const byPeer = (p: PeerId): NodeEntry | undefined => {
    const d = net.document();
    const s = p.toString();
    return d ? [...d.layers.flat(), ...d.gateways].find((n) => n.peerId === s) : undefined;
  };
  const link = await PacketLink.create({
    identity: new Uint8Array(randomBytes(32)),
    listen: [],
    packetSize: packetSizes(doc0.geometry).packet,
    onFrame: () => undefined,
    isAllowedPeer: (p) => byPeer(p) !== undefined,
    addressesOf: (p) => byPeer(p)?.addresses.map((a) => parseMultiaddr(a)),
  });
  (net as { sink: PacketSink }).sink = {
    send(firstHop, packet) {
      const d = net.document();
      const n = d && peerOf(d, firstHop);
      if (!n) {
        log?.warn({}, 'first hop not in the network document; packet dropped');
        return;
      }
      link.send(peerIdFromString(n.peerId), packet);
    },
  };
  let stopped = false;
  let stream: Stream | null = null;
  const subscribe = async (): Promise<void> => {
    for (let backoff = 500; !stopped; backoff = Math.min(backoff * 2, 30_000)) {
      const home = net.home();
      if (home) {
        try {
          stream = await link.libp2pNode.dialProtocol(
            home.addresses.map((a) => parseMultiaddr(a)),
            MAILBOX_PROTOCOL,
          );
          stream.send(lp.encode.single(encodeSubscribe(net.mailboxId)).subarray());
          log?.info({ gateway: home.peerId }, 'mailbox subscribed');
          backoff = 500;
          const homePeer = peerIdFromString(home.peerId);
          for await (const frame of lp.decode(stream, { maxDataLength: 64 * 1024 })) {
            const bytes = frame.subarray();
            link.captureFrame(MAILBOX_PROTOCOL, 'in', homePeer, bytes.length);
            const item = decodeItem(bytes);
            // dummies keep the gateway's constant rate; nothing to do with them
            if (item === 'dummy') continue;
            if (item === null) {
              log?.warn({ gateway: home.peerId }, 'malformed mailbox frame dropped');
              continue;
            }
            try {
              onItem(item);
            } catch (e) {
              log?.warn({ err: String(e) }, 'mailbox item handling failed');
            }
          }
        } catch (e) {
          if (!stopped) log?.warn({ err: String(e) }, 'mailbox stream failed; retrying');
        }
      }
      if (!stopped) await new Promise((r) => setTimeout(r, backoff));
    }
  };
  void subscribe();
  return {
    link,
    async stop() {
      stopped = true;
      try {
        stream?.abort(new Error('client stopping'));
      } catch {
        /* already closed */
      }
      await link.stop();
    },
  };
}
