/**
 * An in-process mixnet with real Sphinx processing (no sockets, no delays) and the real gateway
 * intake (gateway/intake.ts over a GatewayStore in memory, with its own token issuer), so the
 * client's sending, ACK and resend logic is tested end to end against what a gateway decides.
 * Mailbox items wait in `mailboxes` (or go to `mailboxSink`); tests feed them to the client.
 */
import { createHash } from 'node:crypto';
import { decodePayload } from '../../proto/fragment/index.ts';
import { isMailQueue, mailboxItemOf, type MailboxItem } from '../../proto/mailbox/index.ts';
import { DEFAULT_MIXING, type MixingParams } from '../../proto/mixing/params.ts';
import type { DocumentBody, GatewayInfo, NodeEntry } from '../../proto/pki/codec.ts';
import { nodeSuite, packetFromSurb, prepareHopKey, processPacket, type Geometry, type HopPrivateKey } from '../../proto/sphinx/index.ts';
import { deriveIssuerKeys, makeBundle, type IssuerKeys } from '../../proto/tokens/index.ts';
import type { Network } from '../../client/core.ts';
import { pickHome } from '../../client/network.ts';
import type { PacketSink } from '../../client/sender.ts';
import { Intake, replyOf } from '../../gateway/intake.ts';
import { GatewayStore } from '../../gateway/store.ts';
import { issuedTokens } from './tokens.ts';

export interface InProcessNode {
  readonly entry: NodeEntry;
  readonly key: HopPrivateKey;
}

function mkNode(name: string, layer: number, gateway?: GatewayInfo): InProcessNode {
  const sk = createHash('sha256').update(`sim-node|${name}`).digest();
  const identityKey = new Uint8Array(createHash('sha256').update(`sim-id|${name}`).digest());
  const nodeId = new Uint8Array(createHash('sha256').update(identityKey).digest());
  const entry: NodeEntry = {
    nodeId,
    identityKey,
    peerId: `sim-${name}`,
    addresses: [],
    sphinxKey: nodeSuite.publicKey(new Uint8Array(sk)),
    sphinxKeysAhead: [],
    layer,
    gateway,
  };
  return { entry, key: prepareHopKey(nodeSuite, new Uint8Array(sk)) };
}

export interface InProcessMixnetOptions {
  readonly layers?: number;
  readonly perLayer?: number;
  readonly geometry?: Geometry;
  readonly mixing?: MixingParams;
  /** mail domains served by the (single) gateway, which is also the client's home */
  readonly domains?: readonly string[];
  /** recipients need no token (the gateway's users have the open policy) */
  readonly openPolicy?: boolean;
}

export class InProcessMixnet implements PacketSink {
  readonly nodes = new Map<string, InProcessNode>();
  readonly layers: InProcessNode[][];
  readonly gateway: InProcessNode;
  /** the gateway's token issuer, store and intake: the real ones (gateway/), over SQLite in memory */
  readonly issuer: IssuerKeys = deriveIssuerKeys(new Uint8Array(createHash('sha256').update('in-process gateway issuer').digest()));
  readonly store = new GatewayStore(':memory:');
  readonly intake: Intake;
  private readonly open: boolean;
  readonly doc: DocumentBody;
  /** node ids (hex) that silently drop every packet */
  readonly blackholes = new Set<string>();
  /** recipients whose fragments the gateway stores but never ACKs (an ACK-withholding gateway) */
  readonly withholdAcksTo = new Set<string>();
  /** every fragment the gateway received, in order, stamped with `clock()` */
  readonly arrivals: { recipient: string; messageId: string; index: number; at: number }[] = [];
  /** the time arrivals are stamped with (tests set it to their fake clock) */
  clock: () => number = () => 0;
  /** reassembled messages the gateway queued, by recipient */
  readonly delivered: { recipient: string; bytes: Uint8Array }[] = [];
  readonly mailboxes = new Map<string, MailboxItem[]>();
  /** each forward packet's first hop (hex), in order */
  readonly firstHops: string[] = [];
  readonly routesSeen: string[][] = [];
  packetsIn = 0;
  drops = 0;
  /** when set, mailbox items go here (a real mailbox server) instead of `mailboxes` */
  mailboxSink: ((mailboxId: Uint8Array, item: MailboxItem) => void) | undefined;
  /** when false, packets are queued until `flush()` */
  autoDeliver = true;
  private readonly queue: { hop: string; packet: Uint8Array; path: string[] }[] = [];

  constructor(o: InProcessMixnetOptions = {}) {
    const L = o.layers ?? 3;
    const per = o.perLayer ?? 2;
    this.layers = [];
    for (let l = 1; l <= L; l++) {
      const layer: InProcessNode[] = [];
      for (let i = 0; i < per; i++) layer.push(mkNode(`mix-${l}-${i}`, l));
      this.layers.push(layer);
    }
    const domains = [...(o.domains ?? ['overlay.test'])];
    this.open = o.openPolicy === true;
    this.gateway = mkNode('gateway', 0, {
      domains,
      issuerKeys: [{ keyEpoch: 0, publicKey: this.issuer.publicKey }],
      keyDirectoryUrl: '',
      policy: this.open ? 'open-rate-limited' : 'token-required',
    });
    this.intake = new Intake(this.store, {
      domains,
      issuer: this.issuer,
      maxMessageBytes: 64 * 1024 * 1024,
      reassemblyTtlMs: 86_400_000,
      now: () => this.clock(),
    });
    for (const n of [...this.layers.flat(), this.gateway]) this.nodes.set(Buffer.from(n.entry.nodeId).toString('hex'), n);
    this.doc = {
      version: 1,
      epoch: 1,
      // one epoch that spans every test's clock, so the document is current whenever it is read
      validAfter: 0,
      freshUntil: 2 ** 31,
      validUntil: 2 ** 31,
      epochLength: 2 ** 31,
      grace: 600,
      geometry: o.geometry ?? { maxHops: 5, perHopSize: 64, payloadSize: 2048 },
      mixing: o.mixing ?? DEFAULT_MIXING,
      layers: this.layers.map((l) => l.map((n) => n.entry)),
      gateways: [this.gateway.entry],
      authorities: [],
      threshold: 1,
      previousDigest: new Uint8Array(32),
    };
  }

