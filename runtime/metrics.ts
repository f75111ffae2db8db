/**
 * Prometheus metrics, one pattern for every daemon: the code on the hot path keeps plain
 * numbers (counters objects on the engine, the link, the intake, the mailbox server...), and the
 * metrics read them when scraped (`scrapedCounter`, `scrapedCounters`, `scrapedGauge`), so that
 * handling a packet costs no metric update. Histograms are the exception: they observe events
 * as they happen. Each role has a metrics.ts that names what it exports; this file has the
 * helpers, the registry (with `postmix_build_info` and the process metrics) and the endpoint.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { serveHealth, type ReadinessProbe } from './health.ts';

type Entries = Iterable<readonly [string, number]> | Readonly<Record<string, number>>;

function entries(e: Entries): Iterable<readonly [string, number]> {
  return Symbol.iterator in e ? (e as Iterable<readonly [string, number]>) : Object.entries(e);
}

/** A counter whose value is `read()` at scrape time (undefined: not yet, reads as 0). */
export function scrapedCounter(registry: Registry, name: string, help: string, read: () => number | undefined): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      const v = read();
      if (v !== undefined) this.inc(v);
    },
  });
}

/** Counts one more of `key` (a label value, or several joined by `labelKey`) in a map of counts. */
export function bump(m: Map<string, number>, key: string, n = 1): void {
  m.set(key, (m.get(key) ?? 0) + n);
}

/** The key of a series with several labels, in the order of their names. */
export function labelKey(...values: readonly string[]): string {
  return values.join('\u0000');
}

function seriesOf(labels: readonly string[], key: string): Record<string, string> {
  const values = labels.length === 1 ? [key] : key.split('\u0000');
  return Object.fromEntries(labels.map((l, i) => [l, values[i] ?? '']));
}

/**
 * A counter with labels, one series per entry of `read()` at scrape time: the entry's key is the
 * label value (several labels: `labelKey` of their values, in the order of `label`).
 */
export function scrapedCounters(registry: Registry, name: string, help: string, label: string | readonly string[], read: () => Entries): Counter {
  const labels = typeof label === 'string' ? [label] : [...label];
  return new Counter({
    name,
    help,
    labelNames: labels,
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of entries(read())) this.inc(seriesOf(labels, key), n);
    },
  });
}

/** A gauge set to `read()` at scrape time. */
export function scrapedGauge(registry: Registry, name: string, help: string, read: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** A gauge with labels, one series per entry of `read()` at scrape time (keys as for scrapedCounters). */
export function scrapedGauges(registry: Registry, name: string, help: string, label: string | readonly string[], read: () => Entries): Gauge {
  const labels = typeof label === 'string' ? [label] : [...label];
  return new Gauge({
    name,
    help,
    labelNames: labels,
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of entries(read())) this.set(seriesOf(labels, key), n);
    },
  });
}

/**
 * A registry for one role. `defaults` adds prom-client's process metrics under their standard
 * names (process_cpu_seconds_total, process_resident_memory_bytes, nodejs_*), unprefixed so the
 * stock Node.js dashboards and alerts work; `prefix` names the role in `postmix_build_info`.
 */
export function newRegistry(prefix: string, defaults = true): Registry {
  const r = new Registry();
  if (defaults) collectDefaultMetrics({ register: r });
  registerBuildInfo(r, prefix.replace(/^postmix_/, ''));
  return r;
}

/** `postmix_build_info{role, version, node_version, commit} 1`, the usual info-gauge pattern. */
export function registerBuildInfo(registry: Registry, role: string): Gauge {
  const b = buildInfo();
  const g = new Gauge({
    name: 'postmix_build_info',
    help: 'Always 1; the labels say which postmix build runs (commit "unknown" outside a git checkout without POSTMIX_COMMIT)',
    labelNames: ['role', 'version', 'node_version', 'commit'],
    registers: [registry],
  });
  g.set({ role, version: b.version, node_version: process.version, commit: b.commit }, 1);
  return g;
}

