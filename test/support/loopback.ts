/**
 * Test and benchmark scaffolding for mix nodes (not used by the daemon): directory authorities
 * in-process on loopback HTTP with an injected clock, mix node and gateway configs, a sink gateway (a
 * PacketLink + HopEngine registered as a gateway that records what it receives and can forward
 * loops into layer 1), and a client link that sends packets into layer 1.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { freePort } from '../../cli/testnet/ports.ts';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { Authority } from '../../directory/authority.ts';
import { DirectoryHttp } from '../../directory/http.ts';
import { AuthorityStore } from '../../directory/store.ts';
import { HopEngine } from '../../proto/hop/engine.ts';
import { idKey } from '../../runtime/hop/network-view.ts';
import { ReplayStore } from '../../runtime/hop/replay-store.ts';
import { PacketLink, parseMultiaddr } from '../../runtime/link/index.ts';
import { peerIdFromString } from '@libp2p/peer-id';
import {
  buildDescriptor,
  epochStart,
  generateIdentity,
  generateSphinxKey,
  schedulePoint,
  SCHEDULE,
  type DocumentBody,
  type DocumentParams,
  type EpochConfig,
  type IdentityKey,
  type NodeEntry,
  type SphinxKeyPair,
} from '../../proto/pki/index.ts';
import { KeyStore } from '../../runtime/pki/key-store.ts';
import { uploadDescriptor } from '../../runtime/pki/client.ts';
import { nodeSuite, prepareHopKey, packetSizes, type HopDeliver, type Geometry } from '../../proto/sphinx/index.ts';
import type { MixingParams } from '../../proto/mixing/params.ts';
import { MixnodeConfigSchema, resolveMixnodeConfig, type MixnodeConfig } from '../../mixnode/config.ts';
import { GatewayConfigSchema, resolveGatewayConfig, type GatewayConfig } from '../../gateway/config.ts';

export const silentLogger: Logger = pino({ level: 'silent' });

/** The epoch schedule the in-process network tests run on (hour-long epochs on a fake clock). */
export const TEST_EPOCH: EpochConfig = Object.freeze({ origin: 1_700_000_000, length: 3600, grace: 300 });

/** Mixing for the loop tests: mixes send loops fast (λ_M 20/s), hops are quick (mean 5 ms). */
export const LOOP_MIXING: MixingParams = Object.freeze({ lambdaP: 1, lambdaL: 0.5, lambdaD: 0.5, lambdaM: 20, lambdaG: 0, mu: 200 });

export { freePort };

/** Polls `cond` every 10 ms; throws naming `what` after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface Clock {
  t: number;
}

export interface TestDirectory {
  readonly urls: string[];
  readonly identities: IdentityKey[];
  readonly params: DocumentParams;
  readonly clock: Clock;
  /** vote, tally and collect for epoch E, moving the clock through epoch E-1's schedule. */
  round(E: number): Promise<number>;
  close(): Promise<void>;
}

/** Three (or n) authorities on loopback HTTP, threshold 2, driven by `clock`. */
export async function startTestDirectory(o: {
  dir: string;
  epoch: EpochConfig;
  mixing: MixingParams;
  geometry: Geometry;
  clock: Clock;
  n?: number;
  numLayers?: number;
}): Promise<TestDirectory> {
  const n = o.n ?? 3;
  const identities = Array.from({ length: n }, () => generateIdentity());
  const params: DocumentParams = {
    epochConfig: o.epoch,
    geometry: o.geometry,
    mixing: o.mixing,
    numLayers: o.numLayers ?? 3,
    authorities: identities.map((i) => i.publicKey),
    threshold: Math.min(2, n),
  };
  const ports: number[] = [];
  for (let i = 0; i < n; i++) ports.push(await freePort());
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  mkdirSync(o.dir, { recursive: true });
  const running: { auth: Authority; http: DirectoryHttp }[] = [];
  for (let i = 0; i < n; i++) {
    const auth = new Authority({
      identity: identities[i]!,
      peers: identities.flatMap((id, j) => (j === i ? [] : [{ url: urls[j]!, publicKey: id.publicKey }])),
      params,
      store: new AuthorityStore(join(o.dir, `auth${i}-${randomBytes(3).toString('hex')}.sqlite`)),
      logger: silentLogger,
      now: () => o.clock.t,
      peerTimeoutMs: 2000,
    });
    const http = new DirectoryHttp(auth);
    await http.listen('127.0.0.1', ports[i]!);
    running.push({ auth, http });
  }
  return {
    urls,
    identities,
    params,
    clock: o.clock,
    async round(E: number): Promise<number> {
      const c = o.epoch;
      o.clock.t = schedulePoint(c, E - 1, SCHEDULE.vote);
      for (const r of running) r.auth.vote(E);
      o.clock.t = schedulePoint(c, E - 1, SCHEDULE.tally);
      for (const r of running) await r.auth.tally(E);
      o.clock.t = schedulePoint(c, E - 1, SCHEDULE.collect);
      let sigs = 0;
      for (let pass = 0; pass < 2; pass++) for (const r of running) sigs = Math.max(sigs, await r.auth.collect(E));
      return sigs;
    },
    async close() {
      for (const r of running) {
        await r.http.close();
        r.auth.store.close();
      }
    },
  };
}

