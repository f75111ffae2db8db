/**
 * The config sections and checks the daemons share. Operators copy blocks between mixnode.toml
 * and gateway.toml, and a hop's [directory] epoch keys must match the authorities' [network]:
 * a key, bound, default or message defined once here cannot drift between the roles.
 */
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import { z } from 'zod';
import { DEFAULT_EPOCH, validateEpochConfig, type EpochConfig } from '../proto/pki/index.ts';
import { loadIdentityPublicKey } from './pki/key-store.ts';
import { metricsSection, resolveMetricsAccess, type MetricsSection } from './metrics-config.ts';
import { ConfigError } from './errors.ts';
import { hex } from '../proto/util/bytes.ts';

export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info');

import { b64Key, pathField } from './config-file.ts';

export { b64Key, metricsSection, resolveMetricsAccess, type MetricsSection };

/** A key inline or in a file: an authority's operator hands out identity.pub, others paste it. */
export const authorityEntry = z
  .object({
    url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
    public_key: b64Key.optional(),
    public_key_file: pathField.optional(),
  })
  .strict()
  .refine((a) => (a.public_key === undefined) !== (a.public_key_file === undefined), 'give exactly one of public_key or public_key_file');

export type AuthorityEntry = z.infer<typeof authorityEntry>;

/**
 * A listen or announce address: parsed by the multiaddr library libp2p itself uses (so an address
 * that loads here is one the link can dial or bind), and of the one shape the link speaks, an
 * IP or DNS host then a TCP port.
 */
export const multiaddrString = z.string().superRefine((s, ctx) => {
  let names: string[];
  try {
    names = multiaddr(s)
      .getComponents()
      .map((c) => c.name);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: `not a multiaddr (${(e as Error).message}); want one like /ip4/127.0.0.1/tcp/4001` });
    return;
  }
  if (names.length !== 2 || !['ip4', 'ip6', 'dns4', 'dns6', 'dns'].includes(names[0]!) || names[1] !== 'tcp')
    ctx.addIssue({ code: 'custom', message: `must be an IP or DNS host and a TCP port, like /ip4/127.0.0.1/tcp/4001 (got /${names.join('/')})` });
});

/**
 * The epoch schedule: the authorities' [network] and the hops' [directory] must agree on it, so
 * both take the same keys with the same bounds.
 */
export const epochFields = {
  epoch_length: z.number().int().min(1).max(604_800).default(DEFAULT_EPOCH.length),
  epoch_origin: z.number().int().min(0).max(0xffffffff).default(DEFAULT_EPOCH.origin),
  grace: z.number().int().min(0).default(DEFAULT_EPOCH.grace),
};

export const thresholdField = z.number().int().min(1).default(2);

/**
 * The hop daemon's own table ([mixnode] or [gateway]). `own` holds the role's keys; they sit
 * between `announce` and `log_level`, where each role has always had them, so validation reports
 * issues in the order they were reported before.
 */
export function hopSection<T extends z.ZodRawShape>(defaultListen: string, own: T) {
  return z
    .object({
      /** Holds keys/, the replay store and the document cache (and the role's own files). */
      data_dir: pathField,
      /** Key directory; default <data_dir>/keys. */
      keys_dir: pathField.optional(),
      listen: multiaddrString.default(defaultListen),
      /** Addresses published in the descriptor; default: the listen address. */
      announce: z.array(multiaddrString).min(1).max(8).optional(),
      ...own,
      log_level: logLevel,
      /** Bound on the graceful shutdown after SIGTERM (drain + link close), ms. */
      shutdown_grace_ms: z.number().int().min(0).max(600_000).default(5000),
      /** How often the epoch/document/upload logic runs, ms. */
      tick_ms: z.number().int().min(20).max(60_000).default(1000),
    })
    .strict();
}

/** Where a hop keeps its files. */
export interface HopDirs {
  readonly data_dir: string;
  readonly keys_dir?: string | undefined;
}

/** The fields of a hop's own table that the hop node reads (the role adds its own). */
export interface HopSectionFields {
  readonly data_dir: string;
  readonly keys_dir?: string | undefined;
  readonly listen: string;
  readonly announce?: readonly string[] | undefined;
  readonly log_level: string;
  readonly shutdown_grace_ms: number;
  readonly tick_ms: number;
}

/**
 * Where a hop keeps its replay tags: 'log' (in-memory set + append-only log) or 'sqlite' (tags
 * on disk); runtime/hop/replay-store.ts compares them. The default differs per role so that no
 * existing node changes its store.
 */
export function replaySection(defaultStore: 'log' | 'sqlite') {
  return z
    .object({ store: z.enum(['log', 'sqlite']).default(defaultStore) })
    .strict()
    .prefault({});
}

export type ReplaySection = z.infer<ReturnType<typeof replaySection>>;

export const limitsSection = z
  .object({
    /** Bound on bytes held in the delay queue; past it packets are dropped (queue-full). */
    max_queued_bytes: z
      .number()
      .int()
      .min(64 * 1024)
      .default(256 * 1024 * 1024),
    /** Outbound frames queued per neighbour before the link drops. */
    per_peer_queue: z.number().int().min(16).max(1_000_000).default(4096),
    /** Frames per batched stream write. */
    max_batch_frames: z.number().int().min(1).max(1024).default(32),
    max_connections: z.number().int().min(8).max(100_000).default(1024),
  })
  .strict()
  .prefault({});

