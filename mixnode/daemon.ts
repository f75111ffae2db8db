/**
 * The mix node daemon (docs/mixnode.md): one PacketLink, one HopEngine, the epoch machinery
 * (documents, descriptors, Sphinx keys, replay sets), loop cover, metrics, graceful shutdown.
 *
 *   link frame → HopEngine.handle (size, Sphinx layer with the current or previous epoch key,
 *   replay tag) → delay queue → forward to the next hop's libp2p peer (a legal next hop in the
 *   document) | final hop: only this node's own loops are taken, anything else is dropped.
 *
 * Every `tick_ms` the epoch driver (runtime/hop/epoch-driver.ts, shared with the gateway) fetches
 * documents, uploads the descriptor with Sphinx keys made ahead of time and expires the previous
 * epoch; what is the mix's own is `installed`: routing table, allowed peers, packet size, and a
 * new engine (the old one retired until its queue is empty) when the geometry changes.
 */
import { privateDir } from '../runtime/private-files.ts';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { PeerId } from '@libp2p/interface';
import { HopEngine } from '../proto/hop/engine.ts';
import { EpochDriver } from '../runtime/hop/epoch-driver.ts';
import { EpochKeys, openKeyStore } from '../runtime/hop/epoch-keys.ts';
import { NetworkView, type Peer } from '../runtime/hop/network-view.ts';
import { LogReplayStore, ReplayStore, type ReplayTagStore } from '../runtime/hop/replay-store.ts';
import { PacketLink } from '../runtime/link/index.ts';
import { bytesEqual, epochAt, epochStart, hex, type IdentityKey } from '../proto/pki/index.ts';
import { DEFAULT_GEOMETRY, fastestSuiteSelection, packetSizes, type Geometry } from '../proto/sphinx/index.ts';
import { startMetricsServer, type MetricsServer } from '../runtime/daemon.ts';
import type { MixnodeConfig } from './config.ts';
import { LoopCover } from './loops.ts';
import { MixnodeMetrics } from './metrics.ts';
import { csprngUniform } from '../proto/util/random.ts';

export interface MixNodeOptions {
  readonly config: MixnodeConfig;
  readonly logger: Logger;
  /** Unix seconds (injectable for tests); default Date.now() / 1000. */
  readonly now?: () => number;
  /** prom-client default process metrics (off in tests that run several nodes). */
  readonly defaultMetrics?: boolean;
  /** Ignore header delays (benchmarks of the bare pipeline). */
  readonly ignoreDelays?: boolean;
}

function sameGeometry(a: Geometry, b: Geometry): boolean {
  return a.maxHops === b.maxHops && a.perHopSize === b.perHopSize && a.payloadSize === b.payloadSize;
}

/** Thrown when a listener cannot bind (exit code 69). */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
}

function isAddrInUse(e: unknown): boolean {
  const err = e as { code?: string; message?: string; errors?: unknown[] };
  if (err?.code === 'EADDRINUSE' || /EADDRINUSE|address already in use/i.test(err?.message ?? '')) return true;
  return Array.isArray(err?.errors) && err.errors.some(isAddrInUse);
}

export class MixNode {
  readonly log: Logger;
  readonly config: MixnodeConfig;
  readonly identity: IdentityKey;
  readonly keys: EpochKeys;
  readonly view: NetworkView;
  readonly replay: ReplayTagStore;
  readonly metrics: MixnodeMetrics;
  readonly loops: LoopCover | undefined;
  readonly now: () => number;
  engine: HopEngine<Peer>;
  private retiring: HopEngine<Peer>[] = [];
  private geometry: Geometry;
  private linkRef: PacketLink | undefined;
  private metricsServer: MetricsServer | undefined;
  private readonly epochs: EpochDriver;
  private accepting = true;
  private closed = false;
  /** Frames that arrived while shutting down (not processed). */
  droppedAtShutdown = 0;