/** The [directory] section of a daemon config that points at `directory`. */
function directorySection(directory: TestDirectory, epoch: EpochConfig) {
  return {
    threshold: 2,
    epoch_length: epoch.length,
    epoch_origin: epoch.origin,
    grace: epoch.grace,
    retry_ms: 10,
    timeout_ms: 3000,
    authorities: directory.urls.map((url, i) => ({ url, public_key: Buffer.from(directory.identities[i]!.publicKey).toString('base64') })),
  };
}

/** A mix node config for tests (no TOML file): loopback, ephemeral ports, fast ticks. */
export function testMixnodeConfig(o: {
  dataDir: string;
  directory: TestDirectory;
  epoch: EpochConfig;
  layerPreference?: number;
  listenPort?: number | undefined;
  metrics?: boolean;
  maxQueuedBytes?: number | undefined;
  loops?: boolean;
  loopTimeoutS?: number;
  replay?: 'log' | 'sqlite';
  /** `[crypto] workers`; default 1 (a pool, as on a 2-core host, whatever cores this one has). */
  workers?: number;
}): MixnodeConfig {
  const file = MixnodeConfigSchema.parse({
    mixnode: {
      data_dir: o.dataDir,
      listen: `/ip4/127.0.0.1/tcp/${o.listenPort ?? 0}`,
      layer_preference: o.layerPreference ?? 0,
      log_level: 'silent',
      tick_ms: 60_000, // tests drive ticks themselves
      shutdown_grace_ms: 1000,
    },
    limits: { max_queued_bytes: o.maxQueuedBytes ?? 64 * 1024 * 1024 },
    replay: { store: o.replay ?? 'log' },
    crypto: { workers: o.workers ?? 1 },
    loops: { enabled: o.loops ?? false, timeout_s: o.loopTimeoutS ?? 0, min_samples: 5 },
    metrics: { enabled: o.metrics ?? false, port: 0 },
    directory: directorySection(o.directory, o.epoch),
  });
  return resolveMixnodeConfig(file, '(test)', o.dataDir);
}

/** A gateway config for tests (no TOML file): loopback, ephemeral ports, no issuance or metrics, ticks driven by the test. */
export function testGatewayConfig(o: {
  dataDir: string;
  directory: TestDirectory;
  epoch: EpochConfig;
  domains?: string[];
  /** `[crypto] workers`; default 1. */
  workers?: number;
}): GatewayConfig {
  const file = GatewayConfigSchema.parse({
    gateway: {
      data_dir: o.dataDir,
      listen: '/ip4/127.0.0.1/tcp/0',
      domains: o.domains ?? ['gw.example'],
      log_level: 'silent',
      tick_ms: 60_000,
      shutdown_grace_ms: 1000,
    },
    issuance: { enabled: false },
    crypto: { workers: o.workers ?? 1 },
    metrics: { enabled: false, port: 0 },
    directory: directorySection(o.directory, o.epoch),
  });
  return resolveGatewayConfig(file, '(test)', o.dataDir);
}

/** Creates a node's key directory with an identity (as `postmix keygen -e none` does). */
export function testNodeKeys(dataDir: string): IdentityKey {
  return KeyStore.create(join(dataDir, 'keys'), { force: false, epochs: [] }).identity;
}

export interface Arrival {
  readonly at: number;
  readonly result: HopDeliver;
}

