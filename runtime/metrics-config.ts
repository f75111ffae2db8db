/**
 * The [metrics] table every daemon shares and its checks, in a module of its own: the client's
 * config loads it, and `postmix sendmail` (which reads that config) must not pull in the hop's
 * schema (multiaddr, key stores) to start.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { isLoopback, pathField } from './config-file.ts';
import { ConfigError } from './errors.ts';

/**
 * The default port differs per role so a mix and a gateway can share a host without a clash.
 * The listener stays on loopback unless `allow_remote` says otherwise (resolveMetricsAccess):
 * metrics show traffic volumes, which an operator publishes by choice, not by a typo.
 */
export function metricsSection(defaultPort: number, defaultEnabled = true) {
  return z
    .object({
      enabled: z.boolean().default(defaultEnabled),
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(defaultPort),
      /** Lets `host` be a non-loopback address (a Prometheus on another host scrapes it). */
      allow_remote: z.boolean().default(false),
      /** When given (inline or in a file), GET /metrics needs `Authorization: Bearer <token>`. */
      bearer_token: z.string().min(16, 'must be at least 16 characters').optional(),
      bearer_token_file: pathField.optional(),
    })
    .strict()
    .refine((m) => m.bearer_token === undefined || m.bearer_token_file === undefined, 'give at most one of bearer_token or bearer_token_file')
    .prefault({});
}

/**
 * Where and how the metrics listener may serve, from a validated [metrics] table: a non-loopback
 * host only with allow_remote, and the bearer token read from its file (relative to `base`).
 * Throws ConfigError naming the key. `loopbackNames` keeps the mix node's message, which has
 * always listed the accepted names.
 */
export function resolveMetricsAccess(
  m: MetricsSection,
  source: string,
  base: string,
  o: { loopbackNames?: boolean } = {},
): { bearerToken: string | undefined } {
  if (m.enabled && !isLoopback(m.host) && !m.allow_remote)
    throw new ConfigError(
      `${source}: metrics.host must be a loopback address${o.loopbackNames ? ' (127.0.0.1, ::1, localhost)' : ''}, got ${m.host}; ` +
        'set metrics.allow_remote = true to serve metrics there (and metrics.bearer_token_file to require a token)',
    );
  if (m.bearer_token !== undefined) return { bearerToken: m.bearer_token };
  if (m.bearer_token_file === undefined) return { bearerToken: undefined };
  const path = resolve(base, m.bearer_token_file);
  let token: string;
  try {
    // a secret like the key files: refused when the group or others may read it
    const mode = statSync(path).mode;
    if ((mode & 0o077) !== 0)
      throw new ConfigError(
        `${source}: metrics.bearer_token_file: ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}); run: chmod 600 ${path}`,
      );
    token = readFileSync(path, 'utf8').trim();
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError(`${source}: metrics.bearer_token_file: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (token.length < 16 || /\s/.test(token))
    throw new ConfigError(`${source}: metrics.bearer_token_file: ${path} must hold one token of at least 16 characters and no spaces`);
  return { bearerToken: token };
}

export type MetricsSection = z.infer<ReturnType<typeof metricsSection>>;