  private constructor(o: MixNodeOptions) {
    this.config = o.config;
    this.log = o.logger;
    this.now = o.now ?? (() => Date.now() / 1000);
    const { store, identity } = openKeyStore(o.config.keysDir);
    this.identity = identity;
    this.keys = new EpochKeys(store, o.config.epoch, this.now);
    privateDir(o.config.dataDir);
    this.replay =
      o.config.file.replay.store === 'sqlite' ? new ReplayStore(join(o.config.dataDir, 'replay.sqlite')) : new LogReplayStore(join(o.config.dataDir, 'replay'));
    this.view = new NetworkView(identity.nodeId);
    this.epochs = new EpochDriver({
      config: o.config,
      identity,
      keys: this.keys,
      view: this.view,
      replay: this.replay,
      log: this.log,
      now: this.now,
      descriptor: () => ({
        peerId: this.link.peerId.toString(),
        addresses: this.addresses(),
        role: 'mix',
        layerPreference: o.config.file.mixnode.layer_preference,
      }),
      onView: (e, changed) => {
        if (changed) this.installed(e);
      },
      onFetch: (result) => this.metrics.documents.inc({ result }),
      onUpload: (result) => this.metrics.uploads.inc({ result }),
    });
    const cached = this.epochs.restoreCached();
    this.geometry = cached ? cached.body.geometry : DEFAULT_GEOMETRY;
    this.metrics = new MixnodeMetrics(
      {
        hop: () => this.sumCounters(),
        queue: () => this.queued,
        link: () => this.linkRef?.counters,
        connections: () => this.linkRef?.connectionCount ?? 0,
        loops: () => (this.loops ? { ...this.loops.stats, ratio: this.loops.ratio, inFlight: this.loops.inFlight } : undefined),
        epoch: () => ({
          epoch: epochAt(this.config.epoch, this.now()),
          layer: this.view.layer,
          documentEpoch: this.view.current?.body.epoch ?? -1,
          keys: this.keys.keys().length,
        }),
      },
      { defaultMetrics: o.defaultMetrics ?? true },
    );
    this.engine = this.newEngine(this.geometry, o.ignoreDelays === true);
    const lc = o.config.file.loops;
    this.loops = lc.enabled
      ? new LoopCover({
          nodeId: identity.nodeId,
          document: () => this.view.current?.body,
          send: (first, packet) => {
            const p = this.view.resolveNext(first.nodeId);
            return p !== undefined && this.link.send(p.peerId, packet);
          },
          timeoutS: lc.timeout_s,
          window: lc.window,
          alertRatio: lc.alert_ratio,
          minSamples: lc.min_samples,
          log: this.log,
          onRoundTrip: (s) => this.metrics.loopRtt.observe(s),
          uniform: csprngUniform,
        })
      : undefined;
  }

  private ignoreDelays = false;

  private newEngine(geometry: Geometry, ignoreDelays: boolean): HopEngine<Peer> {
    this.ignoreDelays = ignoreDelays;
    return new HopEngine<Peer>({
      geometry,
      replay: this.replay,
      keys: () => this.keys.keys(),
      resolveNext: (id) => this.view.resolveNext(id),
      forward: (next, packet) => {
        if (!this.link.send(next.peerId, packet)) this.metrics.nodeDrops['link-refused']++;
      },
      // a mix takes only its own loops as a final hop (admitDeliver); they end here
      admitDeliver: (r) => r.surbId === undefined && this.loops !== undefined && bytesEqual(r.queueId, this.loops.queueId),
      deliver: (r) => {
        this.loops?.onReturn(r.payload);
      },
      maxQueuedBytes: this.config.file.limits.max_queued_bytes,
      observeProcessing: (s) => this.metrics.processing.observe(s),
      observeLateness: (ms) => this.metrics.lateness.observe(ms / 1000),
      ignoreDelays,
    });
  }

  /** Starts a node: keys, replay store, link, metrics endpoint, first directory round, loops. */
  static async start(o: MixNodeOptions): Promise<MixNode> {
    const node = new MixNode(o);
    try {
      await node.startIo();
    } catch (e) {
      await node.close(0).catch(() => {});
      if (isAddrInUse(e)) throw new PortInUseError(`cannot listen: ${(e as Error).message} (is another node running? change mixnode.listen or metrics.port)`);
      throw e;
    }
    return node;
  }

  private async startIo(): Promise<void> {
    const f = this.config.file;
    this.linkRef = await PacketLink.create({
      identity: this.identity.seed,
      listen: [f.mixnode.listen],
      packetSize: packetSizes(this.geometry).packet,
      onFrame: (frame) => {
        if (!this.accepting) {
          this.droppedAtShutdown++;
          return;
        }
        this.engine.handle(frame);
      },
      // peers of the held documents; anyone inbound while this node is in layer 1 (clients).
      // The node itself only ever dials next hops from the document.
      isAllowedPeer: (peer: PeerId) => this.view.isKnownPeer(peer) || (this.accepting && this.view.layer === 1),
      addressesOf: (peer) => this.view.addressesOf(peer),
      maxQueuedFramesPerPeer: f.limits.per_peer_queue,
      maxBatchFrames: f.limits.max_batch_frames,
      maxConnections: f.limits.max_connections,
      logger: this.log,
    });
    this.peerIdCache = this.linkRef.peerId;
    if (f.metrics.enabled) {
      this.metricsServer = await startMetricsServer(this.metrics.registry, f.metrics.host, f.metrics.port);
    }
    const sphinxFallback = fastestSuiteSelection().fallbackReason;
    if (sphinxFallback) this.log.warn(sphinxFallback);
    this.log.info(
      {
        nodeId: hex(this.identity.nodeId),
        peerId: this.link.peerId.toString(),
        addrs: this.addresses(),
        metrics: this.metricsServer ? `http://${f.metrics.host}:${this.metricsServer.port}/metrics` : 'off',
        replayStore: f.replay.store,
        sphinxSuite: fastestSuiteSelection().suite.name,
      },
      'mix node listening',
    );
    await this.epochs.start(f.mixnode.tick_ms);
    this.loops?.start();
  }

