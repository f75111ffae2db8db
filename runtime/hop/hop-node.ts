/**
 * One hop of the mixnet, a mix or a gateway alike (as in Katzenpost's one server with pluggable
 * roles): the packet link, the Sphinx pipeline, the epoch driver, the network view, the keys,
 * the replay store, the hop's metrics and the metrics endpoint. What differs between the roles
 * is given as a `HopRole`: the role's part of the descriptor, whether clients may connect, which
 * final-hop packets the hop takes and what it does with them, extra protocols on the link, and
 * the role's own periodic work.
 *
 *   link frame → processor → HopEngine: Sphinx layer with the current or previous epoch key,
 *   replay tag, delay queue → forward to the next hop's peer (a legal next hop in the document)
 *   | deliver to the role
 *
 * The processor is the engine itself on the event loop (`[crypto] workers = 0`), or the pool of
 * Sphinx worker threads (runtime/hop/unwrap-pool.ts): the layer is peeled in a worker, the
 * replay check and the scheduling stay on the event loop.
 *
 * Every `tick_ms` the epoch driver fetches documents, uploads the descriptor with Sphinx keys
 * made ahead of time and expires the previous epoch. When the view changes, the node installs
 * it: the packet size of the link, a new engine when the geometry changed (the old one keeps
 * releasing what it holds until it is empty, then closes), and the allowed peers (connections to
 * peers that left the documents are closed).
 *
 * Lifecycle: `listen()` (link, extra protocols, metrics endpoint), then the role starts its own
 * servers, then `followEpochs()` (the first directory round, then every tick); `close()`.
 */
import { join } from 'node:path';
import type { PeerId } from '@libp2p/interface';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { HopEngine, type HopCounters } from '../../proto/hop/engine.ts';
import { epochAt, epochStart, type IdentityKey, type VerifiedDocument } from '../../proto/pki/index.ts';
import { DEFAULT_GEOMETRY, fastestSuiteSelection, packetSizes, type Geometry, type HopDeliver } from '../../proto/sphinx/index.ts';
import { hex } from '../../proto/util/bytes.ts';
import { samplePerHopDelayMs } from '../../proto/mixing/params.ts';
import { csprngUniform } from '../../proto/util/random.ts';
import type { CryptoSection, DirectorySection, LimitsSection, MetricsSection, ReplaySection, ResolvedHopConfig } from '../config-schema.ts';
import { listenError } from '../errors.ts';
import { PacketLink } from '../link/link.ts';
import { privateDir } from '../private-files.ts';
import { readiness as checkAll, type Readiness as ProbeResult } from '../health.ts';
import { newRegistry, startMetricsServer, type MetricsServer } from '../metrics.ts';
import type { KeyStore } from '../pki/key-store.ts';
import { EpochDriver, type DescriptorFields } from './epoch-driver.ts';
import { EpochKeys, openKeyStore } from './epoch-keys.ts';
import { HopMetrics, type NodeDropReason } from './metrics.ts';
import { NetworkView, type Peer } from './network-view.ts';
import { LogReplayStore, ReplayStore, type ReplayTagStore } from './replay-store.ts';
import { PooledFrames, UnwrapPool, type PoolStats } from './unwrap-pool.ts';

/** The sections of a mix or gateway config the hop node reads. */
export type HopNodeConfig = ResolvedHopConfig<{
  readonly directory: DirectorySection;
  readonly limits: LimitsSection;
  readonly metrics: MetricsSection;
  readonly replay: ReplaySection;
  readonly crypto: CryptoSection;
}>;

/** Where a final-hop packet came in: the epoch of the key that opened it and the geometry it had. */
export interface DeliveryContext {
  readonly epoch: number;
  readonly geometry: Geometry;
}

