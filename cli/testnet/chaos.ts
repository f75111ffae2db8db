/**
 * The testnet's chaos plan, decided before the run and applied as it goes: an MX down from
 * before submission until its gateway has failed to hand off (--mx-outage), K mixes SIGKILLed
 * once packets are in flight (--kill-mix), the beta.test gateway SIGKILLed with fragments in
 * flight and started again with the same keys and database (--restart-gateway), alice's client
 * SIGKILLed with fragments in flight and no submission under way, and started again with the
 * same outbox (--restart-client), every directory authority down for more than two epochs while
 * mail is sent (--authority-outage, authority-outage.ts). What happened is reported; a step that
 * could not be taken fails the run.
 */
import { AuthorityOutage, type Follower, type OutageTimes } from './authority-outage.ts';
import type { ClientInfo } from './clients.ts';
import type { SubmissionGate } from './submit.ts';
import type { ChaosReport } from './report.ts';
import { scrape, sumMetric } from './metrics.ts';
import { DOMAINS, type Mxs } from './mxs.ts';
import type { RunningNetwork } from './network.ts';
import type { Progressing } from './follow.ts';
import type { Supervisor } from './processes.ts';

export interface ChaosOptions {
  readonly killMix: number;
  readonly restartGatewayMs: number;
  readonly mxOutageS: number;
  /** SIGKILL alice's client with fragments in flight, restart it after this many ms (0: off) */
  readonly restartClientMs: number;
  /** every authority down for at least this many seconds (0: off) */
  readonly authorityOutageS: number;
  readonly layers: number;
  readonly epochLength: number;
  readonly threshold: number;
  readonly timeoutS: number;
}

/** What the plan sees of the clients and their mail. */
export interface ChaosClients {
  readonly all: readonly ClientInfo[];
  /** the client --restart-client kills */
  readonly victim: ClientInfo;
  /** taken before a client is killed, so that no submission is under way or starts meanwhile (submit.ts) */
  readonly gate: SubmissionGate;
  /** each overlay message's submission and MX arrival (unix ms; 0 / null: not yet) */
  readonly arrivals: () => readonly { submittedAt: number; arrivedAt: number | null }[];
}

/** K mixes to kill, spread over the layers so every layer keeps at least one live mix. */
export function pickVictims(mixes: readonly string[], k: number, layers: number): string[] {
  const byLayer: string[][] = Array.from({ length: layers }, (_, l) => mixes.filter((m) => m.startsWith(`mix-l${l + 1}-`)));
  const out: string[] = [];
  for (let round = 0; out.length < k; round++) {
    let progressed = false;
    for (const layer of byLayer) {
      if (out.length >= k) break;
      if (layer.length - round > 1) {
        out.push(layer[round]!);
        progressed = true;
      }
    }
    if (!progressed) throw new Error(`--kill-mix ${k} would leave a layer empty (${mixes.length} mixes in ${layers} layers)`);
  }
  return out;
}

export class ChaosPlan {
  readonly killed: string[] = [];
  readonly restarted: { name: string; down_s: number }[] = [];
  mxOutage: ChaosReport['mx_outage'] = null;
  readonly errors: string[] = [];
  private readonly background: Promise<void>[] = [];
  private killedYet: boolean;
  private restartedYet: boolean;
  private clientRestartedYet: boolean;
  private readonly outage: AuthorityOutage | undefined;

  constructor(
    private readonly o: ChaosOptions,
    private readonly net: RunningNetwork,
    private readonly mxs: Mxs,
    private readonly sup: Supervisor,
    private readonly clients: ChaosClients,
    private readonly log: (s: string) => void,
  ) {
    this.killedYet = o.killMix === 0;
    this.restartedYet = o.restartGatewayMs === 0;
    this.clientRestartedYet = o.restartClientMs === 0;
    if (o.authorityOutageS > 0)
      this.outage = new AuthorityOutage(
        { seconds: o.authorityOutageS, epochLength: o.epochLength, threshold: o.threshold, timeoutS: o.timeoutS },
        net,
        sup,
        log,
      );
  }

  /** Every live mix, gateway and client, and the gauge that says which document it routes by. */
  private followers(): Follower[] {
    const alive = (name: string) => !this.sup.get(name)?.status;
    return [
      ...this.net.nodes
        .filter((n) => alive(n.name))
        .map((n) => ({
          name: n.name,
          metricsUrl: n.metricsUrl,
          metric: n.kind === 'mix' ? 'postmix_mixnode_document_epoch' : 'postmix_gateway_document_epoch',
        })),
      ...this.clients.all.filter((c) => alive(c.name)).map((c) => ({ name: c.name, metricsUrl: c.metricsUrl, metric: 'postmix_client_document_epoch' })),
    ];
  }

  /**
   * Before anything is sent: alpha.test's MX goes down, and comes back only after its gateway
   * has counted failed hand-offs and the outage has lasted its time, so the run proves hand-off
   * retries, not lucky timing.
   */
  async beforeSubmit(): Promise<OutageTimes | undefined> {
    await this.mxDown();
    if (!this.outage) return undefined;
    const times = await this.outage.begin();
    this.background.push(
      this.outage
        .ride(this.clients.arrivals, () => this.followers())
        .catch((e: unknown) => {
          this.errors.push(`authority outage: ${(e as Error).message}`);
        }),
    );
    return times;
  }