let build: { version: string; commit: string } | undefined;

/** The package version and, when known, the commit: POSTMIX_COMMIT, else the checkout's HEAD. */
export function buildInfo(): { version: string; commit: string } {
  if (build) return build;
  // this file is <root>/runtime/metrics.ts, or <root>/dist/runtime/metrics.js once built
  const here = dirname(fileURLToPath(import.meta.url));
  const root = [resolve(here, '..'), resolve(here, '../..')].find((d) => existsSync(join(d, 'package.json'))) ?? resolve(here, '..');
  let version = 'unknown';
  try {
    version = String((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown }).version ?? 'unknown');
  } catch {
    // an unreadable package.json leaves the version unknown; metrics still work
  }
  build = { version, commit: process.env.POSTMIX_COMMIT?.trim() || gitHead(root) || 'unknown' };
  return build;
}

/** The commit HEAD names, read from the files (no `git` process at start-up); null when not a checkout. */
function gitHead(root: string): string | null {
  try {
    let gitDir = join(root, '.git');
    // a worktree's .git is a file naming its git directory, whose `commondir` holds the refs
    if (statSync(gitDir).isFile())
      gitDir = resolve(
        root,
        readFileSync(gitDir, 'utf8')
          .replace(/^gitdir:\s*/, '')
          .trim(),
      );
    const common = existsSync(join(gitDir, 'commondir')) ? resolve(gitDir, readFileSync(join(gitDir, 'commondir'), 'utf8').trim()) : gitDir;
    const head = readFileSync(join(gitDir, 'HEAD'), 'utf8').trim();
    if (/^[0-9a-f]{40}$/.test(head)) return head;
    const ref = /^ref:\s*(\S+)$/.exec(head)?.[1];
    if (!ref) return null;
    for (const d of [gitDir, common]) if (existsSync(join(d, ref))) return readFileSync(join(d, ref), 'utf8').trim();
    const packed = readFileSync(join(common, 'packed-refs'), 'utf8');
    return new RegExp(`^([0-9a-f]{40}) ${ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm').exec(packed)?.[1] ?? null;
  } catch {
    return null;
  }
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  /** When set, GET /metrics needs `Authorization: Bearer <token>` (401 otherwise). */
  readonly bearerToken?: string | undefined;
  /** Answers GET /readyz; absent, /readyz says ready once the server is up. */
  readonly readiness?: ReadinessProbe | undefined;
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  // equal-length digests so the comparison takes the same time whatever the guess
  return timingSafeEqual(createHash('sha256').update(m[1]!).digest(), createHash('sha256').update(token).digest());
}

/**
 * Serves GET /metrics (Prometheus text format), /healthz and /readyz (runtime/health.ts) on
 * host:port. The health endpoints need no token: they say only whether the node is up and
 * ready, which a load balancer or systemd probe must learn without a secret. Rejects with
 * EADDRINUSE etc.
 */
export function startMetricsServer(registry: Registry, host: string, port: number, o: MetricsServerOptions = {}): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (serveHealth(req, res, o.readiness ?? (() => ({ ready: true, checks: {} })))) return;
    if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
      if (o.bearerToken !== undefined && !tokenMatches(req.headers.authorization, o.bearerToken)) {
        res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="postmix metrics"' });
        res.end('postmix: /metrics needs Authorization: Bearer <metrics.bearer_token>\n');
        return;
      }
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(body);
        })
        .catch((e: Error) => {
          res.writeHead(500);
          res.end(e.message);
        });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('postmix: only GET /metrics, /healthz and /readyz are served here\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve({
        port: typeof addr === 'object' && addr ? addr.port : port,
        close: () =>
          new Promise((r) => {
            server.close(() => r());
            server.closeIdleConnections();
          }),
      });
    });
  });
}