/** What a role supplies to the hop node. */
export interface HopRole {
  /** The role's part of its descriptor, asked at each upload (peer id and addresses are the node's). */
  descriptor(): Omit<DescriptorFields, 'peerId' | 'addresses'>;
  /** Admit inbound connections from peers outside the held documents (clients)? Asked per connection. */
  acceptsClients(view: NetworkView): boolean;
  /** Final-hop packets this hop takes; others are dropped at once as `not-deliverable`. Default: all. */
  admitDeliver?(r: HopDeliver): boolean;
  /** Final-hop packets taken at arrival, without their header delay: the role holds its answer instead (`HopNode.emit`). */
  deliverAtOnce?(r: HopDeliver): boolean;
  /** A final-hop packet whose delay is over (or, for `deliverAtOnce`, that just arrived). */
  deliver(r: HopDeliver, at: DeliveryContext): void;
  /** Serves the role's extra protocols on the link (called once the link is up, before peers are admitted to them). */
  serve?(link: PacketLink): Promise<void>;
  /** The role's own periodic work, in the epoch driver's tick (never overlapping a round). */
  afterRound?(t: number): void;
  /** Shutdown: the delay queue has drained and the link is still up (e.g. to commit and answer what waits). */
  drained?(): void;
  /** The role's own /readyz checks beside the node's (its other listeners): true, or why not. */
  readyChecks?(): Record<string, true | string>;
}

/**
 * Where frames off the link go. The default hands each to the current engine on the event loop;
 * a pool of worker threads can take its place (a returned promise holds the link's backpressure
 * until it settles). A frame is a view into the link's receive buffer (PacketLink `viewFrames`):
 * copy what is kept past the call (processPacket and the pool's batch copy already do).
 */
export interface FrameProcessor {
  process(frame: Uint8Array): void | Promise<void>;
}

/** What starting a mix or a gateway takes (the role's config extends HopNodeConfig). */
export interface HopStartOptions<C extends HopNodeConfig = HopNodeConfig> {
  readonly config: C;
  readonly logger: Logger;
  /** Unix seconds (injectable for tests); default Date.now() / 1000. */
  readonly now?: () => number;
  /** prom-client default process metrics (off in tests that run several nodes). */
  readonly defaultMetrics?: boolean;
  /** Ignore header delays (benchmarks of the bare pipeline). */
  readonly ignoreDelays?: boolean;
}

export interface HopNodeOptions extends HopStartOptions {
  readonly role: HopRole;
  /** Metric name prefix, e.g. `postmix_mixnode`. */
  readonly metricsPrefix: string;
  /** Replaces the default frame processing (see FrameProcessor). */
  readonly processor?: (node: HopNode) => FrameProcessor;
  /** Tests only: passed to the unwrap pool (a worker that takes a batch while it is > 0 crashes). */
  readonly testWorkerCrashes?: SharedArrayBuffer;
}

function sameGeometry(a: Geometry, b: Geometry): boolean {
  return a.maxHops === b.maxHops && a.perHopSize === b.perHopSize && a.payloadSize === b.payloadSize;
}

/** Whether a hop node is ready to carry packets, and if not, why. */
export interface Readiness {
  readonly ready: boolean;
  /** The link listens (and the node is not shutting down). */
  readonly listening: boolean;
  /** The node holds a document with keys for the clock's epoch (its own, or an older one during an outage). */
  readonly document: boolean;
  readonly epoch: number;
}

export class HopNode {
  readonly log: Logger;
  readonly config: HopNodeConfig;
  readonly identity: IdentityKey;
  readonly keyStore: KeyStore;
  readonly keys: EpochKeys;
  readonly view: NetworkView;
  readonly replay: ReplayTagStore;
  readonly registry: Registry;
  readonly metrics: HopMetrics;
  readonly now: () => number;
  /** The engine for the current geometry; `retiring` ones still release what they hold. */
  engine: HopEngine<Peer>;
  private retiring: HopEngine<Peer>[] = [];
  private geometryNow: Geometry;
  private linkRef: PacketLink | undefined;
  private peerIdRef: PeerId | undefined;
  private metricsServer: MetricsServer | undefined;
  private readonly epochs: EpochDriver;
  private readonly role: HopRole;
  private processor: FrameProcessor;
  private pool: UnwrapPool | undefined;
  private pooled: PooledFrames<Peer> | undefined;
  private readonly custom: boolean;
  private readonly testWorkerCrashes: SharedArrayBuffer | undefined;
  private readonly ignoreDelays: boolean;
  private accepting = true;
  private closed = false;
  private readonly drops: Record<NodeDropReason, number> = { 'link-refused': 0, 'worker-crash': 0 };
  private readonly fetches = new Map<string, number>();
  private readonly uploads = new Map<string, number>();
  private readonly pruned = { replaySets: 0, keyFiles: 0 };
  /** Frames that arrived while shutting down (not processed). */
  droppedAtShutdown = 0;