/**
 * A gateway stand-in: registered in the document as a gateway for `sink.example`; final-hop
 * packets are recorded (with performance.now()), forward packets go on to the next hop (a
 * layer-1 mix, for mix loops). Holds its own per-epoch Sphinx keys in memory.
 */
export class SinkGateway {
  readonly identity = generateIdentity();
  readonly keys = new Map<number, SphinxKeyPair>();
  readonly arrivals: Arrival[] = [];
  onArrival: ((a: Arrival) => void) | undefined;
  document: DocumentBody | undefined;
  engine: HopEngine<NodeEntry>;
  private linkRef: PacketLink | undefined;
  private readonly replay = new ReplayStore(':memory:');

  constructor(
    private readonly geometry: Geometry,
    private readonly epochNow: () => number,
  ) {
    this.engine = new HopEngine<NodeEntry>({
      geometry,
      replay: this.replay,
      keys: () => {
        const e = this.epochNow();
        return [e, e - 1].flatMap((x) => {
          const k = this.keys.get(x);
          return k ? [{ epoch: x, key: prepareHopKey(nodeSuite, k.secretKey) }] : [];
        });
      },
      resolveNext: (id) => this.document?.layers[0]?.find((n) => idKey(n.nodeId) === idKey(id)),
      forward: (next, packet) => {
        this.sendTo(next, packet);
      },
      deliver: (result) => {
        const a = { at: performance.now(), result };
        this.arrivals.push(a);
        this.onArrival?.(a);
      },
      maxQueuedBytes: 256 * 1024 * 1024,
    });
  }

  get link(): PacketLink {
    return this.linkRef!;
  }

  async start(): Promise<void> {
    this.linkRef = await PacketLink.create({
      identity: this.identity.seed,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      packetSize: packetSizes(this.geometry).packet,
      onFrame: (f) => this.engine.handle(f),
      isAllowedPeer: () => true,
      addressesOf: (peer) => {
        const n = this.document?.layers.flat().find((x) => x.peerId === peer.toString());
        return n?.addresses.map((a) => parseMultiaddr(`${a}/p2p/${n.peerId}`));
      },
      maxQueuedFramesPerPeer: 100_000,
    });
  }

  private sendTo(n: NodeEntry, packet: Uint8Array): void {
    this.link.send(peerIdFromString(n.peerId), packet);
  }

  async upload(urls: readonly string[], epoch: number): Promise<string[]> {
    for (const e of [epoch, epoch + 1]) if (!this.keys.has(e)) this.keys.set(e, generateSphinxKey(e));
    const d = buildDescriptor({
      identity: this.identity,
      peerId: this.link.peerId.toString(),
      addresses: this.link.multiaddrs().map((m) => m.toString().replace(/\/p2p\/[^/]+$/, '')),
      role: 'gateway',
      epoch,
      sphinxKeys: [this.keys.get(epoch)!, this.keys.get(epoch + 1)!],
      gateway: {
        domains: ['sink.example'],
        issuerKeys: [{ keyEpoch: 1, publicKey: new Uint8Array(33).fill(7) }],
        keyDirectoryUrl: '',
        policy: 'token-required',
      },
      publishedAt: 1_800_000_000,
    });
    return (await uploadDescriptor(urls, d)).map((r) => r.result);
  }

  async stop(): Promise<void> {
    this.engine.close();
    await this.linkRef?.stop(200);
    this.replay.close();
  }
}

/** A client-side link (dial-only, random identity) that sends frames into layer 1. */
export async function testClientLink(geometry: Geometry, addressesOf: (peer: string) => string[] | undefined): Promise<PacketLink> {
  return PacketLink.create({
    identity: new Uint8Array(randomBytes(32)),
    listen: [],
    packetSize: packetSizes(geometry).packet,
    onFrame: () => {},
    isAllowedPeer: () => true,
    addressesOf: (peer) => addressesOf(peer.toString())?.map((a) => parseMultiaddr(a)),
    maxQueuedFramesPerPeer: 100_000,
  });
}

/** Dial addresses of a document entry (with /p2p/). */
export function dialAddresses(n: NodeEntry): string[] {
  return n.addresses.map((a) => (a.includes('/p2p/') ? a : `${a}/p2p/${n.peerId}`));
}

export { epochStart };
