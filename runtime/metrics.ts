/**
 * Prometheus metrics, one pattern for every daemon: the code on the hot path keeps plain
 * numbers (counters objects on the engine, the link, the intake, the mailbox server...), and the
 * metrics read them when scraped (`scrapedCounter`, `scrapedCounters`, `scrapedGauge`), so that
 * handling a packet costs no metric update. Histograms are the exception: they observe events
 * as they happen. Each role has a metrics.ts that names what it exports; this file has the
 * helpers, the registry and the loopback endpoint.
 */
import http from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

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

/** A registry whose metric names start with `prefix`; `defaults` adds prom-client's process metrics. */
export function newRegistry(prefix: string, defaults = true): Registry {
  const r = new Registry();
  if (defaults) collectDefaultMetrics({ register: r, prefix: `${prefix}_` });
  return r;
}

export interface MetricsServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Serves GET /metrics (Prometheus text format) on host:port. Rejects with EADDRINUSE etc. */
export function startMetricsServer(registry: Registry, host: string, port: number): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
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
    res.end('postmix: only GET /metrics is served here\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve({
        port: typeof addr === 'object' && addr ? addr.port : port,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}
