/**
 * The four attacks of issue 17 on small scenarios: each test plays the adversary against the
 * model and checks what it recovers, next to a case where it should recover less.
 */
import { describe, expect, it } from 'vitest';
import { runSimulation } from '../model.ts';
import { auc } from './mailbox-watch.ts';
import { combine } from './evidence.ts';

const BASE = {
  clients: 30,
  layers: 3,
  layerSize: 3,
  gateways: 5,
  contacts: 2,
  rate: 2,
  realRate: 0.2,
  loopRate: 0.5,
  dropRate: 0.5,
  meanDelay: 0.05,
  messageBytes: 3000,
  duration: 400,
  warmup: 20,
  targets: 30,
  messageTargets: 60,
  seed: 3,
};

describe('attack 1: a recipient gateway withholding ACKs to confirm a suspected sender', () => {
  it('every withheld fragment is resent up to maxAttempts, and the extra sends name the sender in no more messages', () => {
    const honest = runSimulation({ ...BASE, clients: 60, meanDelay: 0.2 }).attacks.ack_withholding!;
    const r = runSimulation({ ...BASE, clients: 60, meanDelay: 0.2, withholdAcks: true }).attacks.ack_withholding!;
    expect(honest.gateway).toBeNull();
    expect(honest.attempts_per_fragment).toBe(1);
    expect(r.gateway).not.toBeNull();
    expect(r.messages).toBeGreaterThan(10);
    // the last messages' fragments may not have used all five attempts by the end
    expect(r.attempts_per_fragment).toBeGreaterThan(4);
    expect(r.attempts_per_fragment).toBeLessThanOrEqual(5);
    expect(r.messages_to_sure).not.toBeNull();
    expect(r.messages_to_sure_first_attempts).not.toBeNull();
    expect(r.messages_to_sure!).toBeLessThanOrEqual(r.messages_to_sure_first_attempts!);
    expect(r.final_true_sender_prob).toBeGreaterThan(0.95);
  });

  it('the evidence fold is Bayes with a uniform prior: pieces multiply, absent clients drop out', () => {
    const a = { clients: Int32Array.from([0, 1, 2]), probs: Float64Array.from([0.5, 0.25, 0.25]), entropy: 1.5, truncated: false };
    const b = { clients: Int32Array.from([0, 1]), probs: Float64Array.from([0.5, 0.5]), entropy: 1, truncated: false };
    const v = combine([a, b], 0);
    expect(v.support).toBe(2);
    expect(v.pTrue).toBeCloseTo(2 / 3, 12);
  });
});

describe("attack 2: the sender's home gateway watching its client's mailbox", () => {
  it('with drop cover in the payload stream (Loopix, postmix before issue 11 point 2) the gateway tells when its client sends from the item count, and how much', () => {
    const r = runSimulation({ ...BASE, realRate: 0.05, duration: 1200, messageTargets: 1, payloadCover: 'drop' }).attacks.home_gateway!;
    expect(r.windows).toBeGreaterThan(100);
    expect(r.windows_with_acks).toBeGreaterThan(5);
    expect(r.windows - r.windows_with_acks).toBeGreaterThan(5);
    // ACKs come only for real fragments: counting items beats guessing by far
    // (0.81–0.90 over seeds 1–4)
    expect(r.auc).toBeGreaterThan(0.75);
    expect(r.relative_error!).toBeLessThan(0.5);
    // more loop cover drowns the ACKs: the count says less
    const covered = runSimulation({ ...BASE, realRate: 0.05, loopRate: 20, rate: 21, duration: 1200, messageTargets: 1, payloadCover: 'drop' }).attacks
      .home_gateway!;
    expect(covered.auc).toBeLessThan(r.auc - 0.15);
  });

  it('with decoys (the protocol) every payload tick brings one item back: the count says nothing', () => {
    const r = runSimulation({ ...BASE, realRate: 0.05, duration: 1200, messageTargets: 1 }).attacks.home_gateway!;
    expect(r.windows_with_acks).toBeGreaterThan(5);
    expect(r.windows - r.windows_with_acks).toBeGreaterThan(5);
    expect(Math.abs(r.auc - 0.5)).toBeLessThan(0.12);
    // its estimate of the ACKs (items − λ_L · time, now items − (λ_P + λ_L) · time) is noise
    expect(r.relative_error!).toBeGreaterThan(0.5);
  });

  it('AUC is the Mann–Whitney statistic', () => {
    expect(auc([3, 4], [1, 2])).toBe(1);
    expect(auc([1], [1])).toBe(0.5);
    expect(auc([2, 0], [1])).toBe(0.5);
  });
});

describe('attack 3: statistical disclosure over the continuous-time trace', () => {
  it("names the target's contact gateways within the run, and later (or not at all) under more cover", () => {
    const thin = { ...BASE, rate: 1, realRate: 0.2, loopRate: 0.1, dropRate: 0.1, duration: 2000, targets: 10, messageTargets: 1 };
    const a = runSimulation(thin).attacks.sda!;
    expect(a.contacts.length).toBe(2);
    expect(a.correct_at_end).toBe(2);
    expect(a.time_to_name_s).not.toBeNull();
    const b = runSimulation({ ...thin, dropRate: 3, loopRate: 1, rate: 3 }).attacks.sda!;
    expect(b.time_to_name_s === null || b.time_to_name_s > a.time_to_name_s!).toBe(true);
  });
});

describe('attack 4: a compromised fraction of mixes and gateways', () => {
  it('a compromised recipient gateway groups fragments and follows the ACKs home: less entropy per message than per packet', () => {
    const none = runSimulation(BASE).attacks.compromise!;
    expect(none.gateways_compromised).toBe(0);
    expect(none.messages).toBe(0);
    const gw = runSimulation({ ...BASE, compromisedGateways: 1 }).attacks.compromise!;
    expect(gw.gateways_compromised).toBe(5);
    expect(gw.messages).toBeGreaterThan(20);
    expect(gw.fragments_only_entropy_mean).toBeLessThan(gw.packet_entropy_mean - 0.5);
    expect(gw.message_entropy_mean).toBeLessThan(gw.fragments_only_entropy_mean);
    // and with every mix too, nothing is left
    const all = runSimulation({ ...BASE, compromisedGateways: 1, compromised: 1 }).attacks.compromise!;
    expect(all.identified).toBe(1);
    expect(all.message_entropy_mean).toBe(0);
  });

  it('compromised mixes lower the per-packet anonymity in the postmix model too', () => {
    const a = runSimulation(BASE);
    const b = runSimulation({ ...BASE, compromised: 0.34 });
    expect(b.entropy.mean).toBeLessThan(a.entropy.mean);
    expect(b.sender_entropy.mean).toBeLessThan(a.sender_entropy.mean);
  });
});