  send(firstHop: Uint8Array, packet: Uint8Array): void {
    this.packetsIn++;
    const h = Buffer.from(firstHop).toString('hex');
    this.firstHops.push(h);
    this.queue.push({ hop: h, packet, path: [] });
    if (this.autoDeliver) this.flush();
  }

  /** Processes every queued packet to its end (forward, ACK replies, loops). */
  flush(): void {
    for (let guard = 0; this.queue.length > 0 && guard < 1_000_000; guard++) {
      const { hop, packet, path } = this.queue.shift()!;
      this.process(hop, packet, path);
    }
  }

  private process(hopHex: string, packet: Uint8Array, path: string[]): void {
    const node = this.nodes.get(hopHex);
    if (!node || this.blackholes.has(hopHex)) {
      this.drops++;
      return;
    }
    const r = processPacket(this.doc.geometry, node.key, packet);
    const p = [...path, hopHex];
    if (!r.ok) {
      this.drops++;
      return;
    }
    if (r.kind === 'forward') {
      this.queue.push({ hop: Buffer.from(r.next).toString('hex'), packet: r.packet, path: p });
      return;
    }
    if (r.kind === 'drop') return;
    this.routesSeen.push(p);
    if (isMailQueue(r.queueId)) return this.gatewayIntake(r.payload);
    // as the real gateway: only SURB replies enter a mailbox (gateway/daemon.ts admitDeliver)
    const item = mailboxItemOf(r);
    if (!item) this.drops++;
    else if (this.mailboxSink) this.mailboxSink(r.queueId, item);
    else {
      const k = Buffer.from(r.queueId).toString('hex');
      const box = this.mailboxes.get(k) ?? [];
      box.push(item);
      this.mailboxes.set(k, box);
    }
  }

  /** A recipient at the gateway (added once; open policy when the network is open). */
  user(address: string): void {
    // one key epoch from the start of time, without end: the tests' clocks are their own
    if (!this.store.getUser(address)) this.store.addUser(address, { policy: this.open ? 'open' : 'tokens', ratePerHour: 1_000_000, now: 0, rotationS: 0 });
  }

  /** A bundle of `n` tokens the gateway issued for `recipient` (made a user), as the recipient hands it out. */
  bundle(recipient: string, n: number): string {
    this.user(recipient);
    const u = this.store.getUser(recipient)!;
    const e = this.store.schedule(u.address, 0).current;
    const window = () => ({ notBefore: e.starts, expires: e.ends });
    return JSON.stringify(makeBundle(u.address, this.issuer.publicKey, issuedTokens(this.issuer, u.address, e.keyEpoch, n), window));
  }

  /** The gateway's mail queue: the real Intake decides, the ACK (or a decoy's answer) goes back through the SURB (`replyOf`, as the real gateway). */
  private gatewayIntake(payload: Uint8Array): void {
    const d = decodePayload(payload);
    if (d.ok && d.kind === 'fragment')
      this.arrivals.push({
        recipient: d.fragment.recipient,
        messageId: Buffer.from(d.fragment.messageId).toString('hex'),
        index: d.fragment.index,
        at: this.clock(),
      });
    const res = this.intake.handlePayload(payload);
    if (res.kind === 'drop') {
      this.drops++;
      return;
    }
    if (res.kind === 'ack') {
      const f = res.fragment;
      if (res.handoffId) this.delivered.push({ recipient: f.recipient, bytes: new Uint8Array(this.store.byHandoffId(res.handoffId)!.body!) });
      if (this.withholdAcksTo.has(f.recipient)) return;
    }
    const answer = replyOf(res);
    if (!answer) return;
    const reply = packetFromSurb(nodeSuite, this.doc.geometry, answer.surb, answer.payload);
    if (reply.ok) this.queue.push({ hop: Buffer.from(reply.firstHop).toString('hex'), packet: reply.packet, path: [] });
  }

  /** The network as a client core sees it: this document, this gateway as home, packets to `sink` (default: into this network). */
  network(mailboxId: Uint8Array, sink: PacketSink = this): TestNetwork {
    return new TestNetwork(this.doc, sink, mailboxId);
  }

  /** Takes every item waiting in a mailbox. */
  fetch(mailboxId: Uint8Array): MailboxItem[] {
    const k = Buffer.from(mailboxId).toString('hex');
    const items = this.mailboxes.get(k) ?? [];
    this.mailboxes.delete(k);
    return items;
  }
}

/** A Network whose document the test sets (`doc`: an attacker's, or none), with packets to `sink`. */
export class TestNetwork implements Network {
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

/** A small deterministic uniform generator (mulberry32) for reproducible tests and benches. */
export function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
