/**
 * `postmix mixnode run` configuration: one TOML file, validated with zod, overridable from the
 * environment (POSTMIX_MIXNODE_<SECTION>__<KEY>=value). Relative paths are resolved against the
 * directory of the config file. docs/mixnode.md lists every key.
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, isLoopback, loadConfig } from '../proto/util/daemon.ts';
import { DEFAULT_EPOCH, loadIdentityPublicKey, validateEpochConfig, type EpochConfig } from '../proto/pki/index.ts';

export const ENV_PREFIX = 'POSTMIX_MIXNODE';

const b64Key = z
  .string()
  .refine((s) => /^[A-Za-z0-9+/]{43}=$/.test(s), 'must be a base64 Ed25519 public key (32 bytes, 44 characters)');

const authorityEntry = z
  .object({
    url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
    public_key: b64Key.optional(),
    public_key_file: z.string().min(1).optional(),
  })
  .strict()
  .refine((a) => (a.public_key === undefined) !== (a.public_key_file === undefined), 'give exactly one of public_key or public_key_file');

const multiaddrString = z
  .string()
  .refine((s) => /^\/(ip4|ip6|dns4|dns6|dns)\/[^/]+\/tcp\/\d{1,5}$/.test(s), 'must be a TCP multiaddr like /ip4/127.0.0.1/tcp/4001');

export const MixnodeConfigSchema = z
  .object({
    mixnode: z
      .object({
        /** Holds keys/ (identity.key, sphinx-<epoch>.key), the replay store and the document cache. */
        data_dir: z.string().min(1),
        /** Key directory; default <data_dir>/keys. */
        keys_dir: z.string().min(1).optional(),
        listen: multiaddrString.default('/ip4/127.0.0.1/tcp/4001'),
        /** Addresses published in the descriptor; default: the listen address. */
        announce: z.array(multiaddrString).min(1).max(8).optional(),
        /** Preferred layer (1..L), 0 for none; the authorities decide (docs/spec/pki.md §6.3). */
        layer_preference: z.number().int().min(0).max(16).default(0),
        log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        /** Bound on the graceful shutdown after SIGTERM (drain + link close), ms. */
        shutdown_grace_ms: z.number().int().min(0).max(600_000).default(5000),
        /** How often the epoch/document/upload logic runs, ms. */
        tick_ms: z.number().int().min(20).max(60_000).default(1000),
      })
      .strict(),
    limits: z
      .object({
        /** Bound on bytes held in the delay queue; past it packets are dropped (queue-full). */
        max_queued_bytes: z.number().int().min(64 * 1024).default(256 * 1024 * 1024),
        /** Outbound frames queued per neighbour before the link drops. */
        per_peer_queue: z.number().int().min(16).max(1_000_000).default(4096),
        /** Frames per batched stream write. */
        max_batch_frames: z.number().int().min(1).max(1024).default(32),
        max_connections: z.number().int().min(8).max(100_000).default(1024),
      })
      .strict()
      .prefault({}),
    replay: z
      .object({
        /** 'log' (in-memory set + append-only log, default) or 'sqlite' (tags on disk). */
        store: z.enum(['log', 'sqlite']).default('log'),
      })
      .strict()
      .prefault({}),
    loops: z
      .object({
        enabled: z.boolean().default(true),
        /** A loop not back after this many seconds counts as lost; 0: automatic from μ and L. */
        timeout_s: z.number().min(0).max(86_400).default(0),
        /** Finished loops (returned or lost) the success ratio is computed over. */
        window: z.number().int().min(1).max(100_000).default(200),
        /** Warn when the success ratio falls below this (with at least min_samples finished loops). */
        alert_ratio: z.number().min(0).max(1).default(0.5),
        min_samples: z.number().int().min(1).max(100_000).default(10),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(9101),
      })
      .strict()
      .prefault({}),
    directory: z
      .object({
        threshold: z.number().int().min(1).default(2),
        epoch_length: z.number().int().min(1).max(604_800).default(DEFAULT_EPOCH.length),
        epoch_origin: z.number().int().min(0).max(0xffffffff).default(DEFAULT_EPOCH.origin),
        grace: z.number().int().min(0).default(DEFAULT_EPOCH.grace),
        timeout_ms: z.number().int().min(100).max(120_000).default(10_000),
        /** Minimum time between two attempts at the same fetch or upload, ms. */
        retry_ms: z.number().int().min(10).max(600_000).default(5000),
        authorities: z.array(authorityEntry).min(1, 'list the directory authorities under [[directory.authorities]]'),
      })
      .strict(),
  })
  .strict();

export type MixnodeConfigFile = z.infer<typeof MixnodeConfigSchema>;

export interface AuthorityRef {
  readonly url: string;
  readonly publicKey: Uint8Array;
}

/** The config with paths resolved and keys loaded: what `MixNode` takes. */
export interface MixnodeConfig {
  readonly source: string;
  readonly file: MixnodeConfigFile;
  readonly dataDir: string;
  readonly keysDir: string;
  readonly epoch: EpochConfig;
  readonly authorities: readonly AuthorityRef[];
}

export { ConfigError };

export function resolveMixnodeConfig(file: MixnodeConfigFile, source: string, base: string): MixnodeConfig {
  const d = file.directory;
  let epoch: EpochConfig;
  try {
    epoch = validateEpochConfig({ origin: d.epoch_origin, length: d.epoch_length, grace: d.grace });
  } catch (e) {
    throw new ConfigError(`${source}: [directory] ${(e as Error).message}`);
  }
  if (d.threshold > d.authorities.length)
    throw new ConfigError(`${source}: directory.threshold ${d.threshold} exceeds the ${d.authorities.length} listed authorities`);
  if (file.metrics.enabled && !isLoopback(file.metrics.host))
    throw new ConfigError(`${source}: metrics.host must be a loopback address (127.0.0.1, ::1, localhost), got ${file.metrics.host}`);
  const authorities = d.authorities.map((a, i) => {
    try {
      const publicKey = a.public_key ? new Uint8Array(Buffer.from(a.public_key, 'base64')) : loadIdentityPublicKey(resolve(base, a.public_key_file!));
      return { url: a.url.replace(/\/+$/, ''), publicKey };
    } catch (e) {
      throw new ConfigError(`${source}: directory.authorities[${i}]: ${(e as Error).message}`);
    }
  });
  if (new Set(authorities.map((a) => Buffer.from(a.publicKey).toString('hex'))).size !== authorities.length)
    throw new ConfigError(`${source}: two [[directory.authorities]] entries have the same public key`);
  const dataDir = resolve(base, file.mixnode.data_dir);
  return {
    source,
    file,
    dataDir,
    keysDir: file.mixnode.keys_dir ? resolve(base, file.mixnode.keys_dir) : resolve(dataDir, 'keys'),
    epoch,
    authorities,
  };
}

/** Reads, overrides (environment), validates and resolves a mix node config. Throws ConfigError. */
export function loadMixnodeConfig(path: string, env: NodeJS.ProcessEnv = process.env): MixnodeConfig {
  const file = loadConfig(path, MixnodeConfigSchema, ENV_PREFIX, env);
  return resolveMixnodeConfig(file, path, dirname(resolve(path)));
}
