/**
 * `postmix testnet`: a whole postmix network on loopback, delivering real mail.
 *
 *   3 directory authorities (2-of-3) · L layers × W mix nodes · a gateway for alpha.test and one
 *   for beta.test, each in front of its own MX (a Maildir-writing SMTP server, or Postfix) ·
 *   gamma.test with no gateway, reached through an SMTP relay (the senders' provider) ·
 *   client A (alice@alpha.test) and client B (bob@beta.test): each requests tokens from its own
 *   gateway through its client (blinded) and exports one bundle for the other, who imports it ·
 *   optionally client M (mallory@alpha.test) holding forged tokens.
 *
 * Every node is its own `postmix … run` process. The run goes through named phases, each in its
 * own module: start the MXs (mxs.ts), start the network and add the users (network.ts,
 * clients.ts), tokens and clients (clients.ts), the chaos plan (chaos.ts), submit (submit.ts),
 * follow and judge from the outside, through `client status` and the Maildirs (follow.ts), the
 * wire checks (replay.ts, wire.ts), and teardown. It exits 0 only when every message went where
 * it should, intact, exactly once.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEFAULT_GEOMETRY, packetSizes, validateGeometry, type Geometry } from '../../proto/sphinx/geometry.ts';
import { CAPTURE_ENV } from '../../runtime/link/index.ts';
import { spreadOverOutage, spreadTimes } from './authority-outage.ts';
import { ChaosPlan } from './chaos.ts';
import { addUsers, startClients, type UserSecrets } from './clients.ts';
import { ClientWatch, judge, progressLine, progressOf } from './follow.ts';
import { findInMaildir, type MtaKind } from './messages.ts';
import { DOMAINS, startMxs, type Mxs } from './mxs.ts';
import { startGateways, startNetwork, waitForFullDocument, type NetworkPlan, type NodeRecord, type RunningNetwork } from './network.ts';
import { Supervisor } from './processes.ts';
import { injectReplays, type ReplayReport } from './replay.ts';
import { renderTable, totals, type MessageReport, type TestnetReport, type TokensReport } from './report.ts';
import { createNetns, LOOPBACK, type Addressing } from './netns.ts';
import { Soak, type SoakReport } from './soak.ts';
import { planMessages, submitAll, SubmissionGate, type Planned } from './submit.ts';
import { sizeLeaks, summarizeCapture, type WireReport } from './wire.ts';

export { pickVictims } from './chaos.ts';

export interface TestnetOptions {
  readonly messages: number;
  readonly size: number;
  readonly unauthorized: number;
  readonly killMix: number;
  /** SIGKILL the beta.test gateway while fragments are in flight, restart it after this many ms (0: off) */
  readonly restartGatewayMs: number;
  /** take alpha.test's MX down before submission for at least this many seconds (0: off) */
  readonly mxOutageS: number;
  /** SIGKILL alice's client while its fragments are in flight, restart it after this many ms (0: off) */
  readonly restartClientMs: number;
  /** every directory authority down for at least this many seconds, mail sent meanwhile (0: off) */
  readonly authorityOutageS: number;
  /** steady mail for this many seconds: the messages spread over it, memory and stores reported (0: off) */
  readonly soakS: number;
  /** record every link's frames (POSTMIX_LINK_CAPTURE) and check they all have one length */
  readonly capture: boolean;
  /** keep the capture here (implies capture), with nodes.json and testnet.json, for `postmix sim analyze` */
  readonly captureDir?: string;
  /** re-inject this many captured frames into a mix; each must be dropped as a replay (implies capture) */
  readonly replay: number;
  readonly json: boolean;
  readonly keep?: string;
  readonly mta: MtaKind;
  readonly layers: number;
  readonly layerSize: number;
  readonly epochLength: number;
  readonly meanDelayMs: number;
  /** Loopix rates per client (λ_P, λ_L, λ_D) and per mix (λ_M), per second */
  readonly lambdaP: number;
  readonly lambdaL: number;
  readonly lambdaD: number;
  readonly lambdaM: number;
  /** λ_G: each gateway's loop cover rate, per second */
  readonly lambdaG: number;
  /** Sphinx payload size of the network document (bytes) */
  readonly payloadSize: number;
  readonly timeoutS: number;
  readonly logLevel: string;
  /** --netns: each node in a network namespace of its own, its link delaying and dropping what it sends */
  readonly netns?: { readonly delayMs: number; readonly lossPct: number };
}

