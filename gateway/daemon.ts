/**
 * The gateway daemon (docs/gateway.md): the last hop for its domains.
 *
 *   link frame → HopEngine (Sphinx layer with the current/previous epoch key, durable replay
 *   tags) → deliver:
 *     MAIL_QUEUE_ID → Intake (token, reassembly, durable queue; one transaction) → ACK payload
 *                     through the fragment's SURB to the SURB's first hop
 *     other queue   → the client mailbox (bounded, TTL); a pacer writes one fixed-size frame
 *                     per tick to each `/postmix/mailbox/2` subscriber (an item or a dummy)
 *   or forward (a mix's loop cover, which passes a gateway on its way back) → a layer-1 mix of
 *   the document; any other next hop is dropped as `unknown-next-hop`.
 *   HandoffWorker → MX (SMTP/LMTP), issuance endpoint (HTTP), Prometheus metrics.
 *
 * Epochs: the epoch driver shared with the mix node (runtime/hop/epoch-driver.ts) fetches the
 * network document for the current and next epoch, uploads the descriptor (role gateway, served
 * domains, token issuer public key) for the next two epochs with Sphinx keys generated ahead of
 * time, and drops replay sets and key files once the previous epoch's grace window is over; the
 * store's housekeeping runs in the same tick.
 */
import { privateDir } from '../runtime/private-files.ts';
import { join } from 'node:path';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import * as lp from 'it-length-prefixed';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { encodeAck } from '../proto/fragment/index.ts';
import { HOP_DROP_REASONS, HopEngine } from '../proto/hop/engine.ts';
import { EpochDriver } from '../runtime/hop/epoch-driver.ts';
import { EpochKeys, openKeyStore } from '../runtime/hop/epoch-keys.ts';
import { idKey, NetworkView, type Peer } from '../runtime/hop/network-view.ts';
import { ReplayStore } from '../runtime/hop/replay-store.ts';
import { PacketLink } from '../runtime/link/index.ts';
import { MAILBOX_PROTOCOL, decodeSubscribe, encodeDummyItem, encodeItem, isMailQueue, mailboxRate } from '../proto/mailbox/index.ts';
import { epochAt, hex, type IdentityKey, type VerifiedDocument } from '../proto/pki/index.ts';
import { KeyStore } from '../runtime/pki/key-store.ts';
import { DEFAULT_GEOMETRY, fastestSuite, fastestSuiteSelection, packetFromSurb, packetSizes, type Geometry, type HopDeliver } from '../proto/sphinx/index.ts';
import { startMetricsServer, type MetricsServer } from '../runtime/daemon.ts';
import { useFastestTokenChecks, type IssuerKeys } from '../proto/tokens/index.ts';
import { loadOrCreateIssuer, type GatewayConfig } from './config.ts';
import { HandoffWorker } from './handoff.ts';
import { Intake, TOKEN_REJECT_REASONS } from './intake.ts';
import { startIssuanceServer, type IssuanceServer } from './issuance.ts';
import { GatewayStore } from './store.ts';

