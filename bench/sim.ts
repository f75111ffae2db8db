/**
 * Simulator benchmark: events per second and wall time of the reference scenario (100 clients at
 * 1 packet/s, 3 layers of 3 mixes, mean delay 0.1 s, 600 s, 1,000 targets), the large one
 * (10,000 clients, 3 layers of 10, 600 s), issue 17's `large100k` (100,000 clients, 3 layers of
 * 30, 600 s) on two threads and on one (`large100k_one_thread`; the two must agree exactly), what
 * each part of the model costs at 10,000 clients (`features`), and how the cost grows with
 * clients, targets and pool size. --quick skips the large runs. Figures only; nothing is asserted.
 *
 * The large scenarios are the idealised Loopix model as issue 17 states them: each client's
 * payload stream at 1 packet/s and nothing else (no loop, drop or mix-loop cover, no postmix
 * protocol), 1,000 target packets, each followed forward (per-packet entropy), walked back
 * (sender posterior) and scored by the timing attack. `includes` says so in the JSON; the
 * `features` runs give the price of cover and of the postmix protocol separately.
 */
import os from 'node:os';
import { runSimulation, type RunPerf, type RunResult } from '../sim/model.ts';
import type { Scenario } from '../sim/scenario.ts';
import { fmt, machineInfo, type BenchOptions, type BenchReport } from './harness.ts';

const REFERENCE: Partial<Scenario> = { clients: 100, layers: 3, layerSize: 3, rate: 1, meanDelay: 0.1, duration: 600, warmup: 60, targets: 1000, seed: 1 };
const LARGE: Partial<Scenario> = { clients: 10000, layers: 3, layerSize: 10, rate: 1, meanDelay: 0.1, duration: 600, warmup: 60, targets: 1000, seed: 1 };
/** issue 17's scale target: 100,000 clients, 3 layers of 30, 600 s (results.large100k) */
const LARGE100K: Partial<Scenario> = { clients: 100000, layers: 3, layerSize: 30, rate: 1, meanDelay: 0.1, duration: 600, warmup: 60, targets: 1000, seed: 1 };

/** What a large scenario runs, for the JSON: the model, the traffic and the analyses. */
export function includes(sc: Partial<Scenario>): Record<string, unknown> {
  return {
    model: sc.realRate == null ? 'loopix (idealised: one-packet messages, no ACKs)' : 'postmix',
    traffic: `${sc.clients} clients × λ_P ${sc.rate}/s; λ_L ${sc.loopRate ?? 0}, λ_D ${sc.dropRate ?? 0}, λ_M ${sc.mixLoopRate ?? 0}`,
    network: `${sc.layers} layers × ${sc.layerSize} mixes, 1/μ = ${sc.meanDelay} s, ${sc.duration} s simulated (${sc.warmup} s warm-up)`,
    analyses: `${sc.targets} targets: forward entropy, backward sender walk and timing attack each`,
  };
}

function figures(r: RunResult) {
  return {
    wall_s: r.wall_s,
    events: r.events,
    events_per_s: Math.round(r.events_per_s),
    packets: r.packets,
    entropy_mean: r.entropy.mean,
    sender_entropy_mean: r.sender_entropy.mean,
    sender_truncated: r.sender_entropy.truncated,
    latency_mean: r.latency.mean,
  };
}

/** The result without the figures that depend on the machine, for comparing runs. */
function canonical(r: RunResult): string {
  const { wall_s: _w, events_per_s: _e, ...rest } = r;
  return JSON.stringify(rest);
}