  constructor(o: HopNodeOptions) {
    const c = o.config;
    this.config = c;
    this.role = o.role;
    this.log = o.logger;
    this.now = o.now ?? (() => Date.now() / 1000);
    this.ignoreDelays = o.ignoreDelays === true;
    // identity present, secret files 0600 (KeyFileError otherwise: exit 77)
    const { store, identity } = openKeyStore(c.keysDir);
    this.keyStore = store;
    this.identity = identity;
    this.keys = new EpochKeys(store, c.epoch, this.now);
    privateDir(c.dataDir);
    this.replay = c.file.replay.store === 'sqlite' ? new ReplayStore(join(c.dataDir, 'replay.sqlite')) : new LogReplayStore(join(c.dataDir, 'replay'));
    this.view = new NetworkView(identity.nodeId);
    this.epochs = new EpochDriver({
      config: c,
      identity,
      keys: this.keys,
      view: this.view,
      replay: this.replay,
      log: this.log,
      now: this.now,
      descriptor: () => ({ ...this.role.descriptor(), peerId: this.peerId.toString(), addresses: this.addresses() }),
      onView: (e, changed) => {
        if (changed) this.install(e);
      },
      afterRound: (t) => this.role.afterRound?.(t),
      onFetch: (result) => this.fetches.set(result, (this.fetches.get(result) ?? 0) + 1),
      onUpload: (result) => this.uploads.set(result, (this.uploads.get(result) ?? 0) + 1),
      onPrune: (replaySets, keyFiles) => {
        this.pruned.replaySets += replaySets;
        this.pruned.keyFiles += keyFiles;
      },
    });
    const cached = this.epochs.restoreCached();
    this.geometryNow = cached ? cached.body.geometry : DEFAULT_GEOMETRY;
    this.registry = newRegistry(o.metricsPrefix, o.defaultMetrics ?? true);
    this.metrics = new HopMetrics(this.registry, o.metricsPrefix, {
      hop: () => this.counters,
      nodeDrops: () => this.drops,
      queue: () => this.held,
      link: () => this.linkRef?.counters,
      connections: () => this.linkRef?.connectionCount ?? 0,
      epoch: () => ({
        epoch: epochAt(c.epoch, this.now()),
        layer: this.view.layer,
        documentEpoch: this.view.current?.body.epoch ?? -1,
        keys: this.keys.keys().length,
      }),
      pool: () => this.poolStats,
      fetches: () => this.fetches,
      uploads: () => this.uploads,
      stores: () => ({
        keyFiles: countOr(-1, () => store.listSphinxEpochs().length),
        // -1 once closed, while shutting down
        replayEpochs: countOr(-1, () => this.replay.epochs().length),
        keyFilesDeleted: this.pruned.keyFiles,
        replaySetsDropped: this.pruned.replaySets,
      }),
    });
    this.engine = this.newEngine(this.geometryNow);
    this.custom = o.processor !== undefined;
    this.testWorkerCrashes = o.testWorkerCrashes;
    this.processor = o.processor?.(this) ?? { process: (frame) => this.engine.handle(frame) };
  }

  /** Sphinx worker threads in use (0: the layers are peeled on the event loop). */
  get cryptoWorkers(): number {
    return this.pool ? this.config.file.crypto.workers : 0;
  }

  /** The `[crypto] workers` pool, once started (undefined with workers = 0): a role may run its own pure jobs on it (the gateway's token checks and ACKs). */
  get cryptoPool(): UnwrapPool | undefined {
    return this.pool;
  }