export interface GatewayOptions {
  readonly config: GatewayConfig;
  readonly logger: Logger;
  /** Unix seconds (tests move the clock); default Date.now()/1000. */
  readonly now?: () => number;
  readonly defaultMetrics?: boolean;
  readonly ignoreDelays?: boolean;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly fragmentsIn = new Counter({ name: 'postmix_gateway_fragments_in_total', help: 'Fragments delivered to the mail queue', registers: [this.registry] });
  readonly acks = new Counter({ name: 'postmix_gateway_acks_total', help: 'ACKs by status', labelNames: ['status'], registers: [this.registry] });
  readonly intakeDrops = new Counter({
    name: 'postmix_gateway_intake_dropped_total',
    help: 'Mail-queue payloads dropped without ACK',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly completed = new Counter({ name: 'postmix_gateway_messages_completed_total', help: 'Messages reassembled and queued', registers: [this.registry] });
  readonly tokensAccepted = new Counter({ name: 'postmix_gateway_tokens_accepted_total', help: 'Tokens accepted (new bindings)', registers: [this.registry] });
  readonly tokensRejected = new Counter({
    name: 'postmix_gateway_tokens_rejected_total',
    help: 'Tokens refused by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly tokensIssued = new Counter({ name: 'postmix_gateway_tokens_issued_total', help: 'Tokens evaluated for users', registers: [this.registry] });
  readonly queueDepth = new Gauge({
    name: 'postmix_gateway_queue_depth',
    help: 'Hand-off queue rows by state',
    labelNames: ['state'],
    registers: [this.registry],
  });
  readonly partials = new Gauge({ name: 'postmix_gateway_reassembly_pending', help: 'Incomplete messages held', registers: [this.registry] });
  readonly handoffLatency = new Histogram({
    name: 'postmix_gateway_handoff_seconds',
    help: 'One SMTP/LMTP hand-off (connect to 250)',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [this.registry],
  });
  readonly queueLatency = new Histogram({
    name: 'postmix_gateway_queued_to_delivered_seconds',
    help: 'From queueing to MX acceptance',
    buckets: [0.01, 0.1, 1, 10, 60, 600, 3600, 86_400],
    registers: [this.registry],
  });
  readonly handoffFailures = new Counter({
    name: 'postmix_gateway_handoff_failures_total',
    help: 'Hand-off failures',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly hopDrops = new Counter({
    name: 'postmix_gateway_packets_dropped_total',
    help: 'Sphinx packets dropped by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly forwarded = new Counter({
    name: 'postmix_gateway_packets_forwarded_total',
    help: 'Sphinx packets forwarded to a layer-1 mix (mix loop cover)',
    registers: [this.registry],
  });
  readonly mailboxItems = new Counter({ name: 'postmix_gateway_mailbox_items_total', help: 'Items stored in client mailboxes', registers: [this.registry] });
  readonly mailboxSent = new Counter({
    name: 'postmix_gateway_mailbox_sent_total',
    help: 'Frames written to subscribed mailbox streams (one per stream per pacer tick), by kind',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly mailboxDropped = new Counter({
    name: 'postmix_gateway_mailbox_dropped_total',
    help: 'Mailbox items dropped (full or expired)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly ackUnsent = new Counter({
    name: 'postmix_gateway_acks_unsent_total',
    help: 'ACKs that could not be sent',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly documents = new Counter({
    name: 'postmix_gateway_documents_total',
    help: 'Document fetches by result',
    labelNames: ['result'],
    registers: [this.registry],
  });

  constructor(defaults: boolean) {
    if (defaults) collectDefaultMetrics({ register: this.registry, prefix: 'postmix_gateway_' });
    for (const r of TOKEN_REJECT_REASONS) this.tokensRejected.inc({ reason: r }, 0);
    for (const r of [...HOP_DROP_REASONS, 'link-refused']) this.hopDrops.inc({ reason: r }, 0);
  }
}

export class Gateway {
  readonly log: Logger;
  readonly config: GatewayConfig;
  readonly store: GatewayStore;
  readonly issuer: IssuerKeys;
  readonly intake: Intake;
  readonly handoff: HandoffWorker;
  readonly metrics: GatewayMetrics;
  readonly identity: IdentityKey;
  readonly keyStore: KeyStore;
  readonly keys: EpochKeys;
  readonly view: NetworkView;
  readonly replay: ReplayStore;
  readonly now: () => number;
  engine: HopEngine<Peer>;
  private geometry: Geometry;
  private linkRef: PacketLink | undefined;
  private metricsServer: MetricsServer | undefined;
  private issuance: IssuanceServer | undefined;
  /**
   * Subscribed mailbox streams, by mailbox id; the pacer writes to the first of each. `pending`
   * is an upper bound on the items waiting, so a tick for an idle mailbox (the usual case: a
   * dummy) costs no SQLite query (~45 µs each, at λ_P + λ_L per client per second).
   */
  private readonly subscribers = new Map<string, { readonly id: Uint8Array; readonly streams: Map<Stream, PeerId>; pending: number }>();
  private pacer: NodeJS.Timeout | undefined;
  private readonly epochs: EpochDriver;
  private closed = false;

  private constructor(o: GatewayOptions) {
    this.config = o.config;
    this.log = o.logger;
    this.now = o.now ?? (() => Date.now() / 1000);
    const c = o.config;
    privateDir(c.dataDir);
    // same key-file rules as a mix: identity present, secret files 0600 (KeyFileError → exit 77)
    const opened = openKeyStore(c.keysDir);
    this.keyStore = opened.store;
    this.identity = opened.identity;
    this.keys = new EpochKeys(this.keyStore, c.epoch, this.now);
    this.view = new NetworkView(this.identity.nodeId);
    this.issuer = loadOrCreateIssuer(c.issuerSeedPath);
    this.store = new GatewayStore(c.dbPath);
    this.replay = new ReplayStore(join(c.dataDir, 'replay.sqlite'));
    this.metrics = new GatewayMetrics(o.defaultMetrics ?? true);
    const f = c.file;
    this.intake = new Intake(this.store, {
      domains: f.gateway.domains,
      issuer: this.issuer,
      maxMessageBytes: f.intake.max_message_bytes,
      reassemblyTtlMs: f.intake.reassembly_ttl_s * 1000,
      ackUnknownRecipient: f.intake.ack_unknown_recipient,
      now: () => this.now() * 1000,
    });
    this.handoff = new HandoffWorker({
      store: this.store,
      mx: {
        host: f.mx.host,
        port: f.mx.port,
        protocol: f.mx.protocol,
        starttls: f.mx.starttls,
        tlsVerify: f.mx.tls_verify,
        heloName: f.mx.helo_name,
        envelopeFrom: f.mx.envelope_from,
      },
      baseDelayMs: f.mx.retry_base_s * 1000,
      maxDelayMs: f.mx.retry_max_s * 1000,
      maxAgeMs: f.mx.max_age_s * 1000,
      recovery: f.mx.recovery,
      concurrency: f.mx.concurrency,
      now: () => this.now() * 1000,
      log: this.log,
      onDelivered: (_r, sendS, queuedS) => {
        this.metrics.handoffLatency.observe(sendS);
        this.metrics.queueLatency.observe(queuedS);
      },
      onFailure: (_r, _e, permanent) => this.metrics.handoffFailures.inc({ kind: permanent ? 'permanent' : 'transient' }),
    });
    this.epochs = new EpochDriver({
      config: c,
      identity: this.identity,
      keys: this.keys,
      view: this.view,
      replay: this.replay,
      log: this.log,
      now: this.now,
      descriptor: () => ({
        peerId: this.link.peerId.toString(),
        addresses: this.addresses(),
        role: 'gateway',
        gateway: {
          domains: f.gateway.domains,
          // one POPRF issuer key per gateway; recipients' key epochs are inside the POPRF info
          issuerKeys: [{ keyEpoch: 0, publicKey: this.issuer.publicKey }],
          keyDirectoryUrl: f.issuance.public_url,
          policy: 'token-required',
        },
      }),
      onView: (e) => this.followGeometry(e),
      afterRound: (t) => this.housekeeping(t),
      onFetch: (result) => this.metrics.documents.inc({ result }),
    });
    const cached = this.epochs.restoreCached();
    this.geometry = cached ? cached.body.geometry : DEFAULT_GEOMETRY;
    this.engine = this.newEngine(this.geometry, o.ignoreDelays === true);
    this.epochs.updateView();
  }

  static async start(o: GatewayOptions): Promise<Gateway> {
    const g = new Gateway(o);
    try {
      await g.startIo();
    } catch (e) {
      await g.close().catch(() => {});
      throw e;
    }
    return g;
  }

  private newEngine(geometry: Geometry, ignoreDelays: boolean): HopEngine<Peer> {
    return new HopEngine<Peer>({
      geometry,
      replay: this.replay,
      keys: () => this.keys.keys(),
      // mixes' loop cover passes through a gateway on its way back into layer 1
      resolveNext: (id) => this.view.resolveNext(id),
      forward: (next, packet) => {
        if (this.link.send(next.peerId, packet)) this.metrics.forwarded.inc();
        else this.metrics.hopDrops.inc({ reason: 'link-refused' });
      },
      deliver: (r) => this.onDeliver(r),
      maxQueuedBytes: this.config.file.limits.max_queued_bytes,
      onDrop: (reason) => this.metrics.hopDrops.inc({ reason }),
      ignoreDelays,
    });
  }

  private async startIo(): Promise<void> {
    const f = this.config.file;
    const e = epochAt(this.config.epoch, this.now());
    this.keys.ensure([e, e + 1, e + 2]);
    // token checks on libsodium before the first fragment can arrive; a fallback is only slower
    const tokenChecks = await useFastestTokenChecks();
    if (tokenChecks.fallbackReason) this.log.warn(tokenChecks.fallbackReason);
    const sphinx = fastestSuiteSelection();
    if (sphinx.fallbackReason) this.log.warn(sphinx.fallbackReason);
    this.linkRef = await PacketLink.create({
      identity: this.identity.seed,
      listen: [f.gateway.listen],
      packetSize: packetSizes(this.geometry).packet,
      onFrame: (frame) => {
        if (!this.closed) this.engine.handle(frame);
      },
      isAllowedPeer: (peer: PeerId) => this.view.isKnownPeer(peer),
      // clients connect to fetch their mailboxes
      allowUnknownInbound: true,
      addressesOf: (peer) => this.view.addressesOf(peer),
      maxQueuedFramesPerPeer: f.limits.per_peer_queue,
      maxBatchFrames: f.limits.max_batch_frames,
      maxConnections: f.limits.max_connections,
      logger: this.log,
    });
    await this.linkRef.libp2pNode.handle(MAILBOX_PROTOCOL, (stream, conn) => this.onMailboxStream(stream, conn), {
      maxInboundStreams: 4,
      maxOutboundStreams: 0,
    });
    if (f.metrics.enabled) this.metricsServer = await startMetricsServer(this.metrics.registry, f.metrics.host, f.metrics.port);
    if (f.issuance.enabled)
      this.issuance = await startIssuanceServer(this.store, this.issuer, f.issuance.host, f.issuance.port, {
        maxPerRequest: f.issuance.max_per_request,
        onIssued: (n) => this.metrics.tokensIssued.inc(n),
      });
    this.handoff.start();
    this.schedulePacer();
    this.log.info(
      {
        nodeId: hex(this.identity.nodeId),
        peerId: this.link.peerId.toString(),
        addrs: this.addresses(),
        domains: f.gateway.domains,
        issuerPublicKey: hex(this.issuer.publicKey),
        mx: `${f.mx.protocol}://${f.mx.host}:${f.mx.port}`,
        issuance: this.issuance ? `http://${f.issuance.host}:${this.issuance.port}` : 'off',
        metrics: this.metricsServer ? `http://${f.metrics.host}:${this.metricsServer.port}/metrics` : 'off',
        sphinxSuite: sphinx.suite.name,
        tokenChecks: tokenChecks.evaluator.name,
      },
      'gateway listening',
    );
    await this.epochs.start(f.gateway.tick_ms);
  }

  get link(): PacketLink {
    if (!this.linkRef) throw new Error('gateway link not started');
    return this.linkRef;
  }

  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  get issuancePort(): number | undefined {
    return this.issuance?.port;
  }

  addresses(): string[] {
    const a = this.config.file.gateway.announce;
    if (a) return [...a];
    return this.link.multiaddrs().map((m) => m.toString().replace(/\/p2p\/[^/]+$/, ''));
  }

  // ---- final hop ----

  private onDeliver(r: HopDeliver): void {
    if (!isMailQueue(r.queueId)) return this.toMailbox(r);
    this.metrics.fragmentsIn.inc();
    const res = this.intake.handlePayload(r.payload);
    if (res.kind === 'drop') {
      this.metrics.intakeDrops.inc({ reason: res.reason });
      this.log.debug({ reason: res.reason }, 'mail payload dropped');
      return;
    }
    this.metrics.acks.inc({ status: String(res.status) });
    if (res.tokenReason) this.metrics.tokensRejected.inc({ reason: res.tokenReason });
    if (res.tokenAccepted) this.metrics.tokensAccepted.inc();
    if (res.queueId) {
      this.metrics.completed.inc();
      this.log.info({ queueId: res.queueId }, 'message complete and queued');
      this.handoff.wake();
    }
    // the ACK goes out only now: the fragment (and message) is committed
    this.sendAck(res.fragment.surb, encodeAck({ messageId: res.fragment.messageId, index: res.fragment.index, status: res.status }));
  }

  private sendAck(surb: Uint8Array, ack: Uint8Array): void {
    if (surb.length === 0) return;
    const p = packetFromSurb(fastestSuite, this.geometry, surb, ack);
    if (!p.ok) {
      this.metrics.ackUnsent.inc({ reason: p.reason });
      return;
    }
    const n = this.view.peerOf(p.firstHop);
    if (!n) {
      this.metrics.ackUnsent.inc({ reason: 'unknown-first-hop' });
      return;
    }
    try {
      if (!this.link.send(n.peerId, p.packet)) this.metrics.ackUnsent.inc({ reason: 'link-refused' });
    } catch {
      this.metrics.ackUnsent.inc({ reason: 'link-refused' });
    }
  }

  /**
   * Every client-mailbox item is stored; the pacer alone writes to subscribers, one fixed-size
   * frame per tick, so what the client's link shows does not depend on what arrived.
   */
  private toMailbox(r: HopDeliver): void {
    const f = this.config.file.mailbox;
    const item = r.surbId ? { surbId: r.surbId, payload: r.payload } : { payload: r.payload };
    const dropped = this.store.mailboxPut(r.queueId, item, this.now() * 1000, f.ttl_s * 1000, f.max_items);
    const sub = this.subscribers.get(idKey(r.queueId));
    if (sub) sub.pending++;
    this.metrics.mailboxItems.inc();
    if (dropped > 0) this.metrics.mailboxDropped.inc({ reason: 'full' }, dropped);
  }

  private onMailboxStream(stream: Stream, conn: Connection): void {
    void (async () => {
      let key: string | null = null;
      try {
        for await (const frame of lp.decode(stream, { maxDataLength: 64 })) {
          if (key !== null) continue; // only one subscribe per stream
          const id = decodeSubscribe(frame.subarray());
          if (!id) {
            stream.abort(new Error('bad subscribe frame'));
            return;
          }
          key = idKey(id);
          let sub = this.subscribers.get(key);
          if (!sub) this.subscribers.set(key, (sub = { id, streams: new Map(), pending: this.store.mailboxSize(id) }));
          sub.streams.set(stream, conn.remotePeer);
          this.log.debug({ peer: conn.remotePeer.toString() }, 'mailbox subscribed');
        }
      } catch (e) {
        this.log.debug({ err: String(e) }, 'mailbox stream ended');
      } finally {
        if (key !== null) {
          const sub = this.subscribers.get(key);
          sub?.streams.delete(stream);
          if (sub && sub.streams.size === 0) this.subscribers.delete(key);
        }
      }
    })();
  }

  /** Ticks at the mailbox rate of the current document (re-read each tick: it may change per epoch). */
  private schedulePacer(): void {
    if (this.closed) return;
    const mixing = this.view.current?.body.mixing;
    this.pacer = setTimeout(
      () => {
        this.paceMailboxes();
        this.schedulePacer();
      },
      1000 / mailboxRate(mixing ?? { lambdaP: 1, lambdaL: 0 }),
    );
    this.pacer.unref();
  }

  /** One frame on each subscribed stream: the oldest waiting item, or a dummy. */
  private paceMailboxes(): void {
    const payloadSize = this.geometry.payloadSize;
    const nowMs = this.now() * 1000;
    for (const sub of this.subscribers.values()) {
      const first = sub.streams.entries().next();
      if (first.done) continue;
      const [stream, peer] = first.value;
      let frame: Uint8Array | null = null;
      let taken: { surbId?: Uint8Array; payload: Uint8Array } | undefined;
      while (frame === null) {
        taken = sub.pending > 0 ? this.store.mailboxTake(sub.id, nowMs, 1)[0] : undefined;
        if (taken) sub.pending--;
        else sub.pending = 0; // expired or purged meanwhile: the bound was loose
        if (!taken) {
          frame = encodeDummyItem(payloadSize);
          this.metrics.mailboxSent.inc({ kind: 'dummy' });
          break;
        }
        try {
          frame = encodeItem(taken, payloadSize);
          this.metrics.mailboxSent.inc({ kind: taken.surbId ? 'surb-reply' : 'plain' });
        } catch {
          // stored under another geometry: it would stand out on the wire, so it is dropped
          this.metrics.mailboxDropped.inc({ reason: 'other-geometry' });
        }
      }
      try {
        stream.send(lp.encode.single(frame).subarray());
        this.link.captureFrame(MAILBOX_PROTOCOL, 'out', peer, frame.length);
      } catch {
        sub.streams.delete(stream);
        // not lost: back into the mailbox for the next stream the client opens
        if (taken) {
          this.store.mailboxPut(sub.id, taken, nowMs, this.config.file.mailbox.ttl_s * 1000, this.config.file.mailbox.max_items);
          sub.pending++;
        }
      }
    }
  }

  // ---- epochs ----

  tick(): Promise<void> {
    return this.epochs.tick();
  }

  /** Installs a verified document (what a fetch does; also for tests and tools). */
  installDocument(doc: VerifiedDocument): void {
    this.view.add(doc);
    this.epochs.updateView();
  }

  /** A new geometry means a new packet size: what is queued under the old one is dropped. */
  private followGeometry(e: number): void {
    const cur = this.view.get(e);
    if (
      cur &&
      (cur.body.geometry.payloadSize !== this.geometry.payloadSize ||
        cur.body.geometry.maxHops !== this.geometry.maxHops ||
        cur.body.geometry.perHopSize !== this.geometry.perHopSize)
    ) {
      this.geometry = cur.body.geometry;
      this.engine.close();
      this.engine = this.newEngine(this.geometry, false);
      this.link.setPacketSize(packetSizes(this.geometry).packet);
    }
  }

  private housekeeping(t: number): void {
    const nowMs = t * 1000;
    const expired = this.store.purgeExpiredPartials(nowMs);
    if (expired > 0) this.log.info({ expired }, 'incomplete messages expired');
    const mb = this.store.purgeExpiredMailbox(nowMs);
    if (mb > 0) this.metrics.mailboxDropped.inc({ reason: 'expired' }, mb);
    this.store.purge({ deliveredBefore: nowMs - this.config.file.mx.keep_delivered_s * 1000 });
    this.store.purgeRate(Math.floor(nowMs / 3_600_000) - 1);
    const spent = this.store.purgeOldSpent();
    if (spent > 0) this.log.info({ spent }, 'spent tokens of rotated-out key epochs forgotten');
    const depth = this.store.queueDepth();
    for (const [state, n] of Object.entries(depth)) this.metrics.queueDepth.set({ state }, n);
    this.metrics.partials.set(this.store.partialCount());
  }

  /** Graceful shutdown: stop taking frames, deliver what falls due soon, finish the hand-off pass, close. */
  async close(graceMs = this.config.file.gateway.shutdown_grace_ms): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.epochs.stop();
    await this.engine.drain(Math.floor(graceMs * 0.5)).catch(() => 0);
    await this.handoff.stop();
    clearTimeout(this.pacer);
    for (const sub of this.subscribers.values()) for (const s of sub.streams.keys()) s.abort(new Error('gateway stopping'));
    if (this.linkRef) await this.linkRef.stop(Math.floor(graceMs * 0.3)).catch(() => {});
    this.engine.close();
    await this.issuance?.close();
    await this.metricsServer?.close();
    this.replay.close();
    this.store.close();
  }
}