/** One large run with its peak RSS, CPU seconds, load and the analysis thread's figures. */
export function measured(name: string, sc: Partial<Scenario>, threads: number, opts: BenchOptions, every: number) {
  const load0 = os.loadavg()[0]!;
  let peak = process.memoryUsage().rss;
  const cpu0 = process.cpuUsage();
  const perf = {} as RunPerf;
  const t0 = performance.now();
  const r = runSimulation(sc, {
    threads,
    perf,
    progressEvery: every,
    onProgress: (p) => {
      peak = Math.max(peak, process.memoryUsage().rss);
      const el = (performance.now() - t0) / 1000;
      opts.log(`  ${name}: ${p.simTime.toFixed(0)}/${p.duration} s simulated, ${fmt(p.events)} events, ${fmt(el, 0)} s wall (${fmt(p.events / el)} events/s)`);
    },
  });
  peak = Math.max(peak, process.memoryUsage().rss);
  const cpu = process.cpuUsage(cpu0);
  const out = {
    ...figures(r),
    threads,
    peak_rss_mb: Math.round(peak / 2 ** 20),
    cpu_s: (cpu.user + cpu.system) / 1e6,
    analysis_wait_s: perf.analysis_wait_s,
    // per thread (Linux): the loop's sets the wall time on an idle machine, unless it waited
    loop_cpu_s: perf.loop_cpu_s,
    analysis_cpu_s: perf.analysis_cpu_s,
    trace_ring_records: perf.trace_ring,
    load_avg_1m: [load0, os.loadavg()[0]!],
  };
  opts.log(
    `${name.padEnd(11)} ${threads} thread(s): wall ${fmt(r.wall_s, 1)} s | cpu ${fmt(out.cpu_s, 1)} s | ${fmt(r.events)} events | ${fmt(r.events_per_s)} events/s | rss peak ${fmt(out.peak_rss_mb)} MB | loop ${fmt(perf.loop_cpu_s, 1)} + analyses ${fmt(perf.analysis_cpu_s, 1)} cpu s | waited ${fmt(perf.analysis_wait_s, 1)} s | load ${fmt(load0, 1)} → ${fmt(os.loadavg()[0]!, 1)}`,
  );
  return { r, out };
}

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const results: Record<string, unknown> = {};
  // reference: best and median of several runs (the first also warms the JIT)
  const reps = opts.quick ? 2 : 5;
  const refs: RunResult[] = [];
  for (let i = 0; i < reps; i++) refs.push(runSimulation(REFERENCE));
  const walls = refs.map((r) => r.wall_s).sort((a, b) => a - b);
  const best = refs.reduce((a, b) => (a.wall_s <= b.wall_s ? a : b));
  results.reference = { ...figures(best), wall_s_median: walls[Math.floor(walls.length / 2)], runs: reps };
  opts.log(
    `reference   wall ${fmt(best.wall_s, 3)} s (median ${fmt(walls[Math.floor(walls.length / 2)]!, 3)} s) | ${fmt(best.events)} events | ${fmt(best.events_per_s)} events/s | entropy ${fmt(best.entropy.mean, 3)} bits`,
  );

  if (!opts.quick) {
    results.large = measured('large', LARGE, 2, opts, 5_000_000).out;
    const two = measured('large100k', LARGE100K, 2, opts, 20_000_000);
    const one = measured('large100k', LARGE100K, 1, opts, 20_000_000);
    const identical = canonical(two.r) === canonical(one.r);
    results.large100k = { ...two.out, includes: includes(LARGE100K), identical_to_one_thread: identical };
    results.large100k_one_thread = one.out;
    results.large100k_speedup = one.out.wall_s / two.out.wall_s;
    opts.log(`large100k   two threads vs one: ${fmt(one.out.wall_s / two.out.wall_s, 2)}× wall; results identical: ${identical}`);
  } else results.large = results.large100k = 'skipped (--quick)';

  // what each part of the model costs: 10,000 clients, 3 × 10, 120 s, one thread, CPU seconds
  const fbase: Partial<Scenario> = { ...LARGE, duration: opts.quick ? 30 : 120, warmup: 10 };
  const cover = { loopRate: 0.5, dropRate: 0.5, mixLoopRate: 0.5 };
  const postmix = { ...cover, rate: 2, realRate: 0.01, messageBytes: 8000, messageBytesSigma: 1, gatewayLoopRate: 0.5, gateways: 4, messageTargets: 100 };
  const features: Record<string, unknown> = {};
  for (const [name, extra] of [
    ['no_targets', { targets: 0 }],
    ['targets_1000', {}],
    ['cover', cover],
    ['postmix', postmix],
  ] as Array<[string, Partial<Scenario>]>) {
    const c0 = process.cpuUsage();
    const r = runSimulation({ ...fbase, ...extra });
    const c = process.cpuUsage(c0);
    const cpu = (c.user + c.system) / 1e6;
    features[name] = { cpu_s: cpu, events: r.events, packets: r.packets, ns_per_event: (1e9 * cpu) / r.events, scenario_changes: extra };
    opts.log(`features ${name.padEnd(13)} cpu ${fmt(cpu, 2)} s | ${fmt(r.events)} events | ${fmt((1e9 * cpu) / r.events, 0)} ns/event`);
  }
  results.features = { base: includes(fbase), ...features };

  // scaling, on a shorter 120 s run
  const base: Partial<Scenario> = { ...REFERENCE, duration: opts.quick ? 60 : 120, warmup: 10, targets: 300 };
  const scaling: Record<string, unknown[]> = { clients: [], targets: [], pool: [] };
  for (const clients of opts.quick ? [100, 400] : [100, 300, 1000, 3000]) {
    const r = runSimulation({ ...base, clients });
    scaling.clients!.push({ clients, ...figures(r) });
    opts.log(
      `clients ${String(clients).padStart(5)}  wall ${fmt(r.wall_s, 3)} s  ${fmt(r.events_per_s)} events/s  us/event ${fmt((1e6 * r.wall_s) / r.events, 2)}`,
    );
  }
  for (const targets of opts.quick ? [30, 300] : [30, 300, 1000]) {
    const r = runSimulation({ ...base, targets, duration: 300 });
    scaling.targets!.push({ targets, ...figures(r) });
    opts.log(`targets ${String(targets).padStart(5)}  wall ${fmt(r.wall_s, 3)} s  ${fmt(r.events_per_s)} events/s`);
  }
  for (const meanDelay of opts.quick ? [0.1, 1] : [0.1, 0.3, 1, 3]) {
    const r = runSimulation({ ...base, meanDelay, duration: Math.max(base.duration!, 60 * meanDelay) });
    const pool = r.load.pool_mean;
    scaling.pool!.push({ mean_delay: meanDelay, pool_mean: pool, ...figures(r) });
    opts.log(`pool ${fmt(pool, 1).padStart(7)}  wall ${fmt(r.wall_s, 3)} s  ${fmt(r.events_per_s)} events/s`);
  }
  results.scaling = scaling;
  return { suite: 'sim', machine: machineInfo(), results };
}
