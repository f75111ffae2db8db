/**
 * Starts the daemons of a testnet — 3 directory authorities, L layers of W mixes, one gateway
 * per overlay domain — each as its own `postmix … run` process with its own TOML config, key
 * directory and log under the run directory, exactly as an operator would run them.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'smol-toml';
import { DEFAULT_EPOCH, type VerifiedDocument } from '../../proto/pki/index.ts';
import { KeyStore } from '../../runtime/pki/key-store.ts';
import { fetchDocument } from '../../runtime/pki/client.ts';
import type { MixingParams } from '../../proto/mixing/params.ts';
import type { Geometry } from '../../proto/sphinx/geometry.ts';
import { peerIdFromSeed } from '../../runtime/link/index.ts';
import { freePorts } from './ports.ts';
import type { Supervisor } from './processes.ts';

export interface NetworkPlan {
  readonly dir: string;
  readonly authorities: number;
  readonly threshold: number;
  readonly layers: number;
  readonly layerSize: number;
  readonly gatewayDomains: readonly string[];
  readonly epochLength: number;
  readonly grace: number;
  readonly geometry: Geometry;
  readonly mixing: MixingParams;
  /** Per gateway domain: where its MX listens. */
  readonly mx: ReadonlyMap<string, { host: string; port: number }>;
  readonly logLevel: string;
  /** the address node `name` listens on (netns.ts: 127.0.0.1, or its namespace's) */
  readonly host: (name: string) => string;
}

export interface AuthorityInfo {
  readonly name: string;
  readonly url: string;
  readonly publicKey: string; // base64
}

export interface GatewayInfo {
  readonly name: string;
  readonly domain: string;
  readonly config: string;
  readonly issuanceUrl: string;
}

/** A mix or gateway as the testnet knows it (nodes.json in the run directory, minus the seed). */
export interface NodeRecord {
  readonly name: string;
  readonly kind: 'mix' | 'gateway';
  readonly layer?: number;
  readonly domain?: string;
  readonly peerId: string;
  /** libp2p listen address, without /p2p/ */
  readonly listen: string;
  readonly metricsUrl: string;
  readonly config: string;
  /** the node's identity seed: the testnet holds every key, so it can act as any node (replay injection) */
  readonly identitySeed: Uint8Array;
}

export interface RunningNetwork {
  readonly authorities: readonly AuthorityInfo[];
  readonly mixes: readonly string[];
  readonly gateways: readonly GatewayInfo[];
  readonly nodes: readonly NodeRecord[];
}

const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64');

function write(path: string, obj: Record<string, unknown>): string {
  writeFileSync(path, stringify(obj) + '\n');
  return path;
}

function directorySection(plan: NetworkPlan, auths: readonly AuthorityInfo[]) {
  return {
    threshold: plan.threshold,
    epoch_length: plan.epochLength,
    epoch_origin: DEFAULT_EPOCH.origin,
    grace: plan.grace,
    retry_ms: 500,
    timeout_ms: 3000,
    authorities: auths.map((a) => ({ url: a.url, public_key: a.publicKey })),
  };
}

