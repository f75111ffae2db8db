/**
 * `postmix gateway run` configuration: one TOML file, validated with zod, overridable from the
 * environment (POSTMIX_GATEWAY_<SECTION>__<KEY>=value). Relative paths resolve against the
 * config file's directory. docs/gateway.md lists every key.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, isLoopback, loadConfig } from '../proto/util/daemon.ts';
import { DEFAULT_EPOCH, loadIdentityPublicKey, validateEpochConfig, type EpochConfig } from '../proto/pki/index.ts';
import { deriveIssuerKeys, type IssuerKeys } from '../proto/tokens/index.ts';

export const ENV_PREFIX = 'POSTMIX_GATEWAY';

const b64Key = z.string().refine((s) => /^[A-Za-z0-9+/]{43}=$/.test(s), 'must be a base64 Ed25519 public key (32 bytes, 44 characters)');
const authorityEntry = z
  .object({ url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }), public_key: b64Key.optional(), public_key_file: z.string().min(1).optional() })
  .strict()
  .refine((a) => (a.public_key === undefined) !== (a.public_key_file === undefined), 'give exactly one of public_key or public_key_file');
const multiaddrString = z
  .string()
  .refine((s) => /^\/(ip4|ip6|dns4|dns6|dns)\/[^/]+\/tcp\/\d{1,5}$/.test(s), 'must be a TCP multiaddr like /ip4/127.0.0.1/tcp/4001');
const domain = z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/, 'must be a lower-case domain name');

export const GatewayConfigSchema = z
  .object({
    gateway: z
      .object({
        /** Holds gateway.sqlite, issuer.seed, keys/ and the document cache. */
        data_dir: z.string().min(1),
        keys_dir: z.string().min(1).optional(),
        listen: multiaddrString.default('/ip4/127.0.0.1/tcp/4101'),
        announce: z.array(multiaddrString).min(1).max(8).optional(),
        /** The mail domains this gateway is the last hop for. */
        domains: z.array(domain).min(1, 'list the served mail domains'),
        log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        shutdown_grace_ms: z.number().int().min(0).max(600_000).default(5000),
        tick_ms: z.number().int().min(20).max(60_000).default(1000),
      })
      .strict(),
    intake: z
      .object({
        max_message_bytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(10 * 1024 * 1024),
        /** How long fragments of an incomplete message are kept, seconds. */
        reassembly_ttl_s: z.number().int().min(60).max(30 * 86_400).default(2 * 86_400),
        /** Answer UnknownRecipient for unknown users of a served domain (else drop silently). */
        ack_unknown_recipient: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    mx: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(1).max(65535).default(25),
        protocol: z.enum(['smtp', 'lmtp']).default('smtp'),
        starttls: z.enum(['opportunistic', 'require', 'never']).default('opportunistic'),
        tls_verify: z.boolean().default(true),
        helo_name: z.string().min(1).default('postmix-gateway'),
        envelope_from: z.string().default(''),
        retry_base_s: z.number().min(0.01).max(86_400).default(30),
        retry_max_s: z.number().min(0.01).max(86_400).default(3600),
        max_age_s: z.number().int().min(60).max(30 * 86_400).default(5 * 86_400),
        recovery: z.enum(['resend', 'hold']).default('resend'),
        concurrency: z.number().int().min(1).max(64).default(4),
        /** Delivered rows are kept this long for dedupe of late resends, seconds. */
        keep_delivered_s: z.number().int().min(0).default(7 * 86_400),
      })
      .strict()
      .prefault({}),
    mailbox: z
      .object({ max_items: z.number().int().min(1).max(1_000_000).default(1000), ttl_s: z.number().int().min(1).default(86_400) })
      .strict()
      .prefault({}),
    issuance: z
      .object({
        enabled: z.boolean().default(true),
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(4180),
        /** Published in the descriptor (keyDirectoryUrl); '' for none. */
        public_url: z.string().default(''),
        max_per_request: z.number().int().min(1).max(1000).default(100),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        max_queued_bytes: z.number().int().min(64 * 1024).default(256 * 1024 * 1024),
        per_peer_queue: z.number().int().min(16).max(1_000_000).default(4096),
        max_batch_frames: z.number().int().min(1).max(1024).default(32),
        max_connections: z.number().int().min(8).max(100_000).default(1024),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({ enabled: z.boolean().default(true), host: z.string().min(1).default('127.0.0.1'), port: z.number().int().min(0).max(65535).default(9102) })
      .strict()
      .prefault({}),
    directory: z
      .object({
        threshold: z.number().int().min(1).default(2),
        epoch_length: z.number().int().min(1).max(604_800).default(DEFAULT_EPOCH.length),
        epoch_origin: z.number().int().min(0).max(0xffffffff).default(DEFAULT_EPOCH.origin),
        grace: z.number().int().min(0).default(DEFAULT_EPOCH.grace),
        timeout_ms: z.number().int().min(100).max(120_000).default(10_000),
        retry_ms: z.number().int().min(10).max(600_000).default(5000),
        authorities: z.array(authorityEntry).min(1, 'list the directory authorities under [[directory.authorities]]'),
      })
      .strict(),
  })
  .strict();

