/**
 * `postmix directory run` configuration: one TOML file, validated with zod, with environment
 * overrides. Relative paths are resolved against the config file's directory.
 * docs/spec/pki.md §8 shows a complete example.
 */
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_GEOMETRY, validateGeometry, type Geometry } from '../proto/sphinx/geometry.ts';
import { DEFAULT_MIXING, validateMixingParams, type MixingParams } from '../proto/mixing/params.ts';
import { DEFAULT_KEYS_AHEAD, MAX_KEYS_AHEAD } from '../proto/pki/epoch.ts';
import { loadConfig, pathField } from '../runtime/config-file.ts';
import { ConfigError } from '../runtime/errors.ts';
import { authorityEntry, checkThreshold, epochFields, logLevel, resolveAuthorities, resolveEpoch, thresholdField } from '../runtime/config-schema.ts';

export const DirectoryConfigSchema = z
  .object({
    authority: z
      .object({
        identity_key: pathField,
        database: pathField,
        listen_host: z.string().min(1).default('127.0.0.1'),
        listen_port: z.number().int().min(0).max(65535).default(8080),
        log_level: logLevel,
        max_descriptors_per_epoch: z.number().int().min(1).max(10_000).default(5000),
        peer_timeout_ms: z.number().int().min(100).max(60_000).default(5000),
      })
      .strict(),
    network: z
      .object({
        threshold: thresholdField,
        layers: z.number().int().min(1).max(16).default(3),
        ...epochFields,
        /** epochs past its own a document lists keys for and stays usable: the authority outage ridden through */
        keys_ahead: z.number().int().min(0).max(MAX_KEYS_AHEAD).default(DEFAULT_KEYS_AHEAD),
        geometry: z
          .object({
            max_hops: z.number().int().default(DEFAULT_GEOMETRY.maxHops),
            per_hop_size: z.number().int().default(DEFAULT_GEOMETRY.perHopSize),
            payload_size: z.number().int().default(DEFAULT_GEOMETRY.payloadSize),
          })
          .strict()
          .prefault({}),
        mixing: z
          .object({
            lambda_p: z.number().default(DEFAULT_MIXING.lambdaP),
            lambda_l: z.number().default(DEFAULT_MIXING.lambdaL),
            lambda_d: z.number().default(DEFAULT_MIXING.lambdaD),
            lambda_m: z.number().default(DEFAULT_MIXING.lambdaM),
            lambda_g: z.number().default(DEFAULT_MIXING.lambdaG),
            mu: z.number().default(DEFAULT_MIXING.mu),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    authorities: z.array(authorityEntry).min(1, 'list every authority of the network (this one included) under [[authorities]]'),
  })
  .strict();

export type DirectoryConfigFile = z.infer<typeof DirectoryConfigSchema>;

export interface ResolvedDirectoryConfig {
  readonly file: DirectoryConfigFile;
  readonly identityKeyPath: string;
  readonly databasePath: string;
  readonly authorities: readonly { readonly url: string; readonly publicKey: Uint8Array }[];
  /** [network.geometry] and [network.mixing], validated: what goes into the network document */
  readonly geometry: Geometry;
  readonly mixing: MixingParams;
}

export { ConfigError };

/** Prefix of environment overrides: POSTMIX_DIRECTORY_AUTHORITY__LISTEN_PORT=8081 sets authority.listen_port. */
export const ENV_PREFIX = 'POSTMIX_DIRECTORY';

export function loadDirectoryConfig(path: string, env: NodeJS.ProcessEnv = process.env): ResolvedDirectoryConfig {
  const file = loadConfig(path, DirectoryConfigSchema, ENV_PREFIX, env);
  const base = dirname(resolve(path));
  const n = file.network;
  resolveEpoch(n, path, 'network');
  let geometry: Geometry;
  let mixing: MixingParams;
  try {
    geometry = validateGeometry({ maxHops: n.geometry.max_hops, perHopSize: n.geometry.per_hop_size, payloadSize: n.geometry.payload_size });
    mixing = validateMixingParams({
      lambdaP: n.mixing.lambda_p,
      lambdaL: n.mixing.lambda_l,
      lambdaD: n.mixing.lambda_d,
      lambdaM: n.mixing.lambda_m,
      lambdaG: n.mixing.lambda_g,
      mu: n.mixing.mu,
    });
  } catch (e) {
    throw new ConfigError(`${path}: [network] ${(e as Error).message}`);
  }
  checkThreshold(n.threshold, file.authorities.length, path, 'network.threshold');
  const authorities = resolveAuthorities(file.authorities, { source: path, base, key: 'authorities', distinctKeys: true });
  return {
    file,
    identityKeyPath: resolve(base, file.authority.identity_key),
    databasePath: resolve(base, file.authority.database),
    authorities,
    geometry,
    mixing,
  };
}