/** `[crypto] workers` by default: one core for the event loop, the others for Sphinx; at least one worker. */
export function defaultCryptoWorkers(): number {
  return Math.max(1, availableParallelism() - 1);
}

/**
 * Where a hop peels Sphinx layers (runtime/hop/unwrap-pool.ts): `workers` threads beside the
 * event loop, which keeps the I/O, the replay checks and the scheduling; 0 = on the event loop.
 */
export const cryptoSection = z
  .object({ workers: z.number().int().min(0).max(256).default(defaultCryptoWorkers) })
  .strict()
  .prefault({});

export type CryptoSection = z.infer<typeof cryptoSection>;

/** How a hop reaches the authorities and checks what they publish. */
export const directorySection = z
  .object({
    threshold: thresholdField,
    ...epochFields,
    timeout_ms: z.number().int().min(100).max(120_000).default(10_000),
    /** Minimum time between two attempts at the same fetch or upload, ms. */
    retry_ms: z.number().int().min(10).max(600_000).default(5000),
    authorities: z.array(authorityEntry).min(1, 'list the directory authorities under [[directory.authorities]]'),
  })
  .strict();

export type DirectorySection = z.infer<typeof directorySection>;
export type LimitsSection = z.infer<typeof limitsSection>;

export interface AuthorityRef {
  readonly url: string;
  readonly publicKey: Uint8Array;
}

/** `section` is the TOML table the fields came from, so the operator knows where to look. */
export function resolveEpoch(f: { epoch_origin: number; epoch_length: number; grace: number }, source: string, section: string): EpochConfig {
  try {
    return validateEpochConfig({ origin: f.epoch_origin, length: f.epoch_length, grace: f.grace });
  } catch (e) {
    throw new ConfigError(`${source}: [${section}] ${(e as Error).message}`);
  }
}

/** `key` is the dotted name of the threshold field (directory.threshold, network.threshold). */
export function checkThreshold(threshold: number, authorities: number, source: string, key: string): void {
  if (threshold > authorities) throw new ConfigError(`${source}: ${key} ${threshold} exceeds the ${authorities} listed authorities`);
}

/**
 * `key` is the dotted name of the authority array (directory.authorities, authorities).
 * `distinctKeys` refuses two entries with one public key: checkThreshold counts
 * entries while the verifier counts distinct keys, so such a list can make the threshold
 * unreachable. The gateway has never refused it, and a gateway config that loads today must
 * keep loading, so it is the caller's choice.
 */
export function resolveAuthorities(
  entries: readonly AuthorityEntry[],
  o: { source: string; base: string; key: string; distinctKeys: boolean },
): AuthorityRef[] {
  const authorities = entries.map((a, i) => {
    try {
      const publicKey = a.public_key ? new Uint8Array(Buffer.from(a.public_key, 'base64')) : loadIdentityPublicKey(resolve(o.base, a.public_key_file!));
      // a trailing slash would double up in the request paths
      return { url: a.url.replace(/\/+$/, ''), publicKey };
    } catch (e) {
      throw new ConfigError(`${o.source}: ${o.key}[${i}]: ${(e as Error).message}`);
    }
  });
  if (o.distinctKeys && new Set(authorities.map((a) => hex(a.publicKey))).size !== authorities.length)
    throw new ConfigError(`${o.source}: two [[${o.key}]] entries have the same public key`);
  return authorities;
}

/** What every hop config resolves to; the role adds its own paths. */
export interface ResolvedHopConfig<F, H extends HopDirs = HopSectionFields> {
  readonly source: string;
  readonly file: F;
  /** The role's own table ([mixnode] or [gateway]). */
  readonly hop: H;
  readonly dataDir: string;
  readonly keysDir: string;
  readonly epoch: EpochConfig;
  readonly authorities: readonly AuthorityRef[];
  /** From metrics.bearer_token or its file; undefined: /metrics needs no token. */
  readonly metricsBearerToken: string | undefined;
}

/**
 * The [directory] and [metrics] checks of a hop config, in the order both hops have always made
 * them (the first failing one is the message the operator sees), and the hop's directories.
 * The two options keep each role's past behaviour: the gateway's loopback message never listed
 * the accepted names, and the gateway accepts duplicate authority keys (see resolveAuthorities).
 */
export function resolveHopConfig<F extends { directory: DirectorySection; metrics: MetricsSection }, H extends HopDirs>(
  file: F,
  hop: H,
  source: string,
  base: string,
  o: { loopbackNames: boolean; distinctKeys: boolean },
): ResolvedHopConfig<F, H> {
  const d = file.directory;
  const epoch = resolveEpoch(d, source, 'directory');
  checkThreshold(d.threshold, d.authorities.length, source, 'directory.threshold');
  const metricsAccess = resolveMetricsAccess(file.metrics, source, base, { loopbackNames: o.loopbackNames });
  const authorities = resolveAuthorities(d.authorities, { source, base, key: 'directory.authorities', distinctKeys: o.distinctKeys });
  const dataDir = resolve(base, hop.data_dir);
  const keysDir = hop.keys_dir ? resolve(base, hop.keys_dir) : resolve(dataDir, 'keys');
  return { source, file, hop, dataDir, keysDir, epoch, authorities, metricsBearerToken: metricsAccess.bearerToken };
}