  /** The unwrap pool's counters (undefined with `[crypto] workers = 0`). */
  get poolStats(): PoolStats | undefined {
    return this.pool && this.pooled ? { ...this.pool.stats, queuedFrames: this.pooled.queuedFrames, inlineFrames: this.pooled.inline } : undefined;
  }

  /** `[crypto] workers` > 0: start the pool (its workers on the event loop's suite) and route frames through it. */
  private async startPool(): Promise<void> {
    const n = this.config.file.crypto.workers;
    if (n === 0 || this.custom) return;
    this.pool = await UnwrapPool.start({
      workers: n,
      suite: fastestSuiteSelection().suite.name,
      log: this.log,
      ...(this.testWorkerCrashes ? { testCrashes: this.testWorkerCrashes } : {}),
    });
    this.pooled = new PooledFrames<Peer>(
      this.pool,
      () => this.engine,
      (frames) => {
        this.drops['worker-crash'] += frames;
      },
    );
    const pooled = this.pooled;
    this.processor = { process: (frame) => pooled.process(frame) };
  }

  private newEngine(geometry: Geometry): HopEngine<Peer> {
    const at: DeliveryContext = { epoch: 0, geometry };
    return new HopEngine<Peer>({
      geometry,
      replay: this.replay,
      keys: () => this.keys.keys(),
      resolveNext: (id) => this.view.resolveNext(id),
      forward: (next, packet) => {
        if (!this.link.send(next.peerId, packet)) this.drops['link-refused']++;
      },
      ...(this.role.admitDeliver ? { admitDeliver: (r: HopDeliver) => this.role.admitDeliver!(r) } : {}),
      ...(this.role.deliverAtOnce ? { deliverAtOnce: (r: HopDeliver) => this.role.deliverAtOnce!(r) } : {}),
      deliver: (r, epoch) => this.role.deliver(r, { ...at, epoch }),
      maxQueuedBytes: this.config.file.limits.max_queued_bytes,
      observeProcessing: (s) => this.metrics.processing.observe(s),
      observeLateness: (ms) => this.metrics.lateness.observe(ms / 1000),
      ignoreDelays: this.ignoreDelays,
    });
  }

  /** The link up with the role's protocols, and the metrics endpoint. Throws PortInUseError when a port is taken. */
  async listen(): Promise<void> {
    const c = this.config;
    const l = c.file.limits;
    const sphinxFallback = fastestSuiteSelection().fallbackReason;
    if (sphinxFallback) this.log.warn(sphinxFallback);
    // the workers first: a pool that cannot start (a worker without the event loop's suite) stops the node
    await this.startPool();
    // a port taken: PacketLink and listenError throw PortInUseError (exit 69)
    this.linkRef = await PacketLink.create({
      identity: this.identity.seed,
      listen: [c.hop.listen],
      packetSize: packetSizes(this.geometryNow).packet,
      onFrame: (frame) => {
        if (!this.accepting) {
          this.droppedAtShutdown++;
          return;
        }
        return this.processor.process(frame);
      },
      // neither the engine (processPacket reads the frame, its results are new buffers) nor the
      // pool (it copies each frame into its batch) keeps a frame past the call
      viewFrames: true,
      // peers of the held documents both ways; anyone inbound while the role takes clients.
      // The node itself only ever dials peers of the documents.
      isAllowedPeer: (peer) => this.view.isKnownPeer(peer),
      allowUnknownInbound: () => this.accepting && this.role.acceptsClients(this.view),
      addressesOf: (peer) => this.view.addressesOf(peer),
      maxQueuedFramesPerPeer: l.per_peer_queue,
      maxBatchFrames: l.max_batch_frames,
      maxConnections: l.max_connections,
      logger: this.log,
    });
    this.peerIdRef = this.linkRef.peerId;
    await this.role.serve?.(this.linkRef);
    const m = c.file.metrics;
    if (m.enabled)
      this.metricsServer = await startMetricsServer(this.registry, m.host, m.port, {
        bearerToken: c.metricsBearerToken,
        readiness: () => this.probe(),
      }).catch((e: unknown) => {
        throw listenError(e, `metrics ${m.host}:${m.port}`);
      });
  }