export const TESTNET_DEFAULTS: TestnetOptions = {
  messages: 2,
  size: 6000,
  unauthorized: 0,
  killMix: 0,
  restartGatewayMs: 0,
  mxOutageS: 0,
  restartClientMs: 0,
  authorityOutageS: 0,
  soakS: 0,
  capture: false,
  replay: 0,
  json: false,
  mta: 'embedded',
  layers: 3,
  layerSize: 3,
  epochLength: 20,
  meanDelayMs: 50,
  lambdaP: 10,
  lambdaL: 1,
  lambdaD: 1,
  lambdaM: 0.5,
  lambdaG: 0.5,
  payloadSize: DEFAULT_GEOMETRY.payloadSize,
  timeoutS: 240,
  logLevel: 'info',
};

/** What a run has under way, so that teardown can undo it whatever phase failed. */
export class Run {
  readonly t0 = Date.now();
  readonly dir: string;
  readonly mailRoot: string;
  readonly captureDir: string | undefined;
  readonly sup: Supervisor;
  readonly closers: (() => Promise<void>)[] = [];
  /** where the nodes live: loopback, or a network namespace each (netns.ts) */
  readonly where: Addressing;
  nodes: readonly NodeRecord[] = [];

  constructor(readonly o: TestnetOptions) {
    this.where = o.netns ? createNetns(o.netns) : LOOPBACK;
    this.dir = o.keep ? resolve(o.keep) : mkdtempSync(join(tmpdir(), 'postmix-testnet-'));
    mkdirSync(join(this.dir, 'logs'), { recursive: true });
    this.mailRoot = join(this.dir, 'mail');
    this.captureDir = o.captureDir ?? (o.capture || o.replay > 0 ? join(this.dir, 'capture') : undefined);
    this.sup = new Supervisor(join(this.dir, 'logs'), this.captureDir ? { ...process.env, [CAPTURE_ENV]: this.captureDir } : process.env);
    this.sup.launcher = (name) => this.where.wrap(name);
  }

  log = (s: string): void => {
    const line = `[testnet ${((Date.now() - this.t0) / 1000).toFixed(1).padStart(5)} s] ${s}\n`;
    if (this.o.json) process.stderr.write(line);
    else process.stdout.write(line);
  };

  /** Every process and MX stopped, the capture summarised (after the stop: each link flushes it on the way down), the directory removed unless kept. */
  async teardown(graceMs?: number): Promise<WireReport | null> {
    await this.sup.stopAll(graceMs);
    let wire: WireReport | null = null;
    if (this.captureDir) {
      const kinds = new Map<string, 'mix' | 'gateway'>(this.nodes.map((n) => [n.peerId, n.kind]));
      wire = summarizeCapture(this.captureDir, (peer) => kinds.get(peer) ?? 'client');
    }
    for (const c of this.closers.reverse()) await c().catch(() => undefined);
    // last: the namespaces (every process in them has stopped)
    this.where.destroy();
    if (this.o.captureDir && existsSync(join(this.dir, 'nodes.json'))) copyFileSync(join(this.dir, 'nodes.json'), join(this.o.captureDir, 'nodes.json'));
    if (!this.o.keep) rmSync(this.dir, { recursive: true, force: true });
    return wire;
  }
}

/** A route is one mix per layer + the gateway, and so is a mix's loop: L+1 hops. */
export function geometryFor(o: TestnetOptions): Geometry {
  return validateGeometry({ ...DEFAULT_GEOMETRY, maxHops: Math.max(DEFAULT_GEOMETRY.maxHops, o.layers + 1), payloadSize: o.payloadSize });
}

function topologyOf(o: TestnetOptions, geometry: Geometry): Record<string, unknown> {
  return {
    authorities: 3,
    threshold: 2,
    layers: o.layers,
    mixes_per_layer: o.layerSize,
    gateways: { [DOMAINS.a]: 'gw-alpha', [DOMAINS.b]: 'gw-beta' },
    no_gateway: DOMAINS.c,
    mta: o.mta,
    epoch_length_s: o.epochLength,
    mean_delay_per_hop_ms: o.meanDelayMs,
    rates_per_s: { lambda_p: o.lambdaP, lambda_l: o.lambdaL, lambda_d: o.lambdaD, lambda_m: o.lambdaM, lambda_g: o.lambdaG },
    payload_bytes: o.payloadSize,
    packet_bytes: packetSizes(geometry).packet,
    // what each client sends through the overlay: the simulator models this load and its ACKs
    workload: { overlay_messages_per_client: o.messages, message_bytes: o.size },
  };
}

