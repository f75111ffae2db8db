/**
 * What every postmix daemon does the same way: one TOML config file validated with clear
 * messages and overridable from the environment, pino logs, graceful shutdown on SIGTERM, and
 * exit codes an operator can act on. The metrics endpoint is runtime/metrics.ts.
 */
import { readFileSync } from 'node:fs';
import { pino, type Logger } from 'pino';
import { parse as parseToml } from 'smol-toml';
import type { ZodType } from 'zod';
import { ConfigError, EXIT } from './errors.ts';

type Obj = Record<string, unknown>;

function coerce(v: string): unknown {
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (/^-?\d+(\.\d+)?$/.test(v)) return Number(v);
  if (v.startsWith('[') || v.startsWith('{')) {
    try {
      return JSON.parse(v);
    } catch {
      return v;
    }
  }
  return v;
}

/**
 * Applies `PREFIX_SECTION__KEY=value` environment variables over the parsed file: the part
 * after the prefix is lower-cased, `__` separates nesting levels, and `_` inside a level stays
 * (so `POSTMIX_MIXNODE_METRICS__PORT=9101` sets `metrics.port`). Values are coerced: numbers,
 * true/false, JSON arrays and objects; anything else stays a string.
 */
export function applyEnvOverrides(cfg: Obj, prefix: string, env: NodeJS.ProcessEnv = process.env): Obj {
  const out = structuredClone(cfg);
  const p = prefix.endsWith('_') ? prefix : prefix + '_';
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith(p) || v === undefined) continue;
    const path = k.slice(p.length).toLowerCase().split('__');
    let o: Obj = out;
    for (const seg of path.slice(0, -1)) {
      if (typeof o[seg] !== 'object' || o[seg] === null) o[seg] = {};
      o = o[seg] as Obj;
    }
    o[path[path.length - 1]!] = coerce(v);
  }
  return out;
}

/** Reads, overrides and validates a config file. Throws ConfigError naming the file and each bad field. */
export function loadConfig<T>(file: string, schema: ZodType<T>, envPrefix: string, env: NodeJS.ProcessEnv = process.env): T {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let raw: Obj;
  try {
    raw = parseToml(text) as Obj;
  } catch (e) {
    throw new ConfigError(`${file} is not valid TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  return validateConfig(applyEnvOverrides(raw, envPrefix, env), schema, file);
}

export function validateConfig<T>(raw: unknown, schema: ZodType<T>, source: string): T {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const lines = r.error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
    throw new ConfigError(`${source}: invalid configuration\n${lines.join('\n')}`);
  }
  return r.data;
}

export function createLogger(name: string, level = 'info', opts: { destinationFd?: number } = {}): Logger {
  return pino({ name, level, base: { role: name, pid: process.pid } }, pino.destination({ fd: opts.destinationFd ?? 1, sync: false }));
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

/** Loopback-only address check for listeners that must not face the network by default. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
