/**
 * Attack 3: the long-term intersection (statistical disclosure) attack run over the simulated
 * network's own continuous-time trace, with the cover traffic as configured. The global
 * passive adversary sees every packet the target sends (real or cover: they look alike) and
 * every packet arriving at a gateway. For each arrival at gateway g it weighs how well the
 * target's recent sends explain it, by the density of the forward route delay (Erlang(L, μ)
 * after the constant link time) at (arrival − send); the target's profile is the weighted
 * arrivals per gateway against the background of all arrivals, and its contacts are named as
 * the `m` gateways with the largest excess (the target's home gateway excluded: the adversary
 * sees the client fetch its mailbox there). "Time to name" is the time after which the named
 * set is the true contact set at every checkpoint to the end of the run.
 */
import type { ErlangTable } from '../timing.ts';

export interface SdaTraceReport {
  contacts: number[];
  named: number[];
  /** seconds after the warm-up until the contacts are named for good; null: not within the run */
  time_to_name_s: number | null;
  /** contacts among the named at the end */
  correct_at_end: number;
  /** guessing m of the G − 1 candidates */
  baseline_correct: number;
  target_sends: number;
  gateway_arrivals: number;
  curve: Array<{ t: number; correct: number }>;
}

export class SdaOverTrace {
  private readonly sends = new Float64Array(4096);
  private head = 0;
  private count = 0;
  private readonly S: Float64Array;
  private readonly C: Float64Array;
  private sumS = 0;
  private sumC = 0;
  private nSends = 0;
  private nextCheck: number;
  private lastWrong: number;
  private readonly curve: Array<{ t: number; correct: number }> = [];

  constructor(
    private readonly gateways: number,
    private readonly contacts: readonly number[],
    private readonly home: number,
    private readonly table: ErlangTable,
    private readonly offset: number,
    private readonly start: number,
    private readonly end: number,
    private readonly step: number,
  ) {
    this.S = new Float64Array(gateways);
    this.C = new Float64Array(gateways);
    this.nextCheck = start + step;
    this.lastWrong = start;
  }

  targetSend(t: number): void {
    this.sends[this.head] = t;
    this.head = (this.head + 1) & 4095;
    if (this.count < 4096) this.count++;
    this.nSends++;
  }

  arrival(g: number, t: number): void {
    if (t <= this.start) return;
    while (t >= this.nextCheck && this.nextCheck <= this.end) this.check();
    let w = 0;
    let i = this.head;
    for (let k = 0; k < this.count; k++) {
      i = (i - 1) & 4095;
      const age = t - this.sends[i]! - this.offset;
      if (age > this.table.horizon) break;
      w += this.table.at(age);
    }
    this.S[g]! += w;
    this.sumS += w;
    this.C[g]! += 1;
    this.sumC += 1;
  }

  private named(): number[] {
    const cand: Array<[number, number]> = [];
    for (let g = 0; g < this.gateways; g++) {
      if (g === this.home) continue;
      const e = (this.sumS > 0 ? this.S[g]! / this.sumS : 0) - (this.sumC > 0 ? this.C[g]! / this.sumC : 0);
      cand.push([g, e]);
    }
    cand.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
    return cand.slice(0, this.contacts.length).map(([g]) => g);
  }

  private check(): void {
    const named = this.named();
    const correct = named.filter((g) => this.contacts.includes(g)).length;
    this.curve.push({ t: this.nextCheck - this.start, correct: correct / this.contacts.length });
    if (correct < this.contacts.length) this.lastWrong = this.nextCheck;
    this.nextCheck += this.step;
  }

  report(): SdaTraceReport {
    while (this.nextCheck <= this.end) this.check();
    const named = this.named();
    const correct = named.filter((g) => this.contacts.includes(g)).length;
    const candidates = this.gateways - (this.home >= 0 ? 1 : 0);
    const m = this.contacts.length;
    return {
      contacts: [...this.contacts],
      named,
      time_to_name_s: correct === m && this.lastWrong < this.end ? this.lastWrong - this.start : null,
      correct_at_end: correct,
      baseline_correct: candidates > 0 ? (m * m) / candidates : 0,
      target_sends: this.nSends,
      gateway_arrivals: this.sumC,
      curve: this.curve,
    };
  }
}