export type GatewayConfigFile = z.infer<typeof GatewayConfigSchema>;

export interface GatewayConfig {
  readonly source: string;
  readonly file: GatewayConfigFile;
  readonly dataDir: string;
  readonly keysDir: string;
  readonly dbPath: string;
  readonly issuerSeedPath: string;
  readonly epoch: EpochConfig;
  readonly authorities: readonly { url: string; publicKey: Uint8Array }[];
}

export { ConfigError };

export function resolveGatewayConfig(file: GatewayConfigFile, source: string, base: string): GatewayConfig {
  const d = file.directory;
  let epoch: EpochConfig;
  try {
    epoch = validateEpochConfig({ origin: d.epoch_origin, length: d.epoch_length, grace: d.grace });
  } catch (e) {
    throw new ConfigError(`${source}: [directory] ${(e as Error).message}`);
  }
  if (d.threshold > d.authorities.length) throw new ConfigError(`${source}: directory.threshold ${d.threshold} exceeds the ${d.authorities.length} listed authorities`);
  if (file.metrics.enabled && !isLoopback(file.metrics.host)) throw new ConfigError(`${source}: metrics.host must be a loopback address, got ${file.metrics.host}`);
  const authorities = d.authorities.map((a, i) => {
    try {
      const publicKey = a.public_key ? new Uint8Array(Buffer.from(a.public_key, 'base64')) : loadIdentityPublicKey(resolve(base, a.public_key_file!));
      return { url: a.url.replace(/\/+$/, ''), publicKey };
    } catch (e) {
      throw new ConfigError(`${source}: directory.authorities[${i}]: ${(e as Error).message}`);
    }
  });
  const dataDir = resolve(base, file.gateway.data_dir);
  return {
    source,
    file,
    dataDir,
    keysDir: file.gateway.keys_dir ? resolve(base, file.gateway.keys_dir) : join(dataDir, 'keys'),
    dbPath: join(dataDir, 'gateway.sqlite'),
    issuerSeedPath: join(dataDir, 'issuer.seed'),
    epoch,
    authorities,
  };
}

export function loadGatewayConfig(path: string, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const file = loadConfig(path, GatewayConfigSchema, ENV_PREFIX, env);
  return resolveGatewayConfig(file, path, dirname(resolve(path)));
}

/**
 * The gateway's token issuer key pair, from `issuer.seed` (32 random bytes, hex, mode 0600),
 * created on first use. Losing the seed revokes every token ever issued.
 */
export function loadOrCreateIssuer(seedPath: string): IssuerKeys {
  if (!existsSync(seedPath)) {
    mkdirSync(dirname(seedPath), { recursive: true, mode: 0o700 });
    writeFileSync(seedPath, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
  }
  const st = statSync(seedPath);
  if ((st.mode & 0o077) !== 0) throw new ConfigError(`${seedPath} is readable by group or others; run: chmod 600 ${seedPath}`);
  const hexSeed = readFileSync(seedPath, 'utf8').trim();
  if (!/^[0-9a-f]{64}$/.test(hexSeed)) throw new ConfigError(`${seedPath}: not a 32-byte hex seed`);
  chmodSync(seedPath, 0o600);
  return deriveIssuerKeys(new Uint8Array(Buffer.from(hexSeed, 'hex')));
}
