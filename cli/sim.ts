import { Command, InvalidArgumentError, Option } from 'commander';
import { availableParallelism } from 'node:os';
import { runSda, type SdaReport } from '../sim/attacks/sda.ts';
import { sdaRoundBound } from '../sim/analytic.ts';
import { runSimulation, type RunResult } from '../sim/model.ts';
import { entropyHistSpec, latencyCdfSpec, sdaSpec, writeReport } from '../sim/report.ts';
import { loadScenarioFile, makeScenario, type Scenario } from '../sim/scenario.ts';
import { analyzeCapture, scenarioOfCapture } from '../sim/analyze.ts';
import { runOnQueue, runQueueWorker } from '../sim/queue.ts';
import { foldReplicates } from '../sim/stats.ts';
import { expandGrid, expandReplicates, replicateSeeds, rowOf, runSweep, writeSweep, type Grid } from '../sim/sweep.ts';
import { durationOption, formatDuration } from './units.ts';
import { nearest } from '../runtime/config-file.ts';

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

const dur = (name: string) => durationOption(`--${name}`);

/** flag -> scenario field, help, parser */
const FLAGS: Array<[string, keyof Scenario, string, (v: string) => number | string]> = [
  ['--clients <N>', 'clients', 'number of clients (all send traffic)', int('clients')],
  ['--layers <L>', 'layers', 'mix layers', int('layers')],
  ['--layer-size <W>', 'layerSize', 'mixes per layer', int('layer-size')],
  ['--rate <R>', 'rate', "λ_P: each client's payload stream, packets/s (all real in the idealised model)", num('rate')],
  [
    '--real-rate <R>',
    'realRate',
    'real messages/s per client entering the outbox: runs the postmix model (fragments, SURB-ACKs, mailbox, retransmission); without it, the idealised Loopix model',
    num('real-rate'),
  ],
  ['--message-bytes <B>', 'messageBytes', 'median message size, bytes (postmix model)', num('message-bytes')],
  ['--message-bytes-sigma <s>', 'messageBytesSigma', 'log-normal shape σ of message sizes (0: all the median)', num('message-bytes-sigma')],
  ['--payload-size <B>', 'payloadSize', 'Sphinx payload size, bytes (sets the fragment capacity)', int('payload-size')],
  ['--gateways <G>', 'gateways', 'gateways (mail intakes and home gateways); clients are homed round-robin', int('gateways')],
  ['--contacts <m>', 'contacts', 'gateways each client writes to (the SDA names them)', int('contacts')],
  ['--mean-delay <D>', 'meanDelay', 'mean per-hop delay 1/μ (a duration: 100ms, 0.1s; bare numbers are seconds)', dur('mean-delay')],
  ['--loop-rate <RL>', 'loopRate', 'λ_L: client loop cover, packets/s', num('loop-rate')],
  ['--drop-rate <RD>', 'dropRate', 'λ_D: client drop cover, packets/s', num('drop-rate')],
  ['--mix-loop-rate <RM>', 'mixLoopRate', "λ_M: each mix's loop cover, packets/s", num('mix-loop-rate')],
  ['--gateway-loop-rate <RG>', 'gatewayLoopRate', "λ_G: each gateway's loop cover, packets/s (postmix model)", num('gateway-loop-rate')],
  ['--processing-time <D>', 'processingTime', 'per-hop processing time (a duration)', dur('processing-time')],
  ['--link-latency <D>', 'linkLatency', 'one-way link latency (a duration)', dur('link-latency')],
  ['--loss <p>', 'loss', 'probability that a packet is lost at each hop (postmix model: shows retransmission)', num('loss')],
  ['--max-attempts <n>', 'maxAttempts', 'sends of a fragment before its message bounces', int('max-attempts')],
  ['--duration <T>', 'duration', 'simulated time (a duration)', dur('duration')],
  ['--warmup <TW>', 'warmup', 'time before metrics count (a duration)', dur('warmup')],
  ['--targets <K>', 'targets', 'tracked target packets', int('targets')],
  ['--message-targets <K>', 'messageTargets', "the target client's messages followed by the message-level attacks", int('message-targets')],
  ['--seed <S>', 'seed', 'RNG seed (replicates use S, S+1, ...)', int('seed')],
  ['--compromised <F>', 'compromised', 'fraction of mixes the adversary holds (0..1)', num('compromised')],
  ['--compromised-gateways <F>', 'compromisedGateways', 'fraction of gateways the adversary holds (0..1)', num('compromised-gateways')],
  ['--threshold <n>', 'threshold', 'threshold mix: flush at this many packets (with --mix threshold)', int('threshold')],
  ['--pool-keep <f>', 'poolKeep', 'threshold pool mix: packets kept back at each flush', int('pool-keep')],
  ['--trace-capacity <N>', 'traceCapacity', 'trace ring-buffer records for the sender analysis (0: sized from the traffic)', int('trace-capacity')],
];