/** Authorities, mixes and gateways up (users added before the gateways start), and a document listing them all. */
export async function startMixnet(run: Run, plan: NetworkPlan): Promise<{ net: RunningNetwork; secrets: UserSecrets }> {
  let secrets: UserSecrets | undefined;
  const net = await startNetwork(plan, run.sup, run.log, async (gws) => {
    secrets = await addUsers(gws, run.log);
  });
  run.nodes = net.nodes;
  await startGateways(net, run.sup);
  run.log(`${net.mixes.length} mix nodes and ${net.gateways.length} gateways listening`);
  await waitForFullDocument(net, plan, (run.o.epochLength * 4 + 60) * 1000, run.log);
  if (run.captureDir) run.log(`link capture on: every node records its frames under ${run.captureDir}`);
  return { net, secrets: secrets! };
}

/** The daemons' plan: 3 authorities (2-of-3), the layers, a gateway per overlay domain in front of its MX. */
export function networkPlan(run: Run, geometry: Geometry, mxs: Mxs): NetworkPlan {
  const o = run.o;
  return {
    dir: run.dir,
    authorities: 3,
    threshold: 2,
    layers: o.layers,
    layerSize: o.layerSize,
    gatewayDomains: [DOMAINS.a, DOMAINS.b],
    epochLength: o.epochLength,
    grace: Math.max(5, Math.ceil(o.epochLength * 0.75)),
    geometry,
    mixing: { lambdaP: o.lambdaP, lambdaL: o.lambdaL, lambdaD: o.lambdaD, lambdaM: o.lambdaM, lambdaG: o.lambdaG, mu: 1000 / o.meanDelayMs },
    mx: new Map([...mxs.byDomain].map(([d, mx]) => [d, { host: run.where.local, port: mx.port }])),
    logLevel: o.logLevel,
    host: (name) => run.where.host(name),
  };
}

/** The links of a --netns run, for the log. */
export function describeLinks(o: TestnetOptions): string {
  const n = o.netns;
  if (!n || (n.delayMs <= 0 && n.lossPct <= 0)) return 'links without added delay or loss';
  return `each node's link adds ${n.delayMs} ms and drops ${n.lossPct} % of what it sends`;
}

/** Captured frames sent again to a mix, which must drop them as replays. */
async function replayCheck(run: Run, net: RunningNetwork, chaos: ChaosPlan): Promise<ReplayReport | null> {
  if (!run.captureDir || run.o.replay <= 0) return null;
  try {
    const replay = await injectReplays({
      captureDir: run.captureDir,
      nodes: net.nodes,
      count: run.o.replay,
      maxAgeMs: Math.min(5000, (run.o.epochLength * 1000) / 2),
      isAlive: (name) => !run.sup.get(name)?.status,
    });
    run.log(`replay: ${replay.note}; ${replay.target} dropped ${replay.dropped_as_replay}/${replay.injected} as replays`);
    return replay;
  } catch (e) {
    chaos.errors.push((e as Error).message);
    run.log(`replay check failed: ${(e as Error).message}`);
    return null;
  }
}

/**
 * Follows the messages, from the start of their submission, until each is where it will stay
 * (and the submission is over) or the time is up; the chaos plan acts on what it sees, so a mix
 * dies and a gateway restarts while packets of this run are in flight.
 */
async function follow(
  run: Run,
  planned: readonly Planned[],
  watch: ClientWatch,
  chaos: ChaosPlan,
  submission: Promise<unknown>,
  lastSubmitAt: number,
): Promise<void> {
  let submitted = false;
  void submission.finally(() => (submitted = true));
  // paced submissions (an outage, a soak): the time given runs from the last one
  const deadline = Math.max(Date.now(), lastSubmitAt) + run.o.timeoutS * 1000;
  let lastLine = '';
  for (;;) {
    const st = progressOf(planned, watch, run.mailRoot, run.o.mta);
    const line = progressLine(st, planned.length);
    if (line !== lastLine) run.log(line);
    lastLine = line;
    await chaos.onProgress(st);
    if ((st.done && submitted) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, FOLLOW_MS));
  }
  await submission;
  await chaos.settled();
  await watch.fresh();
}

/** How often the run looks at its messages (and the clients report their status). */
const FOLLOW_MS = 250;

