import { Command, InvalidArgumentError, Option } from 'commander';
import { availableParallelism } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runSda, type SdaReport } from '../sim/attacks/sda.ts';
import { sdaRoundBound } from '../sim/analytic.ts';
import { runSimulation, type RunResult } from '../sim/model.ts';
import { entropyHistSpec, latencyCdfSpec, sdaSpec, sweepSpec, writeReport } from '../sim/report.ts';
import { loadScenarioFile, makeScenario, type Scenario } from '../sim/scenario.ts';
import { expandGrid, rowOf, runSweep, toCsv, type Grid } from '../sim/sweep.ts';

const num =
  (name: string) =>
  (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name}: not a number: ${v}`);
    return n;
  };
const int =
  (name: string) =>
  (v: string): number => {
    const n = num(name)(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name}: not an integer: ${v}`);
    return n;
  };

/** flag -> scenario field, parser */
const FLAGS: Array<[string, keyof Scenario, string, (v: string) => number | string]> = [
  ['--clients <N>', 'clients', 'number of clients (all send traffic)', int('clients')],
  ['--layers <L>', 'layers', 'mix layers', int('layers')],
  ['--layer-size <W>', 'layerSize', 'mixes per layer', int('layer-size')],
  ['--rate <R>', 'rate', "λ_P: each client's payload stream, packets/s (all real when no cover is configured)", num('rate')],
  [
    '--real-rate <R>',
    'realRate',
    'real messages/s per client entering the queue; the rest of the payload stream is drop cover (default: every tick real)',
    num('real-rate'),
  ],
  ['--mean-delay <D>', 'meanDelay', 'mean per-hop delay 1/μ, seconds', num('mean-delay')],
  ['--loop-rate <RL>', 'loopRate', 'λ_L: client loop cover, packets/s', num('loop-rate')],
  ['--drop-rate <RD>', 'dropRate', 'λ_D: client drop cover, packets/s', num('drop-rate')],
  ['--mix-loop-rate <RM>', 'mixLoopRate', "λ_M: each mix's loop cover, packets/s", num('mix-loop-rate')],
  ['--processing-time <S>', 'processingTime', 'per-hop processing time, seconds', num('processing-time')],
  ['--link-latency <S>', 'linkLatency', 'one-way link latency, seconds', num('link-latency')],
  ['--duration <T>', 'duration', 'simulated seconds', num('duration')],
  ['--warmup <TW>', 'warmup', 'seconds before metrics count', num('warmup')],
  ['--targets <K>', 'targets', 'tracked target packets', int('targets')],
  ['--seed <S>', 'seed', 'RNG seed', int('seed')],
  ['--compromised <F>', 'compromised', 'fraction of mixes the adversary holds (0..1)', num('compromised')],
  ['--threshold <n>', 'threshold', 'threshold mix: flush at this many packets (with --mix threshold)', int('threshold')],
  ['--pool-keep <f>', 'poolKeep', 'threshold pool mix: packets kept back at each flush', int('pool-keep')],
  ['--trace-capacity <N>', 'traceCapacity', 'trace ring-buffer records for the sender analysis', int('trace-capacity')],
];

function addScenarioFlags(cmd: Command): Command {
  cmd.option('--scenario <file.yaml>', 'scenario file (YAML); flags override its fields');
  for (const [flag, , desc, parse] of FLAGS) cmd.option(flag, desc, parse);
  cmd.addOption(new Option('--topology <t>', 'route topology').choices(['stratified', 'cascade', 'free-route']));
  cmd.addOption(new Option('--mix <kind>', 'mixing rule at every mix (threshold: batch mix, for comparison)').choices(['exponential', 'threshold']));
  return cmd;
}

function scenarioFrom(opts: Record<string, unknown>): Partial<Scenario> {
  const s: Record<string, unknown> = opts.scenario ? { ...loadScenarioFile(String(opts.scenario)) } : {};
  for (const [, key] of FLAGS) if (opts[key] !== undefined) s[key] = opts[key];
  if (opts.topology !== undefined) s.topology = opts.topology;
  if (opts.mix !== undefined) s.mix = opts.mix;
  return s as Partial<Scenario>;
}

function progress(enabled: boolean) {
  let last = 0;
  return (p: { simTime: number; duration: number; events: number; targetsDone: number }) => {
    if (!enabled) return;
    const now = Date.now();
    if (now - last < 1000) return;
    last = now;
    process.stderr.write(`\r  sim ${p.simTime.toFixed(0)}/${p.duration}s  ${(p.events / 1e6).toFixed(1)}M events  ${p.targetsDone} targets done `);
  };
}

function fmt(n: number, d = 3): string {
  return Number.isFinite(n) ? n.toFixed(d) : String(n);
}