/** boolean flags -> scenario field */
const SWITCHES: Array<[string, keyof Scenario, string]> = [
  ['--no-acks', 'acks', 'postmix model without SURB-ACKs (no retransmission either)'],
  ['--ack-delay', 'ackDelay', 'gateways hold each ACK Exp(μ) before sending it'],
  ['--withhold-acks', 'withholdAcks', "attack 1: the target's first contact gateway withholds the ACKs of its messages"],
];

function addScenarioFlags(cmd: Command): Command {
  cmd.option('--scenario <file.yaml>', 'scenario file (YAML); flags override its fields');
  for (const [flag, , desc, parse] of FLAGS) cmd.option(flag, desc, parse);
  for (const [flag, , desc] of SWITCHES) cmd.option(flag, desc);
  cmd.addOption(new Option('--topology <t>', 'route topology').choices(['stratified', 'cascade', 'free-route']));
  cmd.addOption(new Option('--mix <kind>', 'mixing rule at every mix (threshold: batch mix, for comparison)').choices(['exponential', 'threshold']));
  cmd.addOption(
    new Option(
      '--payload-cover <kind>',
      'what a payload tick carries when nothing is due: decoy (the protocol: answered through its SURB), drop (Loopix) or a loop to the own mailbox',
    ).choices(['decoy', 'drop', 'loop']),
  );
  return cmd;
}