  /** The first round of the epoch machinery now, then one every `tick_ms`. */
  async followEpochs(): Promise<void> {
    await this.epochs.start(this.config.hop.tick_ms);
  }

  get link(): PacketLink {
    if (!this.linkRef) throw new Error('hop node link not started');
    return this.linkRef;
  }

  /** The node's libp2p peer id (the one computable from its identity key); valid after close too. */
  get peerId(): PeerId {
    this.peerIdRef ??= this.link.peerId;
    return this.peerIdRef;
  }

  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  /** Where the metrics endpoint listens, for the role's start-up log line. */
  get metricsUrl(): string {
    const m = this.config.file.metrics;
    return this.metricsServer ? `http://${m.host}:${this.metricsServer.port}/metrics` : 'off';
  }

  /** The Sphinx geometry of the current engine. */
  get geometry(): Geometry {
    return this.geometryNow;
  }

  /** The addresses published in the descriptor: `announce`, else the listen addresses. */
  addresses(): string[] {
    const a = this.config.hop.announce;
    if (a) return [...a];
    return this.link.multiaddrs().map((m) => m.toString().replace(/\/p2p\/[^/]+$/, ''));
  }

  /** Fields for the role's start-up log line. */
  describe(): Record<string, unknown> {
    return {
      nodeId: hex(this.identity.nodeId),
      peerId: this.peerId.toString(),
      addrs: this.addresses(),
      metrics: this.metricsUrl,
      sphinxSuite: fastestSuiteSelection().suite.name,
      cryptoWorkers: this.cryptoWorkers,
    };
  }

  /** Ready to carry packets: listening, and holding a document that routes the clock's epoch. */
  readiness(): Readiness {
    const epoch = epochAt(this.config.epoch, this.now());
    const listening = this.linkRef !== undefined && this.accepting;
    const document = this.view.current !== undefined && this.view.epoch === epoch;
    return { ready: listening && document, listening, document, epoch };
  }

  /** readiness() as /readyz reports it (runtime/health.ts). */
  private probe(): ProbeResult {
    const r = this.readiness();
    return checkAll({
      listening: r.listening || 'the packet link is not listening (starting or shutting down)',
      document: r.document || `no verified network document for epoch ${r.epoch} yet`,
      ...this.role.readyChecks?.(),
    });
  }

  /** Packets held right now, over every engine. */
  get held(): { packets: number; bytes: number } {
    let packets = 0;
    let bytes = 0;
    for (const e of [this.engine, ...this.retiring]) {
      packets += e.held.packets;
      bytes += e.held.bytes;
    }
    return { packets, bytes };
  }

  /** The pipeline's counters, summed over the current and retiring engines. */
  get counters(): HopCounters {
    if (this.retiring.length === 0) return this.engine.counters;
    const all = [this.engine, ...this.retiring].map((e) => e.counters);
    const dropped = { ...this.engine.counters.dropped };
    for (const c of all.slice(1)) for (const k of Object.keys(dropped) as (keyof typeof dropped)[]) dropped[k] += c.dropped[k];
    const sum = (k: 'received' | 'forwarded' | 'delivered' | 'coverEnded') => all.reduce((s, c) => s + c[k], 0);
    return { received: sum('received'), forwarded: sum('forwarded'), delivered: sum('delivered'), coverEnded: sum('coverEnded'), dropped };
  }

  /** Drops the node counted outside its engines. */
  get nodeDrops(): Readonly<Record<NodeDropReason, number>> {
    return this.drops;
  }

  /** One round of the epoch machinery (also called directly by tests that move the clock). */
  tick(): Promise<void> {
    return this.epochs.tick();
  }

  /**
   * One hop delay, ms: Exp(μ) with μ of the document as of now, from the CSPRNG (what every hop of
   * a route holds a packet; 0 without a document).
   */
  hopDelayMs(): number {
    const mu = this.view.current?.body.mixing?.mu;
    return mu === undefined ? 0 : samplePerHopDelayMs(mu, csprngUniform);
  }