  private async mxDown(): Promise<void> {
    if (this.o.mxOutageS <= 0) return;
    const mx = this.mxs.byDomain.get(DOMAINS.a)!;
    const gw = this.net.nodes.find((n) => n.kind === 'gateway' && n.domain === DOMAINS.a)!;
    await mx.stop();
    const downAt = Date.now();
    this.log(`MX for ${DOMAINS.a} is DOWN (for at least ${this.o.mxOutageS} s, until ${gw.name} has failed to hand off)`);
    this.background.push(
      (async () => {
        let failures = 0;
        const until = Date.now() + this.o.timeoutS * 1000;
        while (Date.now() < until) {
          failures = sumMetric(await scrape(gw.metricsUrl).catch(() => []), 'postmix_gateway_handoff_failures_total');
          if (failures > 0 && Date.now() - downAt >= this.o.mxOutageS * 1000) break;
          await new Promise((r) => setTimeout(r, 500));
        }
        await mx.start();
        this.mxOutage = { domain: DOMAINS.a, down_s: (Date.now() - downAt) / 1000, handoff_failures: failures };
        this.log(`MX for ${DOMAINS.a} is back after ${this.mxOutage.down_s.toFixed(1)} s (${gw.name} counted ${failures} failed hand-offs meanwhile)`);
      })().catch((e: unknown) => {
        this.errors.push(`mx outage: ${(e as Error).message}`);
      }),
    );
  }

  /** At each look at the messages: kills and restarts due now. */
  async onProgress(st: Progressing): Promise<void> {
    if (!this.killedYet && (st.inflight > 0 || st.acked > 0)) {
      this.killedYet = true;
      for (const name of pickVictims(this.net.mixes, this.o.killMix, this.o.layers)) {
        await this.sup.kill(name);
        this.killed.push(name);
      }
      this.log(`SIGKILLed ${this.killed.join(', ')} mid-run: their queued packets are lost; clients must resend`);
    }
    if (!this.restartedYet && (st.inflight > 0 || st.acked < st.fragments)) {
      this.restartedYet = true;
      const gw = this.net.gateways.find((g) => g.domain === DOMAINS.b)!;
      const at = Date.now();
      this.log(`SIGKILL ${gw.name} with fragments in flight; restarting it in ${this.o.restartGatewayMs} ms`);
      this.background.push(
        this.sup.restart(gw.name, /gateway listening/, this.o.restartGatewayMs).then(
          () => {
            this.restarted.push({ name: gw.name, down_s: (Date.now() - at) / 1000 });
            this.log(`${gw.name} is back (down ${((Date.now() - at) / 1000).toFixed(1)} s): same keys, same queue database`);
          },
          (e: unknown) => {
            this.errors.push(`restart ${gw.name}: ${(e as Error).message}`);
          },
        ),
      );
    }
    this.restartClient(st);
  }

  /** alice's client SIGKILLed with fragments in flight (never mid-submission: its 250 is the commit), restarted with the same outbox. */
  private restartClient(st: Progressing): void {
    const c = this.clients.victim;
    if (this.clientRestartedYet || !((st.inflightBy[c.name] ?? 0) > 0) || !this.clients.gate.takeDown(c.name)) return;
    this.clientRestartedYet = true;
    const at = Date.now();
    this.log(`SIGKILL ${c.name} with ${st.inflightBy[c.name]} fragments in flight; restarting it in ${this.o.restartClientMs} ms`);
    this.background.push(
      this.sup
        .restart(c.name, /smtp submission listening/, this.o.restartClientMs)
        .then(
          () => {
            this.restarted.push({ name: c.name, down_s: (Date.now() - at) / 1000 });
            this.log(`${c.name} is back (down ${((Date.now() - at) / 1000).toFixed(1)} s): same outbox, same wallet`);
          },
          (e: unknown) => {
            this.errors.push(`restart ${c.name}: ${(e as Error).message}`);
          },
        )
        .finally(() => this.clients.gate.bringUp(c.name)),
    );
  }

  /** Waits for the steps still under way (the MX to come back, the gateway to restart). */
  async settled(): Promise<void> {
    await Promise.all(this.background);
  }

  /** Whether every step asked for was taken. */
  get complete(): boolean {
    const restarted = (name: string) => this.restarted.some((r) => r.name === name);
    return (
      this.errors.length === 0 &&
      (this.o.restartGatewayMs === 0 || restarted(this.net.gateways.find((g) => g.domain === DOMAINS.b)!.name)) &&
      (this.o.restartClientMs === 0 || restarted(this.clients.victim.name)) &&
      (this.o.mxOutageS === 0 || this.mxOutage !== null) &&
      (this.outage === undefined || this.outage.report() !== null)
    );
  }

  report(): ChaosReport {
    return { killed: this.killed, restarted: this.restarted, mx_outage: this.mxOutage, authority_outage: this.outage?.report() ?? null, errors: this.errors };
  }
}
