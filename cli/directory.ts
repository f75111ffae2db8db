import { Command } from 'commander';
import { createLogger, onShutdown } from '../runtime/daemon.ts';
import { ConfigError, exitCodeOf } from '../runtime/errors.ts';
import { ENV_PREFIX, loadDirectoryConfig } from '../directory/config.ts';
import { ownAuthorityKey, runDirectory } from '../directory/daemon.ts';
import { addInit } from './init.ts';

const RUN_HELP = `
Configuration (one TOML file; see docs/spec/pki.md §8 for a complete example):
  [authority]   identity_key, database, listen_host (127.0.0.1), listen_port (8080),
                log_level (info), max_descriptors_per_epoch (5000), peer_timeout_ms (5000)
  [network]     threshold (2), layers (3), epoch_length (3600 s), epoch_origin (unix s),
                grace (600 s), [network.geometry] max_hops/per_hop_size/payload_size,
                [network.mixing] lambda_p/lambda_l/lambda_d/lambda_m/lambda_g/mu
  [[authorities]] url + public_key (base64) or public_key_file, one per authority, this one included

Environment overrides: ${ENV_PREFIX}_<SECTION>__<KEY>=value, e.g.
  ${ENV_PREFIX}_AUTHORITY__LISTEN_PORT=8081  ${ENV_PREFIX}_AUTHORITY__LOG_LEVEL=debug

HTTP API: GET /v1/document/{current,next,<epoch>}, POST /v1/descriptor, GET /v1/vote/<epoch>,
GET /v1/signature/<epoch>, GET /healthz, GET /readyz, GET /metrics (Prometheus).
Logs: JSON lines (pino) on stdout. SIGTERM/SIGINT: stop the scheduler, finish requests, close the database.
Exit codes: 0 ok, 1 failure, 69 port unavailable, 77 key problem, 78 bad configuration.
`;

export function registerDirectory(program: Command): void {
  const cmd = program
    .command('directory')
    .description('directory authority: collect signed node descriptors, vote with the other authorities, publish the signed network document per epoch');
  addInit(cmd, 'directory');
  cmd
    .command('run')
    .description('run a directory authority (HTTP API, SQLite state, k-of-n voting)')
    .requiredOption('-c, --config <file>', "the authority's TOML configuration file")
    .option('--check', 'validate the configuration and key file, print a summary, and exit without serving', false)
    .addHelpText('after', RUN_HELP)
    .action(async (opts: { config: string; check: boolean }) => {
      let cfg;
      try {
        cfg = loadDirectoryConfig(opts.config);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        process.stderr.write(`postmix directory run: ${e.message}\n`);
        process.exitCode = exitCodeOf(e);
        return;
      }
      if (opts.check) {
        const n = cfg.file.network;
        try {
          ownAuthorityKey(cfg);
        } catch (e) {
          process.stderr.write(`postmix directory run: ${(e as Error).message}\n`);
          process.exitCode = exitCodeOf(e);
          return;
        }
        process.stdout.write(
          `config ok: ${cfg.authorities.length} authorities, threshold ${n.threshold}, ${n.layers} layers, epoch ${n.epoch_length}s from ${n.epoch_origin}, ` +
            `listen ${cfg.file.authority.listen_host}:${cfg.file.authority.listen_port}, database ${cfg.databasePath}\n`,
        );
        return;
      }
      const log = createLogger('directory', cfg.file.authority.log_level);
      let running;
      try {
        running = await runDirectory(cfg, { logger: log, defaultMetrics: true });
      } catch (e) {
        log.error({ err: (e as Error).message }, 'cannot start');
        log.flush?.();
        process.stderr.write(`postmix directory run: ${(e as Error).message}\n`);
        process.exitCode = exitCodeOf(e);
        return;
      }
      const r = running;
      onShutdown(log, () => r.close());
    });
}
