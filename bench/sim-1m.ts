/**
 * The simulator at a million clients (issue 17's target: 1,000,000 clients, 3 layers of 100,
 * 600 s, under 15 minutes and 8 GB on the 2-core machine): `npm run bench -- sim-1m --json`
 * prints `results.large1m` with `wall_s`, `peak_rss_mb`, CPU seconds, the events and the load
 * average around the run. Only run when named (it is not part of `npm run bench`). `--quick`
 * simulates 60 s instead of 600 s, to see the rate without the wait. Two threads by default (the
 * exit analyses on the second); `SIM_THREADS=1` runs the same scenario on one. The scenario is the
 * idealised Loopix model at 1 packet/s per client with no cover and 1,000 analysed targets
 * (`includes` in the JSON). Figures only; nothing is asserted.
 */
import type { Scenario } from '../sim/scenario.ts';
import { fmt, machineInfo, type BenchOptions, type BenchReport } from './harness.ts';
import { includes, measured } from './sim.ts';

export const ONLY_WHEN_NAMED = true;

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const duration = opts.quick ? 60 : 600;
  const threads = Number(process.env.SIM_THREADS ?? 2);
  const sc: Partial<Scenario> = {
    clients: 1_000_000,
    layers: 3,
    layerSize: 100,
    rate: 1,
    meanDelay: 0.1,
    duration,
    warmup: Math.min(60, duration / 10),
    targets: 1000,
    seed: 1,
  };
  const { out } = measured('large1m', sc, threads, opts, 50_000_000);
  opts.log(`large1m     ${duration} s simulated on ${threads} thread(s): wall ${fmt(out.wall_s, 1)} s, rss peak ${fmt(out.peak_rss_mb)} MB`);
  return { suite: 'sim-1m', machine: machineInfo(), results: { large1m: { sim_s: duration, ...out, includes: includes(sc) } } };
}