/** Writes keys and configs and starts every daemon; resolves once each process says it listens. */
export async function startNetwork(
  plan: NetworkPlan,
  sup: Supervisor,
  progress: (s: string) => void,
  /** Runs once the gateway configs exist, before any mix or gateway process starts (admin commands). */
  prepareGateways: (gateways: readonly GatewayInfo[]) => Promise<void> = async () => undefined,
): Promise<RunningNetwork> {
  const nMix = plan.layers * plan.layerSize;
  const ports = await freePorts(plan.authorities + nMix * 2 + plan.gatewayDomains.length * 3);
  const nodes: NodeRecord[] = [];
  const record = async (r: Omit<NodeRecord, 'peerId' | 'metricsUrl'> & { metricsPort: number }): Promise<void> => {
    const { metricsPort, ...rest } = r;
    nodes.push({ ...rest, peerId: (await peerIdFromSeed(r.identitySeed)).toString(), metricsUrl: `http://${plan.host(r.name)}:${metricsPort}/metrics` });
  };
  // off loopback (--netns) a node's metrics listen on its own address, which its config must allow
  const metrics = (name: string, port: number) => {
    const host = plan.host(name);
    return { enabled: true, host, port, ...(host === '127.0.0.1' ? {} : { allow_remote: true }) };
  };
  let pi = 0;
  const next = () => ports[pi++]!;

  // directory authorities
  const auths: AuthorityInfo[] = [];
  const authDirs: string[] = [];
  for (let i = 1; i <= plan.authorities; i++) {
    const dir = join(plan.dir, `auth${i}`);
    mkdirSync(dir, { recursive: true });
    const { identity } = KeyStore.create(dir, { force: false, epochs: [] });
    auths.push({
      name: `auth${i}`,
      url: `http://${plan.host(`auth${i}`)}:${next()}`,
      publicKey: b64(identity.publicKey),
    });
    authDirs.push(dir);
  }
  auths.forEach((a, i) => {
    const dir = authDirs[i]!;
    const cfg = write(join(dir, 'directory.toml'), {
      authority: {
        identity_key: join(dir, 'identity.key'),
        database: join(dir, 'directory.sqlite'),
        listen_host: new URL(a.url).hostname,
        listen_port: Number(new URL(a.url).port),
        log_level: plan.logLevel,
      },
      network: {
        threshold: plan.threshold,
        layers: plan.layers,
        epoch_length: plan.epochLength,
        epoch_origin: DEFAULT_EPOCH.origin,
        grace: plan.grace,
        geometry: { max_hops: plan.geometry.maxHops, per_hop_size: plan.geometry.perHopSize, payload_size: plan.geometry.payloadSize },
        mixing: {
          lambda_p: plan.mixing.lambdaP,
          lambda_l: plan.mixing.lambdaL,
          lambda_d: plan.mixing.lambdaD,
          lambda_m: plan.mixing.lambdaM,
          lambda_g: plan.mixing.lambdaG,
          mu: plan.mixing.mu,
        },
      },
      authorities: auths.map((x) => ({ url: x.url, public_key: x.publicKey })),
    });
    sup.start(a.name, ['directory', 'run', '--config', cfg]);
  });
  await Promise.all(auths.map((a) => sup.waitForLog(a.name, /directory authority listening/, 60_000)));
  progress(`${auths.length} directory authorities up (threshold ${plan.threshold})`);

  // gateways
  const gateways: GatewayInfo[] = [];
  for (const domain of plan.gatewayDomains) {
    const name = `gw-${domain.split('.')[0]}`;
    const dir = join(plan.dir, name);
    mkdirSync(dir, { recursive: true });
    const { identity } = KeyStore.create(join(dir, 'keys'), { force: false, epochs: [] });
    const mx = plan.mx.get(domain);
    if (!mx) throw new Error(`no MX for ${domain}`);
    const issuancePort = next();
    const host = plan.host(name);
    const listen = `/ip4/${host}/tcp/${next()}`;
    const metricsPort = next();
    const cfg = write(join(dir, 'gateway.toml'), {
      gateway: { data_dir: dir, listen, domains: [domain], log_level: plan.logLevel, tick_ms: 250 },
      mx: { host: mx.host, port: mx.port, protocol: 'smtp', starttls: 'never', retry_base_s: 1, retry_max_s: 5, helo_name: `gw.${domain}` },
      issuance: { enabled: true, host, port: issuancePort, public_url: `http://${host}:${issuancePort}/` },
      metrics: metrics(name, metricsPort),
      directory: directorySection(plan, auths),
    });
    gateways.push({ name, domain, config: cfg, issuanceUrl: `http://${host}:${issuancePort}/` });
    await record({ name, kind: 'gateway', domain, listen, metricsPort, config: cfg, identitySeed: identity.seed });
  }
  await prepareGateways(gateways);

  const mixConfigs: string[] = [];
  // mixes
  const mixes: string[] = [];
  for (let l = 1; l <= plan.layers; l++) {
    for (let w = 1; w <= plan.layerSize; w++) {
      const name = `mix-l${l}-${w}`;
      const dir = join(plan.dir, name);
      mkdirSync(dir, { recursive: true });
      const { identity } = KeyStore.create(join(dir, 'keys'), { force: false, epochs: [] });
      const listen = `/ip4/${plan.host(name)}/tcp/${next()}`;
      const metricsPort = next();
      const cfg = write(join(dir, 'mixnode.toml'), {
        mixnode: { data_dir: dir, listen, layer_preference: l, log_level: plan.logLevel, tick_ms: 250 },
        metrics: metrics(name, metricsPort),
        directory: directorySection(plan, auths),
      });
      await record({ name, kind: 'mix', layer: l, listen, metricsPort, config: cfg, identitySeed: identity.seed });
      mixes.push(name);
      mixConfigs.push(cfg);
    }
  }

  mixes.forEach((name, i) => sup.start(name, ['mixnode', 'run', '--config', mixConfigs[i]!]));
  writeFileSync(
    join(plan.dir, 'nodes.json'),
    JSON.stringify(
      nodes.map(({ identitySeed: _secret, ...pub }) => pub),
      null,
      2,
    ) + '\n',
  );
  return { authorities: auths, mixes, gateways, nodes };
}

/** Starts the gateway processes (after their users exist in their databases). */
export async function startGateways(net: RunningNetwork, sup: Supervisor): Promise<void> {
  for (const g of net.gateways) sup.start(g.name, ['gateway', 'run', '--config', g.config]);
  await Promise.all([
    ...net.mixes.map((m) => sup.waitForLog(m, /mix node listening/, 60_000)),
    ...net.gateways.map((g) => sup.waitForLog(g.name, /gateway listening/, 60_000)),
  ]);
}

/**
 * Waits until the authorities publish a current document that lists every mix and gateway
 * (nodes join at the epoch after their first upload, so this takes one to two epochs).
 */
export async function waitForFullDocument(net: RunningNetwork, plan: NetworkPlan, timeoutMs: number, progress: (s: string) => void): Promise<VerifiedDocument> {
  const end = Date.now() + timeoutMs;
  const authorities = net.authorities.map((a) => Uint8Array.from(Buffer.from(a.publicKey, 'base64')));
  let last = '';
  for (;;) {
    try {
      const doc = await fetchDocument('current', {
        urls: net.authorities.map((a) => a.url),
        authorities,
        threshold: plan.threshold,
        now: Math.floor(Date.now() / 1000),
        timeoutMs: 2000,
      });
      const mixes = doc.body.layers.flat().length;
      const gws = doc.body.gateways.length;
      const msg = `network document for epoch ${doc.body.epoch}: ${mixes} mixes in ${doc.body.layers.length} layers, ${gws} gateways, ${doc.signers.length} signatures`;
      if (msg !== last) progress(msg);
      last = msg;
      if (mixes === net.mixes.length && gws === net.gateways.length) return doc;
    } catch (e) {
      const msg = `waiting for the first network document (${(e as Error).message.split('\n')[0]})`;
      if (msg !== last) progress(msg);
      last = msg;
    }
    if (Date.now() > end) throw new Error(`no complete network document after ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