export async function runTestnet(o: TestnetOptions): Promise<TestnetReport> {
  const run = new Run(o);
  const geometry = geometryFor(o);
  const topology = topologyOf(o, geometry);
  let messages: MessageReport[] = [];
  let replay: ReplayReport | null = null;
  let chaos: ChaosPlan | undefined;
  let bundles: TokensReport['bundles'] = [];
  let soak: SoakReport | null = null;
  let ok = false;
  const onSignal = () => {
    // the MXs too: a private Postfix left running would outlive the run
    void run.teardown(2000).then(
      () => process.exit(130),
      () => process.exit(130),
    );
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let wire: WireReport | null = null;
  try {
    run.log(`run directory ${run.dir}${o.keep ? ' (kept)' : ''}`);
    if (run.where.mode === 'netns') run.log(`network namespaces: every node on a host of its own (${describeLinks(o)})`);
    const mxs = await startMxs({ mta: o.mta, keep: Boolean(o.keep), host: run.where.local }, run.dir, run.mailRoot, run.closers, run.log);
    const plan = networkPlan(run, geometry, mxs);
    const { net, secrets } = await startMixnet(run, plan);
    const clients = await startClients(
      run.dir,
      net,
      plan,
      mxs.smarthost,
      secrets,
      { logLevel: o.logLevel, epochLength: o.epochLength, forged: o.unauthorized, tokensEach: o.messages + 2 },
      run.sup,
      run.log,
    );
    bundles = clients.bundles;
    const watch = new ClientWatch(clients.all, FOLLOW_MS / 1000);
    run.closers.push(async () => watch.close());
    const planned = planMessages(clients, { messages: o.messages, size: o.size, forged: o.unauthorized });
    const overlay = planned.map((p) => p.expected === 'overlay');
    const gate = new SubmissionGate();
    chaos = new ChaosPlan(
      { ...o, epochLength: o.epochLength, threshold: plan.threshold },
      net,
      mxs,
      run.sup,
      {
        all: clients.all,
        victim: clients.alice,
        gate,
        arrivals: () =>
          planned
            .filter((p) => p.expected === 'overlay')
            .map((p) => ({ submittedAt: p.submittedAt, arrivedAt: findInMaildir(run.mailRoot, p.to, p.id, p.bytes, o.mta).firstArrivalMs })),
      },
      run.log,
    );
    const outage = await chaos.beforeSubmit();
    await watch.ready();
    const soaking = o.soakS > 0 ? new Soak(o.soakS, o.epochLength, net.nodes, run.sup, run.log) : undefined;
    await soaking?.begin();
    // when each message is submitted: spread over the soak, else over the authority outage, else at once
    const times = soaking
      ? spreadTimes(overlay, Date.now(), Date.now() + o.soakS * 1000)
      : outage
        ? spreadOverOutage(overlay, outage, o.authorityOutageS, o.epochLength)
        : undefined;
    const c = chaos;
    const submission = submitAll(run.dir, planned, { gate, ...(times ? { at: (i: number) => times[i]! } : {}) }).then(() => {
      run.log(`submitted ${planned.length} messages (${o.size} bytes each) over SMTP to the clients`);
      return replayCheck(run, net, c);
    });
    await follow(run, planned, watch, chaos, submission, times ? Math.max(...times) : Date.now());
    replay = await submission;
    // the last message was submitted at the soak's end: follow() waited for it
    if (soaking) soak = await soaking.end(planned.length);
    messages = planned.map((p) => judge(p, watch, run.mailRoot, o.mta));
    ok = messages.every((m) => m.ok) && chaos.complete && (soak === null || soak.bounded);
    if (replay && replay.dropped_as_replay !== replay.injected) ok = false;
    if (o.replay > 0 && !replay) ok = false;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    wire = await run.teardown();
    if (wire && sizeLeaks(wire).length > 0) ok = false;
  }
  const report: TestnetReport = {
    ok,
    wall_s: (Date.now() - run.t0) / 1000,
    topology,
    messages,
    totals: totals(messages),
    chaos: chaos?.report() ?? { killed: [], restarted: [], mx_outage: null, authority_outage: null, errors: [] },
    wire,
    replay,
    soak,
    tokens: { issued_via: 'client', bundles },
    run_dir: o.keep ? run.dir : null,
    network: run.where.report(),
  };
  if (o.captureDir) writeFileSync(join(o.captureDir, 'testnet.json'), JSON.stringify({ ok, topology, messages }) + '\n');
  if (o.json) process.stdout.write(JSON.stringify(report) + '\n');
  else process.stdout.write('\n' + renderTable(report) + '\n');
  return report;
}
