import type { Command } from 'commander';
import { createLogger, onShutdown } from '../runtime/daemon.ts';
import { ConfigError, exitCodeOf } from '../runtime/errors.ts';
import { openKeyStore } from '../runtime/hop/epoch-keys.ts';
import { ENV_PREFIX, loadMixnodeConfig, type MixnodeConfig } from '../mixnode/config.ts';
import { MixNode } from '../mixnode/daemon.ts';
import { addInit } from './init.ts';
import { hex } from '../proto/util/bytes.ts';

const RUN_HELP = `
Configuration (one TOML file; docs/mixnode.md has a complete example and every key):
  [mixnode]     data_dir (keys/, replay store, document cache), keys_dir (<data_dir>/keys),
                listen (/ip4/127.0.0.1/tcp/4001), announce ([listen]), layer_preference (0),
                log_level (info), shutdown_grace_ms (5000), tick_ms (1000)
  [limits]      max_queued_bytes (256 MiB), per_peer_queue (4096 frames), max_batch_frames (32),
                max_connections (1024)
  [replay]      store ("log" | "sqlite")
  [loops]       enabled (true), timeout_s (0 = auto), window (200), alert_ratio (0.5), min_samples (10)
  [metrics]     enabled (true), host (127.0.0.1; loopback unless allow_remote), port (9101), allow_remote (false),
                bearer_token | bearer_token_file; the listener also serves /healthz and /readyz
  [directory]   threshold (2), epoch_length (3600), epoch_origin, grace (600), timeout_ms, retry_ms,
                [[directory.authorities]] url + public_key (base64) or public_key_file

Environment overrides: ${ENV_PREFIX}_<SECTION>__<KEY>=value, e.g.
  ${ENV_PREFIX}_METRICS__PORT=9102  ${ENV_PREFIX}_MIXNODE__LOG_LEVEL=debug

Keys: create the identity once with \`postmix keygen -d <data_dir>/keys -e none\`; the node
makes its per-epoch Sphinx keys itself, uploads its descriptor ahead of each epoch and deletes
expired keys. Logs: JSON lines (pino) on stdout. Metrics: GET http://host:port/metrics.
SIGTERM/SIGINT: stop accepting, forward what falls due within the shutdown grace, close links.
Exit codes: 0 ok, 1 failure, 69 port in use, 77 key file missing or with unsafe permissions,
78 bad configuration.
`;

interface RunOpts {
  config: string;
  logLevel?: string;
  check: boolean;
}

function fail(msg: string, code: number): void {
  process.stderr.write(`postmix mixnode run: ${msg}\n`);
  process.exitCode = code;
}

export function registerMixnode(program: Command): void {
  const cmd = program
    .command('mixnode')
    .description('mix node: unwrap one Sphinx layer, drop replays, hold each packet for its delay, forward; send loop cover');
  addInit(cmd, 'mixnode');
  cmd
    .command('run')
    .description('run a mix node (libp2p packet link, epoch keys and descriptors, loop cover, Prometheus metrics)')
    .requiredOption('-c, --config <file>', "the node's TOML configuration file")
    .option('-l, --log-level <level>', 'override mixnode.log_level (fatal, error, warn, info, debug, trace, silent)')
    .option('--check', 'validate the configuration and the key files, print a summary, and exit', false)
    .addHelpText('after', RUN_HELP)
    .action(async (opts: RunOpts) => {
      let cfg: MixnodeConfig;
      try {
        const env = opts.logLevel ? { ...process.env, [`${ENV_PREFIX}_MIXNODE__LOG_LEVEL`]: opts.logLevel } : process.env;
        cfg = loadMixnodeConfig(opts.config, env);
      } catch (e) {
        if (e instanceof ConfigError) return fail(e.message, exitCodeOf(e));
        throw e;
      }
      if (opts.check) {
        try {
          const { identity } = openKeyStore(cfg.keysDir);
          const f = cfg.file;
          process.stdout.write(
            `config ok: node ${hex(identity.nodeId).slice(0, 16)}…, listen ${f.mixnode.listen}, ` +
              `${cfg.authorities.length} authorities (threshold ${f.directory.threshold}), epoch ${f.directory.epoch_length}s, ` +
              `replay store ${f.replay.store}, metrics ${f.metrics.enabled ? `${f.metrics.host}:${f.metrics.port}` : 'off'}\n`,
          );
        } catch (e) {
          return fail((e as Error).message, exitCodeOf(e));
        }
        return;
      }
      const log = createLogger('mixnode', cfg.file.mixnode.log_level);
      let node: MixNode;
      try {
        node = await MixNode.start({ config: cfg, logger: log });
      } catch (e) {
        log.error({ err: (e as Error).message }, 'cannot start');
        log.flush?.();
        return fail((e as Error).message, exitCodeOf(e));
      }
      const grace = cfg.file.mixnode.shutdown_grace_ms;
      onShutdown(
        log,
        async () => {
          await node.close(grace);
        },
        grace + 3000,
      );
    });
}
