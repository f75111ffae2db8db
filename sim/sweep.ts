/**
 * Parameter sweeps: the cartesian grid of the given values, one simulation per point, run in
 * parallel on worker threads (one run per worker at a time), collected into CSV rows.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { sweepSpec, writeReport } from './report.ts';
import { createRequire } from 'node:module';
import { runSimulation, type RunResult } from './model.ts';
import { makeScenario, type Scenario } from './scenario.ts';
import { meanCi } from './stats.ts';

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

/** The metrics a sweep row carries, each read from one run (null: not defined for that run). */
export const METRICS: ReadonlyArray<[string, (r: RunResult) => number | null | undefined]> = [
  ['entropy_mean', (r) => r.entropy.mean],
  ['entropy_p5', (r) => r.entropy.p5],
  ['sender_entropy_mean', (r) => r.sender_entropy.mean],
  ['sender_degree_mean', (r) => r.sender_entropy.degree_mean],
  ['sender_entropy_max', (r) => r.sender_entropy.max_possible],
  ['latency_mean', (r) => r.latency.mean],
  ['latency_p95', (r) => r.latency.p95],
  ['latency_p99', (r) => r.latency.p99],
  ['message_delivered_mean', (r) => r.messages?.latency_delivered.mean],
  ['message_delivered_p95', (r) => r.messages?.latency_delivered.p95],
  ['message_acked_mean', (r) => r.messages?.latency_acked.mean],
  ['message_acked_p95', (r) => r.messages?.latency_acked.p95],
  ['resent_per_message', (r) => (r.messages && r.messages.submitted > 0 ? r.messages.resent / r.messages.submitted : undefined)],
  ['cover_per_real', (r) => r.overhead.cover_per_real],
  ['ack_per_real', (r) => r.overhead.ack_per_real],
  ['downlink_per_real', (r) => r.overhead.downlink_per_real],
  ['per_mix_pps', (r) => r.load.per_mix_pps.mean],
  ['pool_mean', (r) => r.load.pool_mean],
  ['timing_top1', (r) => r.attacks.timing.top1],
  ['timing_top5', (r) => r.attacks.timing.top5],
  ['timing_baseline_top1', (r) => r.attacks.timing.baseline_top1],
  ['sda_time_to_name_s', (r) => r.attacks.sda?.time_to_name_s],
  ['sda_correct_at_end', (r) => r.attacks.sda?.correct_at_end],
  ['home_gateway_auc', (r) => r.attacks.home_gateway?.auc],
  ['withholding_messages_to_sure', (r) => r.attacks.ack_withholding?.messages_to_sure],
  ['withholding_messages_to_sure_first_attempts', (r) => r.attacks.ack_withholding?.messages_to_sure_first_attempts],
  ['compromise_message_entropy', (r) => r.attacks.compromise?.message_entropy_mean],
  ['compromise_identified', (r) => r.attacks.compromise?.identified],
  ['packets', (r) => r.packets],
  ['events', (r) => r.events],
  ['wall_s', (r) => r.wall_s],
];

/**
 * The flat CSV row of one grid point from its replicates (one run each, same scenario but the
 * seed): the varied parameters, each metric's mean with its 95 % interval (`_lo`, `_hi`; empty
 * with a single replicate), the seeds, and every scenario field (`scenario.*`), so a row says
 * exactly what was run.
 */
export function rowOf(runs: readonly RunResult[], keys: readonly string[]): Record<string, number | string> {
  const sc = runs[0]!.scenario as unknown as Record<string, unknown>;
  const row: Record<string, number | string> = {};
  for (const k of keys) row[k] = sc[k] as number | string;
  for (const [name, get] of METRICS) {
    const m = meanCi(runs.map((r) => get(r) ?? NaN));
    row[name] = m.mean;
    row[`${name}_lo`] = m.ci95[0];
    row[`${name}_hi`] = m.ci95[1];
  }
  row.replicates = runs.length;
  row.seeds = runs.map((r) => r.scenario.seed).join(' ');
  for (const [k, v] of Object.entries(sc)) if (k !== 'seed') row[`scenario.${k}`] = v === null ? 'null' : (v as number | string);
  return row;
}

/** Seeds of the replicates of a scenario: its seed, then the next R − 1 integers. */
export function replicateSeeds(seed: number, replicates: number): number[] {
  return Array.from({ length: replicates }, (_, i) => seed + i);
}

/** Every grid point × replicate, in order (point-major). */
export function expandReplicates(points: ReadonlyArray<Partial<Scenario>>, replicates: number): Array<Partial<Scenario>> {
  const out: Array<Partial<Scenario>> = [];
  for (const p of points) for (const seed of replicateSeeds(makeScenario(p).seed, replicates)) out.push({ ...p, seed });
  return out;
}

/** Writes results.csv, one SVG per metric against the first varied parameter, and report.html. */
export async function writeSweep(dir: string, keys: readonly string[], rows: Array<Record<string, number | string>>): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const csv = join(dir, 'results.csv');
  writeFileSync(csv, toCsv(rows));
  const [x, color] = keys;
  const have = (y: string) => rows.some((r) => typeof r[y] === 'number' && Number.isFinite(r[y]));
  const plots = SWEEP_PLOTS.filter(have).map((y) => ({ name: `${y}-vs-${x}`, spec: sweepSpec(rows, x!, y, color) }));
  const files = await writeReport(dir, `postmix sim sweep (${keys.join(' × ')})`, rows, plots);
  return [csv, ...files];
}

/** The metrics a sweep plots (those with values in the rows). */
export const SWEEP_PLOTS = [
  'entropy_mean',
  'sender_entropy_mean',
  'latency_mean',
  'message_acked_mean',
  'cover_per_real',
  'timing_top1',
  'home_gateway_auc',
  'sda_time_to_name_s',
  'withholding_messages_to_sure',
  'compromise_message_entropy',
];

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
  if (tsxApi) (await import(tsxApi)).register();
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
  // compiled (dist/, this file is .js) the worker loads model.js; from the sources it needs tsx
  const compiled = import.meta.url.endsWith('.js');
  const tsxApi = compiled
    ? null
    : 'file://' +
      createRequire(import.meta.url)
        .resolve('tsx/esm/api')
        .replace(/\.cjs$/, '.mjs');
  const modelUrl = new URL(compiled ? './model.js' : './model.ts', import.meta.url).href;
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