  get link(): PacketLink {
    if (!this.linkRef) throw new Error('mix node link not started');
    return this.linkRef;
  }

  get metricsPort(): number | undefined {
    return this.metricsServer?.port;
  }

  /** The node's libp2p peer id (= the one computable from its identity key); valid after stop too. */
  get peerId(): PeerId {
    this.peerIdCache ??= this.link.peerId;
    return this.peerIdCache;
  }

  private peerIdCache: PeerId | undefined;

  /** The addresses published in the descriptor. */
  addresses(): string[] {
    const a = this.config.file.mixnode.announce;
    if (a) return [...a];
    return this.link.multiaddrs().map((m) => m.toString().replace(/\/p2p\/[^/]+$/, ''));
  }

  get queued(): { packets: number; bytes: number } {
    let packets = this.engine.queued.packets;
    let bytes = this.engine.queued.bytes;
    for (const r of this.retiring) {
      packets += r.queued.packets;
      bytes += r.queued.bytes;
    }
    return { packets, bytes };
  }

  private sumCounters(): HopEngine<Peer>['counters'] {
    if (this.retiring.length === 0) return this.engine.counters;
    const all = [this.engine, ...this.retiring].map((e) => e.counters);
    const dropped = { ...this.engine.counters.dropped };
    for (const c of all.slice(1)) for (const k of Object.keys(dropped) as (keyof typeof dropped)[]) dropped[k] += c.dropped[k];
    const sum = (k: 'received' | 'forwarded' | 'delivered' | 'coverEnded') => all.reduce((s, c) => s + c[k], 0);
    return { received: sum('received'), forwarded: sum('forwarded'), delivered: sum('delivered'), coverEnded: sum('coverEnded'), dropped };
  }

  /** One round of the epoch machinery (also called directly by tests that move the clock). */
  tick(): Promise<void> {
    return this.epochs.tick();
  }

  private installed(e: number): void {
    const doc = this.view.current;
    if (!doc) return;
    const b = doc.body;
    if (!sameGeometry(b.geometry, this.geometry)) {
      this.log.info({ from: this.geometry, to: b.geometry }, 'Sphinx geometry changed');
      this.retiring.push(this.engine);
      this.geometry = b.geometry;
      this.engine = this.newEngine(b.geometry, this.ignoreDelays);
    }
    // retire engines whose queues are empty
    this.retiring = this.retiring.filter((r) => (r.queued.packets > 0 ? true : (r.close(), false)));
    this.link.setPacketSize(packetSizes(b.geometry).packet);
    const c = this.config.epoch;
    if (b.epochLength !== c.length || b.grace !== c.grace || b.validAfter !== epochStart(c, b.epoch))
      this.log.warn(
        { document: { length: b.epochLength, grace: b.grace, validAfter: b.validAfter }, config: c },
        "the document's epoch schedule differs from [directory] in the config",
      );
    if (this.view.layer === 0) this.log.warn({ epoch: e }, 'this node is not in the network document for this epoch (descriptor missed the vote?)');
    else
      this.log.info(
        { epoch: e, layer: this.view.layer, nextHops: this.view.nextHopCount, lambdaM: b.mixing.lambdaM, mu: b.mixing.mu },
        'network document installed',
      );
    void this.link.enforceAllowedPeers().catch(() => {});
  }

  /**
   * Graceful shutdown: stop accepting (new frames and connections), keep forwarding packets
   * that fall due within most of `graceMs`, flush and close the link, drop what is still held,
   * close the replay store and the metrics endpoint.
   */
  async close(graceMs = this.config.file.mixnode.shutdown_grace_ms): Promise<{ drained: number; dropped: number }> {
    if (this.closed) return { drained: 0, dropped: 0 };
    this.closed = true;
    this.accepting = false;
    this.loops?.stop();
    await this.epochs.stop();
    const before = this.engine.counters.forwarded;
    const left = await this.engine.drain(Math.floor(graceMs * 0.6));
    const drained = this.engine.counters.forwarded - before;
    if (this.linkRef) await this.linkRef.stop(Math.floor(graceMs * 0.3)).catch((e: unknown) => this.log.warn({ err: String(e) }, 'link stop failed'));
    let dropped = this.engine.close();
    for (const r of this.retiring) dropped += r.close();
    this.replay.close();
    await this.metricsServer?.close();
    this.log.info({ drained, dropped, stillQueuedAtDeadline: left }, 'mix node stopped');
    return { drained, dropped };
  }
}