function human(r: RunResult): string {
  const s = r.scenario;
  return [
    `scenario: ${s.clients} clients, ${s.layers}x${s.layerSize} ${s.topology}, ${s.mix === 'threshold' ? `threshold mix (n=${s.threshold}, keep ${s.poolKeep})` : 'exponential mixes'}, λ_P=${s.rate}${s.realRate !== null ? ` (real ${s.realRate})` : ''} λ_L=${s.loopRate} λ_D=${s.dropRate} λ_M=${s.mixLoopRate}, mean delay ${s.meanDelay}s, ${s.duration}s (warmup ${s.warmup}s), seed ${s.seed}, compromised ${s.compromised}`,
    `per-packet entropy (bits): mean ${fmt(r.entropy.mean)} median ${fmt(r.entropy.median)} p5 ${fmt(r.entropy.p5)}  (${r.entropy.n} targets)`,
    `sender entropy (bits):     mean ${fmt(r.sender_entropy.mean)} of max ${fmt(r.sender_entropy.max_possible)}, degree ${fmt(r.sender_entropy.degree_mean)}${r.sender_entropy.truncated ? `  [${r.sender_entropy.truncated} truncated by the trace buffer]` : ''}`,
    `latency (s):               mean ${fmt(r.latency.mean)} p50 ${fmt(r.latency.p50)} p95 ${fmt(r.latency.p95)} p99 ${fmt(r.latency.p99)}`,
    `overhead:                  ${r.overhead.real} real, ${r.overhead.cover} cover (${fmt(r.overhead.cover_per_real, 2)} cover per real)`,
    `load:                      ${fmt(r.load.per_mix_pps.mean, 1)} pkt/s per mix (min ${fmt(r.load.per_mix_pps.min, 1)}, max ${fmt(r.load.per_mix_pps.max, 1)}), mean pool ${fmt(r.load.pool_mean, 2)}`,
    `timing attack:             top-1 ${fmt(r.attacks.timing.top1)} (guess ${fmt(r.attacks.timing.baseline_top1)}), top-5 ${fmt(r.attacks.timing.top5)} (guess ${fmt(r.attacks.timing.baseline_top5)})`,
    `targets ${r.targets.finished}/${r.targets.tracked} finished (${r.targets.requested} requested, from ${r.targets.target_clients} client(s)); ${r.packets} packets, ${r.events} events, ${fmt(r.wall_s, 2)} s wall, ${Math.round(r.events_per_s)} events/s`,
  ].join('\n');
}

function parseGrid(specs: string[]): Grid {
  const grid: Grid = {};
  const byFlag = new Map(FLAGS.map(([flag, key]) => [flag.split(' ')[0]!.slice(2), key] as const));
  byFlag.set('topology', 'topology');
  byFlag.set('mix', 'mix');
  for (const spec of specs) {
    const m = /^([a-z-]+)=(.+)$/.exec(spec);
    if (!m) throw new InvalidArgumentError(`--vary: expected name=v1,v2,..., got ${spec}`);
    const key = byFlag.get(m[1]!);
    if (!key) throw new InvalidArgumentError(`--vary: unknown parameter ${m[1]}`);
    grid[key] = m[2]!.split(',').map((v) => (key === 'topology' || key === 'mix' ? v : num(m[1]!)(v)));
  }
  return grid;
}

