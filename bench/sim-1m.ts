/**
 * The simulator at a million clients (issue 17's target: 1,000,000 clients, 3 layers of 100,
 * 600 s, under 15 minutes and 8 GB on the 2-core machine): `npm run bench -- sim-1m --json`
 * prints `results.large1m` with `wall_s`, `peak_rss_mb` and the events. Only run when named
 * (it is not part of `npm run bench`). `--quick` simulates 60 s instead of 600 s, to see the
 * rate without the hour. Figures only; nothing is asserted.
 */
import { runSimulation } from '../sim/model.ts';
import type { Scenario } from '../sim/scenario.ts';
import { fmt, machineInfo, type BenchOptions, type BenchReport } from './harness.ts';

export const ONLY_WHEN_NAMED = true;

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const duration = opts.quick ? 60 : 600;
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
  let peak = process.memoryUsage().rss;
  const t0 = performance.now();
  const r = runSimulation(sc, {
    progressEvery: 20_000_000,
    onProgress: (p) => {
      peak = Math.max(peak, process.memoryUsage().rss);
      const el = (performance.now() - t0) / 1000;
      opts.log(`  large1m: ${p.simTime.toFixed(0)}/${p.duration} s simulated, ${fmt(p.events)} events, ${fmt(el, 0)} s wall (${fmt(p.events / el)} events/s)`);
    },
  });
  peak = Math.max(peak, process.memoryUsage().rss);
  const large1m = {
    sim_s: duration,
    wall_s: r.wall_s,
    peak_rss_mb: Math.round(peak / 2 ** 20),
    events: r.events,
    events_per_s: Math.round(r.events_per_s),
    packets: r.packets,
    entropy_mean: r.entropy.mean,
    sender_entropy_mean: r.sender_entropy.mean,
    sender_truncated: r.sender_entropy.truncated,
    latency_mean: r.latency.mean,
  };
  opts.log(
    `large1m     ${duration} s simulated: wall ${fmt(r.wall_s, 1)} s | ${fmt(r.events)} events | ${fmt(r.events_per_s)} events/s | rss peak ${fmt(peak / 2 ** 20)} MB`,
  );
  return { suite: 'sim-1m', machine: machineInfo(), results: { large1m } };
}