  /**
   * Sends a packet of the node's own to the peer that serves `nodeId` once `delayMs` (from now)
   * is over, through the current engine's delay queue like a forwarded packet; `then` runs when
   * it leaves. Returns why it cannot leave, or undefined.
   */
  emitLater(
    nodeId: Uint8Array | undefined,
    packet: Uint8Array | undefined,
    delayMs: number,
    then?: () => void,
  ): 'unknown-first-hop' | 'queue-full' | undefined {
    // any node of the documents (an ACK's first hop is the sender's choice, in layer 1)
    const next = nodeId === undefined ? undefined : this.view.peerOf(nodeId);
    if (nodeId !== undefined && next === undefined) {
      then?.();
      return 'unknown-first-hop';
    }
    if (this.engine.emit(next, packet, delayMs, then)) return undefined;
    then?.();
    return 'queue-full';
  }

  /** Installs a verified document as a fetch would (tests and tools). */
  installDocument(doc: VerifiedDocument): void {
    this.view.add(doc);
    if (this.epochs.updateView()) this.install(epochAt(this.config.epoch, this.now()));
  }

  private install(e: number): void {
    const doc = this.view.current;
    if (!doc) return;
    const b = doc.body;
    if (!sameGeometry(b.geometry, this.geometryNow)) {
      this.log.info({ from: this.geometryNow, to: b.geometry }, 'Sphinx geometry changed');
      this.retiring.push(this.engine);
      this.geometryNow = b.geometry;
      this.engine = this.newEngine(b.geometry);
    }
    // retire engines whose queues are empty
    this.retiring = this.retiring.filter((r) => (r.held.packets > 0 ? true : (r.close(), false)));
    this.linkRef?.setPacketSize(packetSizes(b.geometry).packet);
    const c = this.config.epoch;
    if (b.epochLength !== c.length || b.grace !== c.grace || b.validAfter !== epochStart(c, b.epoch))
      this.log.warn(
        { document: { length: b.epochLength, grace: b.grace, validAfter: b.validAfter }, config: c },
        "the document's epoch schedule differs from [directory] in the config",
      );
    if (!this.view.listed) this.log.warn({ epoch: e }, 'this node is not in the network document for this epoch (descriptor missed the vote?)');
    else this.log.info({ epoch: e, layer: this.view.layer, nextHops: this.view.nextHopCount, mixing: b.mixing }, 'network document installed');
    void this.linkRef?.enforceAllowedPeers().catch(() => {});
  }

  /**
   * Graceful shutdown: stop accepting (new frames and clients), stop the epoch rounds, keep
   * forwarding packets that fall due within most of `graceMs`, flush and close the link, drop what
   * is still held, close the replay store and the metrics endpoint.
   */
  async close(graceMs = this.config.hop.shutdown_grace_ms): Promise<{ drained: number; dropped: number; stillQueuedAtDeadline: number }> {
    if (this.closed) return { drained: 0, dropped: 0, stillQueuedAtDeadline: 0 };
    this.closed = true;
    this.accepting = false;
    await this.epochs.stop();
    // frames already taken are decided (peeled, replay-checked, queued) before the drain
    await this.pooled?.drain();
    const before = this.counters.forwarded + this.counters.delivered;
    const left = await this.engine.drain(Math.floor(graceMs * 0.6));
    const drained = this.counters.forwarded + this.counters.delivered - before;
    this.role.drained?.();
    if (this.linkRef) await this.linkRef.stop(Math.floor(graceMs * 0.3)).catch((e: unknown) => this.log.warn({ err: String(e) }, 'link stop failed'));
    let dropped = this.engine.close();
    for (const r of this.retiring) dropped += r.close();
    await this.pool?.close();
    this.replay.close();
    await this.metricsServer?.close();
    return { drained, dropped, stillQueuedAtDeadline: left };
  }
}

/** `read()`, or `fallback` when it throws (a store closed during shutdown, a key directory gone). */
function countOr(fallback: number, read: () => number): number {
  try {
    return read();
  } catch {
    return fallback;
  }
}
