/**
 * Reads a node's Prometheus endpoint the way a monitoring system would, so the testnet can
 * check what the nodes themselves count (replays dropped, hand-off failures) instead of
 * trusting its own bookkeeping.
 */

/** One sample line: `name{a="x",b="y"} value`. */
interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples of `name` whose labels include `match` (0 when there are none). */
export function sumMetric(samples: readonly Sample[], name: string, match: Readonly<Record<string, string>> = {}): number {
  let s = 0;
  for (const x of samples) if (x.name === name && Object.entries(match).every(([k, v]) => x.labels[k] === v)) s += x.value;
  return s;
}

export async function scrape(url: string, timeoutMs = 3000): Promise<Sample[]> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return parsePrometheus(await res.text());
}