export function registerSim(program: Command): void {
  const sim = program.command('sim').description('discrete-event traffic-analysis simulator (anonymity, latency, overhead, attacks)');

  addScenarioFlags(
    sim.command('run').description('run one scenario and report per-packet entropy, sender anonymity, latency, overhead, load and the timing attack'),
  )
    .option('--json', 'print one JSON object on stdout')
    .option('--out <dir>', 'write report.html and SVG plots (latency CDF, entropy histogram) here')
    .option('--no-progress', 'no progress lines on stderr')
    .action(async (opts: Record<string, unknown>) => {
      const sc = makeScenario(scenarioFrom(opts));
      const tty = opts.progress !== false && process.stderr.isTTY === true;
      const r = runSimulation(sc, { onProgress: progress(tty), keepSamples: opts.out !== undefined });
      if (tty) process.stderr.write('\n');
      const { samples, latency_cdf, ...out } = r;
      if (opts.json) process.stdout.write(JSON.stringify(out) + '\n');
      else process.stdout.write(human(r) + '\n');
      if (opts.out) {
        const files = await writeReport(String(opts.out), 'postmix sim run', out, [
          { name: 'latency-cdf', spec: latencyCdfSpec(r) },
          { name: 'entropy-hist', spec: entropyHistSpec(samples?.entropy ?? []) },
        ]);
        process.stderr.write(`wrote ${files.join(', ')}\n`);
      }
      void latency_cdf;
    });

  addScenarioFlags(sim.command('sweep').description('run a grid of scenarios on worker threads; write results.csv, SVG plots and report.html'))
    .requiredOption(
      '--vary <name=v1,v2,...>',
      'a parameter (flag name) and its values; repeat for a grid',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('--workers <n>', 'worker threads (default: cores - 1, at least 1)', int('workers'))
    .option('--out <dir>', 'output directory', 'sim-sweep')
    .option('--json', 'print the rows as one JSON array on stdout')
    .action(async (opts: Record<string, unknown>) => {
      const base = scenarioFrom(opts);
      const grid = parseGrid(opts.vary as string[]);
      const points = expandGrid(base, grid);
      points.forEach((p) => makeScenario(p)); // validate every point before starting
      const workers = (opts.workers as number | undefined) ?? Math.max(1, availableParallelism() - 1);
      const t0 = performance.now();
      process.stderr.write(`sweep: ${points.length} runs on ${workers} worker(s)\n`);
      const results = await runSweep(points, {
        workers,
        onDone: (d, n, r) =>
          process.stderr.write(
            `  [${d}/${n}] ${Object.keys(grid)
              .map((k) => `${k}=${String((r.scenario as unknown as Record<string, unknown>)[k])}`)
              .join(' ')}  entropy ${fmt(r.entropy.mean)}  latency ${fmt(r.latency.mean)}  ${fmt(r.wall_s, 1)}s\n`,
          ),
      });
      const keys = Object.keys(grid);
      const rows = results.map((r) => rowOf(r, keys));
      const dir = String(opts.out);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'results.csv'), toCsv(rows));
      const [x, color] = keys;
      const plots = ['entropy_mean', 'sender_entropy_mean', 'latency_mean', 'timing_top1'].map((y) => ({
        name: `${y}-vs-${x}`,
        spec: sweepSpec(rows, x!, y, color),
      }));
      const files = await writeReport(dir, `postmix sim sweep (${keys.join(' × ')})`, rows, plots);
      process.stderr.write(`sweep done in ${fmt((performance.now() - t0) / 1000, 1)} s; wrote ${join(dir, 'results.csv')}, ${files.join(', ')}\n`);
      if (opts.json) process.stdout.write(JSON.stringify(rows) + '\n');
    });

  sim
    .command('sda')
    .description("statistical disclosure attack: rounds needed to name a target's contacts, with and without cover")
    .option('--recipients <N>', 'recipients', int('recipients'), 1000)
    .option('--batch <b>', 'messages per round', int('batch'), 50)
    .option('--contacts <m>', "the target's contacts", int('contacts'), 10)
    .option('--real-prob <p>', 'probability the target has a real message in a round', num('real-prob'), 0.5)
    .option('--max-rounds <n>', 'horizon', int('max-rounds'), 20000)
    .option('--trials <n>', 'trials', int('trials'), 100)
    .option('--seed <s>', 'seed', int('seed'), 1)
    .option('--out <dir>', 'write sda.svg and report.html')
    .option('--json', 'print one JSON object')
    .action(
      async (o: {
        recipients: number;
        batch: number;
        contacts: number;
        realProb: number;
        maxRounds: number;
        trials: number;
        seed: number;
        out?: string;
        json?: boolean;
      }) => {
        const base = { N: o.recipients, b: o.batch, m: o.contacts, realProb: o.realProb, maxRounds: o.maxRounds, trials: o.trials, seed: o.seed };
        const cases: Array<{ label: string; report: SdaReport }> = [
          { label: 'no cover', report: runSda({ ...base, cover: false }) },
          { label: 'cover', report: runSda({ ...base, cover: true }) },
        ];
        const summary = {
          bound_l2_target_rounds: sdaRoundBound(o.recipients, o.batch, o.contacts, 2),
          ...Object.fromEntries(
            cases.map(({ label, report }) => [
              label.replace(' ', '_'),
              { median_rounds: report.median_rounds, p90_rounds: report.p90_rounds, success_by_horizon: report.success_by_horizon },
            ]),
          ),
        };
        if (o.json) process.stdout.write(JSON.stringify(summary) + '\n');
        else
          process.stdout.write(
            `Danezis bound (l=2): ${fmt(summary.bound_l2_target_rounds, 1)} rounds in which the target sends\n` +
              cases
                .map(
                  ({ label, report }) =>
                    `${label.padEnd(9)} median ${report.median_rounds} rounds, p90 ${report.p90_rounds}, success by horizon ${fmt(report.success_by_horizon, 2)}`,
                )
                .join('\n') +
              '\n',
          );
        if (o.out) {
          const files = await writeReport(o.out, 'postmix sim sda', summary, [{ name: 'sda', spec: sdaSpec(cases) }]);
          process.stderr.write(`wrote ${files.join(', ')}\n`);
        }
      },
    );
}
