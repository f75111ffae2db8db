/**
 * `postmix gateway run` configuration: one TOML file, validated with zod, overridable from the
 * environment (POSTMIX_GATEWAY_<SECTION>__<KEY>=value). Relative paths resolve against the
 * config file's directory. docs/gateway.md lists every key.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { loadConfig } from '../runtime/daemon.ts';
import { ConfigError } from '../runtime/errors.ts';
import {
  cryptoSection,
  directorySection,
  hopSection,
  limitsSection,
  metricsSection,
  replaySection,
  resolveHopConfig,
  type ResolvedHopConfig,
} from '../runtime/config-schema.ts';
import { deriveIssuerKeys, type IssuerKeys } from '../proto/tokens/index.ts';
import { GROUP_COMMIT_DEFAULTS } from './group-commit.ts';
import { DEFAULT_LIMITS, type IssuanceLimits } from './issuance.ts';
import { DEFAULT_ROTATION, type RotationPolicy } from './key-epochs.ts';
import { fromHex } from '../proto/util/bytes.ts';

export const ENV_PREFIX = 'POSTMIX_GATEWAY';

const domain = z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/, 'must be a lower-case domain name');

export const GatewayConfigSchema = z
  .object({
    gateway: hopSection('/ip4/127.0.0.1/tcp/4101', {
      /** The mail domains this gateway is the last hop for. */
      domains: z.array(domain).min(1, 'list the served mail domains'),
    }),
    intake: z
      .object({
        max_message_bytes: z
          .number()
          .int()
          .min(1024)
          .max(64 * 1024 * 1024)
          .default(10 * 1024 * 1024),
        /** How long fragments of an incomplete message are kept, seconds. */
        reassembly_ttl_s: z
          .number()
          .int()
          .min(60)
          .max(30 * 86_400)
          .default(2 * 86_400),
        /**
         * Answer UnknownRecipient for unknown users of a served domain. Off by default: they get
         * TokenRefused like a known user without a valid token, so addresses cannot be enumerated.
         */
        ack_unknown_recipient: z.boolean().default(false),
        /**
         * Group commit (gateway/group-commit.ts): the longest a fragment waits, ms, for others to
         * share its fsync'd transaction (0: only those of the same event-loop turn). Its ACK
         * leaves after that commit, so this adds at most this much to an ACK's way back.
         */
        group_commit_wait_ms: z.number().int().min(0).max(100).default(GROUP_COMMIT_DEFAULTS.maxWaitMs),
        /** Group commit: a transaction is committed at once when it holds this many fragments. */
        group_commit_max_fragments: z.number().int().min(1).max(4096).default(GROUP_COMMIT_DEFAULTS.maxFragments),
        /**
         * Group commit: where the fsync that makes a batch durable runs. 'overlapped': after the
         * COMMIT, on the thread pool, while the next batch is decided; 'in-commit': inside COMMIT
         * (synchronous=FULL) on the event loop. ACKs wait for it either way.
         */
        group_commit_fsync: z.enum(['overlapped', 'in-commit']).default(GROUP_COMMIT_DEFAULTS.fsync),
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
        max_age_s: z
          .number()
          .int()
          .min(60)
          .max(30 * 86_400)
          .default(5 * 86_400),
        recovery: z.enum(['resend', 'hold']).default('resend'),
        concurrency: z.number().int().min(1).max(64).default(4),
        /** Delivered rows are kept this long for dedupe of late resends, seconds. */
        keep_delivered_s: z
          .number()
          .int()
          .min(0)
          .default(7 * 86_400),
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
        /** Published in the descriptor (keyDirectoryUrl): the HTTPS URL of the reverse proxy in front; '' for none. */
        public_url: z.string().default(''),
        max_per_request: z.number().int().min(1).max(1000).default(DEFAULT_LIMITS.maxPerRequest),
        /** Per user: tokens per hour (token bucket), requests per minute, tokens per key epoch (bounds the spent set). */
        max_tokens_per_hour: z.number().int().min(1).default(DEFAULT_LIMITS.maxTokensPerHour),
        max_requests_per_minute: z.number().int().min(1).default(DEFAULT_LIMITS.maxRequestsPerMinute),
        max_tokens_per_epoch: z.number().int().min(1).default(DEFAULT_LIMITS.maxTokensPerEpoch),
        max_body_bytes: z
          .number()
          .int()
          .min(1024)
          .max(16 * 1024 * 1024)
          .default(DEFAULT_LIMITS.maxBodyBytes),
        headers_timeout_ms: z.number().int().min(100).default(DEFAULT_LIMITS.headersTimeoutMs),
        request_timeout_ms: z.number().int().min(100).default(DEFAULT_LIMITS.requestTimeoutMs),
        max_connections: z.number().int().min(1).default(DEFAULT_LIMITS.maxConnections),
      })
      .strict()
      .prefault({}),
    tokens: z
      .object({
        /** Length of a recipient's key epoch, seconds (0: epochs end only by `user rotate`); a user may have its own. */
        rotation_s: z.number().int().min(0).default(DEFAULT_ROTATION.rotationS),
        /** Tokens of an epoch that ended by schedule still verify this long (mail in flight), seconds. */
        grace_s: z.number().int().min(0).default(DEFAULT_ROTATION.graceS),
      })
      .strict()
      .refine((t) => t.rotation_s === 0 || t.grace_s <= t.rotation_s, { message: 'grace_s must not be longer than rotation_s' })
      .prefault({}),
    limits: limitsSection,
    replay: replaySection('sqlite'),
    crypto: cryptoSection,
    metrics: metricsSection(9102),
    directory: directorySection,
  })
  .strict();

export type GatewayConfigFile = z.infer<typeof GatewayConfigSchema>;

export interface GatewayConfig extends ResolvedHopConfig<GatewayConfigFile> {
  readonly dbPath: string;
  readonly issuerSeedPath: string;
}

export { ConfigError };

export function resolveGatewayConfig(file: GatewayConfigFile, source: string, base: string): GatewayConfig {
  const hop = resolveHopConfig(file, file.gateway, source, base, { loopbackNames: false, distinctKeys: false });
  return { ...hop, dbPath: join(hop.dataDir, 'gateway.sqlite'), issuerSeedPath: join(hop.dataDir, 'issuer.seed') };
}

/** The [issuance] limits as the endpoint takes them. */
export function issuanceLimits(f: GatewayConfigFile): IssuanceLimits {
  const i = f.issuance;
  return {
    maxPerRequest: i.max_per_request,
    maxTokensPerHour: i.max_tokens_per_hour,
    maxTokensPerEpoch: i.max_tokens_per_epoch,
    maxRequestsPerMinute: i.max_requests_per_minute,
    maxBodyBytes: i.max_body_bytes,
    headersTimeoutMs: i.headers_timeout_ms,
    requestTimeoutMs: i.request_timeout_ms,
    maxConnections: i.max_connections,
  };
}

/** The [tokens] rotation, the default of every user without its own. */
export function rotationPolicy(f: GatewayConfigFile): RotationPolicy {
  return { rotationS: f.tokens.rotation_s, graceS: f.tokens.grace_s };
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
  return deriveIssuerKeys(fromHex(hexSeed));
}
