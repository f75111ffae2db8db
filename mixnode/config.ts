/**
 * `postmix mixnode run` configuration: one TOML file, validated with zod, overridable from the
 * environment (POSTMIX_MIXNODE_<SECTION>__<KEY>=value). Relative paths are resolved against the
 * directory of the config file. docs/mixnode.md lists every key.
 */
import { dirname, resolve } from 'node:path';
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
  type AuthorityRef,
  type ResolvedHopConfig,
} from '../runtime/config-schema.ts';

export const ENV_PREFIX = 'POSTMIX_MIXNODE';

export const MixnodeConfigSchema = z
  .object({
    mixnode: hopSection('/ip4/127.0.0.1/tcp/4001', {
      /** Preferred layer (1..L), 0 for none; the authorities decide (docs/spec/pki.md §6.3). */
      layer_preference: z.number().int().min(0).max(16).default(0),
    }),
    limits: limitsSection,
    replay: replaySection('log'),
    crypto: cryptoSection,
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
    metrics: metricsSection(9101),
    directory: directorySection,
  })
  .strict();

export type MixnodeConfigFile = z.infer<typeof MixnodeConfigSchema>;

/** The config with paths resolved and keys loaded: what `MixNode` takes. */
export type MixnodeConfig = ResolvedHopConfig<MixnodeConfigFile>;

export { ConfigError, type AuthorityRef };

export function resolveMixnodeConfig(file: MixnodeConfigFile, source: string, base: string): MixnodeConfig {
  return resolveHopConfig(file, file.mixnode, source, base, { loopbackNames: true, distinctKeys: true });
}

/** Reads, overrides (environment), validates and resolves a mix node config. Throws ConfigError. */
export function loadMixnodeConfig(path: string, env: NodeJS.ProcessEnv = process.env): MixnodeConfig {
  const file = loadConfig(path, MixnodeConfigSchema, ENV_PREFIX, env);
  return resolveMixnodeConfig(file, path, dirname(resolve(path)));
}
