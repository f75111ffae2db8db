/**
 * What every postmix daemon does the same way: one TOML config file validated with clear
 * messages and overridable from the environment, pino logs, graceful shutdown on SIGTERM, and
 * exit codes an operator can act on. The metrics endpoint is runtime/metrics.ts.
 */
import { pino, type Logger } from 'pino';
import { EXIT } from './errors.ts';
import { tolerateClosedPipe } from './closed-pipe.ts';

// The config file's reading lives in its own module, which loads no logger: `postmix sendmail`
// needs only that. Re-exported because every daemon's config loader comes here for it.
export { applyEnvOverrides, expandHome, isLoopback, loadConfig, pathField, validateConfig } from './config-file.ts';

export function createLogger(name: string, level = 'info', opts: { destinationFd?: number } = {}): Logger {
  const dest = pino.destination({ fd: opts.destinationFd ?? 1, sync: false });
  tolerateClosedPipe(dest); // a daemon whose log reader went away keeps running (its logs are dropped)
  return pino({ name, level, base: { role: name, pid: process.pid } }, dest);
}

/**
 * Runs `stop` once on SIGTERM or SIGINT, then exits. A second signal, or `stop` taking longer
 * than `graceMs`, exits at once with status 1.
 */
export function onShutdown(log: Logger, stop: () => Promise<void>, graceMs = 10_000): void {
  let stopping = false;
  const handler = (sig: NodeJS.Signals) => {
    if (stopping) {
      log.warn({ sig }, 'second signal: exiting now');
      process.exit(EXIT.failure);
    }
    stopping = true;
    log.info({ sig, graceMs }, 'shutting down');
    const timer = setTimeout(() => {
      log.error({ graceMs }, 'graceful shutdown took too long; exiting');
      process.exit(EXIT.failure);
    }, graceMs);
    timer.unref();
    stop()
      .then(() => {
        log.info('stopped');
        log.flush?.();
        process.exit(EXIT.ok);
      })
      .catch((e: Error) => {
        log.error({ err: e.message }, 'error during shutdown');
        process.exit(EXIT.failure);
      });
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
