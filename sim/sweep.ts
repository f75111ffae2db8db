/**
 * Parameter sweeps: the cartesian grid of the given values, one simulation per point, run in
 * parallel on worker threads (one run per worker at a time), collected into CSV rows.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { runSimulation, type RunResult } from './model.ts';
import type { Scenario } from './scenario.ts';

export type Grid = Partial<Record<keyof Scenario, Array<number | string>>>;

export function expandGrid(base: Partial<Scenario>, grid: Grid): Array<Partial<Scenario>> {
  let points: Array<Partial<Scenario>> = [{ ...base }];
  for (const [k, vals] of Object.entries(grid) as Array<[keyof Scenario, Array<number | string>]>) {
    const next: Array<Partial<Scenario>> = [];
    for (const p of points) for (const v of vals) next.push({ ...p, [k]: v });
    points = next;
  }
  return points;
}

/** The flat row a sweep point contributes to the CSV. */
export function rowOf(r: RunResult, keys: string[]): Record<string, number | string> {
  const row: Record<string, number | string> = {};
  for (const k of keys) row[k] = (r.scenario as unknown as Record<string, number | string>)[k]!;
  Object.assign(row, {
    entropy_mean: r.entropy.mean,
    entropy_median: r.entropy.median,
    entropy_p5: r.entropy.p5,
    sender_entropy_mean: r.sender_entropy.mean,
    sender_degree_mean: r.sender_entropy.degree_mean,
    latency_mean: r.latency.mean,
    latency_p95: r.latency.p95,
    latency_p99: r.latency.p99,
    cover_per_real: r.overhead.cover_per_real,
    per_mix_pps: r.load.per_mix_pps.mean,
    pool_mean: r.load.pool_mean,
    timing_top1: r.attacks.timing.top1,
    timing_top5: r.attacks.timing.top5,
    packets: r.packets,
    events: r.events,
    wall_s: r.wall_s,
  });
  return row;
}

export function toCsv(rows: Array<Record<string, number | string>>): string {
  if (rows.length === 0) return '';
  const cols = Object.keys(rows[0]!);
  const cell = (v: unknown) => {
    const s = typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : String(v ?? '');
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [cols.join(','), ...rows.map((r) => cols.map((c) => cell(r[c])).join(','))].join('\n') + '\n';
}

const WORKER_SRC = `
const { parentPort } = require('node:worker_threads');
parentPort.once('message', async ({ tsxApi, modelUrl }) => {
  const { register } = await import(tsxApi);
  register();
  const { runSimulation } = await import(modelUrl);
  parentPort.on('message', (msg) => {
    try {
      const r = runSimulation(msg.scenario);
      delete r.latency_cdf;
      parentPort.postMessage({ id: msg.id, result: r });
    } catch (e) {
      parentPort.postMessage({ id: msg.id, error: String(e && e.message || e) });
    }
  });
  parentPort.postMessage({ ready: true });
});
`;

export interface SweepOptions {
  /** worker threads; 0 runs in this thread */
  workers: number;
  onDone?: (done: number, total: number, r: RunResult) => void;
}

export async function runSweep(points: Array<Partial<Scenario>>, opts: SweepOptions): Promise<RunResult[]> {
  const results: RunResult[] = new Array(points.length);
  if (opts.workers <= 0) {
    points.forEach((p, i) => {
      results[i] = runSimulation(p);
      opts.onDone?.(i + 1, points.length, results[i]!);
    });
    return results;
  }
  const require = createRequire(import.meta.url);
  const tsxApi = 'file://' + require.resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs');
  const modelUrl = new URL('./model.ts', import.meta.url).href;
  let next = 0;
  let done = 0;
  const nWorkers = Math.min(opts.workers, points.length);
  await new Promise<void>((resolve, reject) => {
    let alive = nWorkers;
    for (let w = 0; w < nWorkers; w++) {
      const worker = new Worker(WORKER_SRC, { eval: true });
      const feed = () => {
        if (next >= points.length) {
          void worker.terminate();
          if (--alive === 0) resolve();
          return;
        }
        const id = next++;
        worker.postMessage({ id, scenario: points[id] });
      };
      worker.on('message', (msg: { ready?: boolean; id?: number; result?: RunResult; error?: string }) => {
        if (msg.ready) return feed();
        if (msg.error !== undefined) {
          void worker.terminate();
          return reject(new Error(`sweep point ${msg.id}: ${msg.error}`));
        }
        const r = msg.result!;
        r.latency_cdf = [];
        results[msg.id!] = r;
        opts.onDone?.(++done, points.length, r);
        feed();
      });
      worker.on('error', reject);
      worker.postMessage({ tsxApi, modelUrl });
    }
  });
  return results;
}