function scenarioFrom(opts: Record<string, unknown>): Partial<Scenario> {
  const s: Record<string, unknown> = opts.scenario ? { ...loadScenarioFile(String(opts.scenario)) } : {};
  for (const [, key] of FLAGS) if (opts[key] !== undefined) s[key] = opts[key];
  // commander: --no-acks sets acks=false (and acks=true by default, which must not override a file)
  if (opts.acks === false) s.acks = false;
  if (opts.ackDelay === true) s.ackDelay = true;
  if (opts.withholdAcks === true) s.withholdAcks = true;
  for (const k of ['topology', 'mix', 'payloadCover'] as const) if (opts[k] !== undefined) s[k] = opts[k];
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

function ci(v: unknown, d = 3): string {
  return Array.isArray(v) && v.length === 2 && Number.isFinite(v[0]) ? ` [${fmt(v[0] as number, d)}, ${fmt(v[1] as number, d)}]` : '';
}

/** The human summary of one run, or of replicates (folded: `x` and `x_ci95`). */
function human(r: Record<string, any>): string {
  const s = r.scenario as Scenario;
  const lines = [
    `scenario: ${s.clients} clients, ${s.layers}x${s.layerSize} ${s.topology}, ${s.mix === 'threshold' ? `threshold mix (n=${s.threshold}, keep ${s.poolKeep})` : 'exponential mixes'}, ${r.model} model, λ_P=${s.rate}${s.realRate !== null ? ` (real messages ${s.realRate}/s, ${s.messageBytes} B)` : ''} λ_L=${s.loopRate} λ_D=${s.dropRate} λ_M=${s.mixLoopRate} λ_G=${s.gatewayLoopRate}, mean delay ${formatDuration(s.meanDelay)}, ${formatDuration(s.duration)} (warmup ${formatDuration(s.warmup)}), compromised ${s.compromised} of mixes, ${s.compromisedGateways} of gateways`,
    r.replicates ? `replicates: ${r.replicates} (seeds ${(r.seeds as number[]).join(', ')}); means with 95% CIs` : `seed ${s.seed}`,
    `per-packet entropy (bits): mean ${fmt(r.entropy.mean)}${ci(r.entropy.mean_ci95)} median ${fmt(r.entropy.median)} p5 ${fmt(r.entropy.p5)}  (${fmt(r.entropy.n, 0)} targets)`,
    `sender entropy (bits):     mean ${fmt(r.sender_entropy.mean)}${ci(r.sender_entropy.mean_ci95)} of max ${fmt(r.sender_entropy.max_possible)}, degree ${fmt(r.sender_entropy.degree_mean)}${r.sender_entropy.truncated ? `  [${r.sender_entropy.truncated} truncated by the trace buffer]` : ''}`,
    `latency (s):               mean ${fmt(r.latency.mean)}${ci(r.latency.mean_ci95)} p50 ${fmt(r.latency.p50)} p95 ${fmt(r.latency.p95)}${ci(r.latency.p95_ci95)} p99 ${fmt(r.latency.p99)}`,
    `overhead:                  ${fmt(r.overhead.real, 0)} real, ${fmt(r.overhead.cover, 0)} cover (${fmt(r.overhead.cover_per_real, 2)} per real), ${fmt(r.overhead.ack, 0)} ACKs, ${fmt(r.overhead.downlink_per_real, 2)} downlink frames per real`,
    `load:                      ${fmt(r.load.per_mix_pps.mean, 1)} pkt/s per mix, mean pool ${fmt(r.load.pool_mean, 2)}`,
    `timing attack:             top-1 ${fmt(r.attacks.timing.top1)}${ci(r.attacks.timing.top1_ci95)} (guess ${fmt(r.attacks.timing.baseline_top1)}), top-5 ${fmt(r.attacks.timing.top5)}`,
  ];
  const m = r.messages;
  if (m)
    lines.push(
      `messages:                  ${fmt(m.submitted, 0)} submitted, ${fmt(m.fragments_per_message, 2)} fragments each, ${fmt(m.delivered, 0)} delivered, ${fmt(m.acked, 0)} ACKed, ${fmt(m.bounced, 0)} bounced, ${fmt(m.resent, 0)} fragments resent`,
      `message latency (s):       to the gateway mean ${fmt(m.latency_delivered.mean)}${ci(m.latency_delivered.mean_ci95)} p95 ${fmt(m.latency_delivered.p95)}; to the last ACK mean ${fmt(m.latency_acked.mean)}${ci(m.latency_acked.mean_ci95)} p95 ${fmt(m.latency_acked.p95)}${ci(m.latency_acked.p95_ci95)}`,
    );
  const a = r.attacks;
  if (a.ack_withholding)
    lines.push(
      `1 ACK withholding:         ${a.ack_withholding.gateway === null ? 'no gateway withholds; ' : `${fmt(a.ack_withholding.attempts_per_fragment, 2)} sends per fragment; `}messages until the sender is 95% sure: ${fmt(a.ack_withholding.messages_to_sure ?? NaN, 1)} (first attempts only: ${fmt(a.ack_withholding.messages_to_sure_first_attempts ?? NaN, 1)}) of ${fmt(a.ack_withholding.messages, 0)}`,
    );
  if (a.home_gateway)
    lines.push(
      `2 home gateway watch:      AUC ${fmt(a.home_gateway.auc)}${ci(a.home_gateway.auc_ci95)} (guess 0.5) over ${formatDuration(a.home_gateway.window_s)} windows; ACK count error ${fmt(a.home_gateway.relative_error ?? NaN, 2)}`,
    );
  if (a.sda)
    lines.push(
      `3 SDA over the trace:      contacts named after ${a.sda.time_to_name_s === null ? 'never within the run' : `${fmt(a.sda.time_to_name_s, 0)} s`}; ${fmt(a.sda.correct_at_end, 2)} of ${s.contacts} right at the end (guess ${fmt(a.sda.baseline_correct, 2)})`,
    );
  if (a.compromise)
    lines.push(
      `4 compromised nodes:       ${fmt(a.compromise.mixes_compromised, 0)} mixes, ${fmt(a.compromise.gateways_compromised, 0)} gateways; ${fmt(a.compromise.messages, 0)} messages at a compromised gateway: sender entropy ${fmt(a.compromise.message_entropy_mean)} bits (fragments alone ${fmt(a.compromise.fragments_only_entropy_mean)}, one packet ${fmt(a.compromise.packet_entropy_mean)}), identified ${fmt(a.compromise.identified, 2)}`,
    );
  lines.push(
    `targets ${fmt(r.targets.finished, 0)}/${fmt(r.targets.tracked, 0)} finished (from ${fmt(r.targets.target_clients, 0)} client(s)); ${fmt(r.packets, 0)} packets, ${fmt(r.events, 0)} events, ${fmt(r.wall_s, 2)} s wall`,
  );
  return lines.join('\n');
}

function parseGrid(specs: string[]): Grid {
  const grid: Grid = {};
  const byFlag = new Map(FLAGS.map(([flag, key, , parse]) => [flag.split(' ')[0]!.slice(2), [key, parse]] as const));
  const choices: Record<string, keyof Scenario> = { topology: 'topology', mix: 'mix', 'payload-cover': 'payloadCover' };
  for (const spec of specs) {
    const m = /^([a-z-]+)=(.+)$/.exec(spec);
    if (!m) throw new InvalidArgumentError(`--vary: expected name=v1,v2,..., got ${spec}`);
    const name = m[1]!;
    const values = m[2]!.split(',');
    if (values.some((v) => v.trim() === '')) throw new InvalidArgumentError(`--vary ${name}: an empty value in ${m[2]}`);
    if (choices[name]) grid[choices[name]!] = values;
    else {
      const f = byFlag.get(name);
      if (!f) {
        const known = [...Object.keys(choices), ...byFlag.keys()];
        const hint = nearest(name, known);
        throw new InvalidArgumentError(`--vary: unknown parameter ${name}${hint ? ` (did you mean ${hint}?)` : ''}; parameters: ${known.join(', ')}`);
      }
      grid[f[0]] = values.map((v) => f[1](v));
    }
  }
  return grid;
}

export function registerSim(program: Command): void {
  const sim = program.command('sim').description('discrete-event traffic-analysis simulator (anonymity, latency, overhead, attacks)');

  addScenarioFlags(
    sim
      .command('run')
      .description(
        'run one scenario (or R replicates) and report per-packet entropy, sender anonymity, latency, overhead, load, and the attacks: timing, ACK withholding, home gateway, SDA, compromised nodes',
      ),
  )
    .option('--replicates <R>', 'run R seeds (S, S+1, ...) in parallel and report means with 95% confidence intervals', int('replicates'), 1)
    .option('--workers <n>', 'worker threads for replicates (default: min(R, cores))', int('workers'))
    .option('--json', 'print one JSON object on stdout')
    .option('--out <dir>', 'write report.html and SVG plots (latency CDF, entropy histogram) here')
    .option('--no-progress', 'no progress lines on stderr')
    .option(
      '--threads <n>',
      'threads for one run: 2 puts the backward walks and the timing attack on a second thread (identical results); default 2 when the machine has 2 cores or more, else 1 (replicates use a thread each)',
      int('threads'),
    )
    .action(async (opts: Record<string, unknown>) => {
      const sc = makeScenario(scenarioFrom(opts));
      const R = opts.replicates as number;
      if (R < 1) throw new InvalidArgumentError('--replicates must be >= 1');
      const threads = (opts.threads as number | undefined) ?? (availableParallelism() >= 2 ? 2 : 1);
      if (threads < 1 || threads > 2) throw new InvalidArgumentError('--threads must be 1 or 2');
      if (R === 1) {
        const tty = opts.progress !== false && process.stderr.isTTY === true;
        const r = runSimulation(sc, { onProgress: progress(tty), keepSamples: opts.out !== undefined, threads });
        if (tty) process.stderr.write('\n');
        const { samples, latency_cdf: _cdf, ...out } = r;
        void _cdf;
        const recorded = { ...out, seeds: [sc.seed] };
        if (opts.json) process.stdout.write(JSON.stringify(recorded) + '\n');
        else process.stdout.write(human(r) + '\n');
        if (opts.out) {
          const files = await writeReport(String(opts.out), 'postmix sim run', recorded, [
            { name: 'latency-cdf', spec: latencyCdfSpec(r) },
            { name: 'entropy-hist', spec: entropyHistSpec(samples?.entropy ?? []) },
          ]);
          process.stderr.write(`wrote ${files.join(', ')}\n`);
        }
        return;
      }
      const seeds = replicateSeeds(sc.seed, R);
      const workers = (opts.workers as number | undefined) ?? Math.min(R, availableParallelism());
      if (opts.progress !== false) process.stderr.write(`replicates: ${R} seeds on ${workers} worker(s)\n`);
      const runs = await runSweep(
        seeds.map((seed) => ({ ...sc, seed })),
        { workers, onDone: (d, n, r) => opts.progress !== false && process.stderr.write(`  [${d}/${n}] seed ${r.scenario.seed}  ${fmt(r.wall_s, 1)} s\n`) },
      );
      const folded = foldReplicates(runs, new Set(['samples', 'latency_cdf', 'pool_size_hist', 'curve', 'scenario'])) as Record<string, unknown>;
      const out = { replicates: R, seeds, scenario: sc, ...folded };
      if (opts.json) process.stdout.write(JSON.stringify(out) + '\n');
      else process.stdout.write(human(out) + '\n');
      if (opts.out) {
        const files = await writeReport(String(opts.out), `postmix sim run (${R} replicates)`, out, [{ name: 'latency-cdf', spec: latencyCdfSpec(runs[0]!) }]);
        process.stderr.write(`wrote ${files.join(', ')}\n`);
      }
    });

  addScenarioFlags(
    sim
      .command('sweep')
      .description('run a grid of scenarios (× replicates) on worker threads or a Redis job queue; write results.csv, SVG plots and report.html'),
  )
    .requiredOption(
      '--vary <name=v1,v2,...>',
      'a parameter (flag name) and its values; repeat for a grid',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .option('--replicates <R>', 'seeds per grid point (S, S+1, ...): rows carry means with 95% CIs, plots error bars', int('replicates'), 1)
    .option('--workers <n>', 'worker threads (default: cores - 1, at least 1)', int('workers'))
    .option('--queue <redis-url>', 'distribute the runs to `postmix sim worker` processes through a BullMQ queue on this Redis (redis://HOST:PORT)')
    .option('--out <dir>', 'output directory', 'sim-sweep')
    .option('--json', 'print the rows as one JSON array on stdout')
    .action(async (opts: Record<string, unknown>) => {
      const base = scenarioFrom(opts);
      const grid = parseGrid(opts.vary as string[]);
      const points = expandGrid(base, grid);
      points.forEach((p) => makeScenario(p)); // validate every point before starting
      const R = opts.replicates as number;
      if (R < 1) throw new InvalidArgumentError('--replicates must be >= 1');
      const runsIn = expandReplicates(points, R);
      const t0 = performance.now();
      const keys = Object.keys(grid);
      const onDone = (d: number, n: number, r: RunResult) =>
        process.stderr.write(
          `  [${d}/${n}] ${keys.map((k) => `${k}=${String((r.scenario as unknown as Record<string, unknown>)[k])}`).join(' ')} seed ${r.scenario.seed}  entropy ${fmt(r.entropy.mean)}  latency ${fmt(r.latency.mean)}  ${fmt(r.wall_s, 1)}s\n`,
        );
      let results: RunResult[];
      if (typeof opts.queue === 'string') {
        process.stderr.write(`sweep: ${runsIn.length} runs (${points.length} points × ${R}) through the queue at ${opts.queue}\n`);
        results = await runOnQueue(opts.queue, runsIn, { onDone });
      } else {
        const workers = (opts.workers as number | undefined) ?? Math.max(1, availableParallelism() - 1);
        process.stderr.write(`sweep: ${runsIn.length} runs (${points.length} points × ${R}) on ${workers} worker(s)\n`);
        results = await runSweep(runsIn, { workers, onDone });
      }
      const rows = points.map((_, i) => rowOf(results.slice(i * R, (i + 1) * R), keys));
      const dir = String(opts.out);
      const files = await writeSweep(dir, keys, rows);
      process.stderr.write(`sweep done in ${fmt((performance.now() - t0) / 1000, 1)} s; wrote ${files.join(', ')}\n`);
      if (opts.json) process.stdout.write(JSON.stringify(rows) + '\n');
    });

  sim
    .command('analyze')
    .description(
      "compute the simulator's metrics from a real network's link capture (postmix testnet --capture DIR): per-hop delay, link latency, per-packet and sender entropy from link timings, end-to-end latency",
    )
    .argument('<capture-dir>', 'the directory postmix testnet --capture DIR wrote')
    .option('--warmup <D>', 'time after the first client packet before anything counts (a duration)', durationOption('--warmup'), 2)
    .option('--targets <K>', 'tracked target packets', int('targets'), 1000)
    .option('--compare', "also run the simulator with the capture's parameters and print both")
    .addOption(
      new Option('--delays <which>', "--compare: the per-hop delay the capture measured, or the document's 1/μ")
        .choices(['measured', 'configured'])
        .default('measured'),
    )
    .option('--json', 'print one JSON object on stdout')
    .action((dir: string, o: { warmup: number; targets: number; compare?: boolean; delays: 'measured' | 'configured'; json?: boolean }) => {
      const a = analyzeCapture(dir, { warmup: o.warmup, targets: o.targets });
      const sim = o.compare ? runSimulation(scenarioOfCapture(a, o.delays) as Partial<Scenario>) : null;
      if (o.json) {
        const { samples: _s, latency_cdf: _c, ...simOut } = sim ?? ({} as RunResult);
        void _s;
        void _c;
        process.stdout.write(JSON.stringify(sim ? { capture: a, sim: simOut } : a) + '\n');
        return;
      }
      const lines = [
        `capture ${dir}: ${a.nodes.clients} clients, ${a.nodes.mixes} mixes in ${a.nodes.layers} layers, ${a.nodes.gateways} gateways; ${a.frames.matched} link traversals matched (${a.frames.unmatched} unmatched) over ${fmt(a.span_s, 1)} s`,
        `per-hop delay (s):   mean ${fmt(a.per_hop_delay_s.mean, 4)} (per layer ${a.per_hop_delay_s.per_layer.map((x) => fmt(x, 4)).join(', ')}; configured 1/μ ${a.per_hop_delay_s.expected === null ? '?' : fmt(a.per_hop_delay_s.expected, 4)})${sim ? `  sim: ${fmt(sim.scenario.meanDelay, 4)} (${o.delays})` : ''}`,
        `link latency (s):    ${fmt(a.link_latency_s, 5)}`,
        `rates:               ${fmt(a.rates.client_pps, 2)} packets/s per client, ${fmt(a.rates.per_mix_pps, 2)} per mix${sim ? `  sim: ${fmt(sim.load.per_mix_pps.mean, 2)} per mix` : ''}`,
        `per-packet entropy:  mean ${fmt(a.entropy.mean)} bits (${a.entropy.n} targets)${sim ? `  sim: ${fmt(sim.entropy.mean)}` : ''}`,
        `sender entropy:      mean ${fmt(a.sender_entropy.mean)} of ${fmt(a.sender_entropy.max_possible)} bits (${a.sender_entropy.n} exits)${sim ? `  sim: ${fmt(sim.sender_entropy.mean)}` : ''}`,
        `message latency (s): ${a.latency.messages} overlay messages, mean ${fmt(a.latency.mean ?? NaN, 2)} (submission to the MX's mailbox)`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });

  sim
    .command('worker')
    .description('take sweep runs from a BullMQ queue on Redis and run them until stopped (SIGTERM/SIGINT), or until --max-jobs')
    .requiredOption('--queue <redis-url>', 'the Redis of the sweep (redis://HOST:PORT)')
    .option('--concurrency <n>', 'runs at once in this process (each on a worker thread)', int('concurrency'), 1)
    .option('--max-jobs <n>', 'exit after this many runs (0: no limit)', int('max-jobs'), 0)
    .action(async (o: { queue: string; concurrency: number; maxJobs: number }) => {
      await runQueueWorker(o.queue, { concurrency: o.concurrency, maxJobs: o.maxJobs, log: (l) => process.stderr.write(l + '\n') });
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
