import { describe, expect, it } from 'vitest';
import { fragmentCapacity, fragmentCount } from '../proto/fragment/index.ts';
import { mailboxRate } from '../proto/mailbox/index.ts';
import { packetSizes, DEFAULT_GEOMETRY } from '../proto/sphinx/index.ts';
import { TOKEN_LENGTH } from '../proto/tokens/index.ts';
import { ackTimeoutSeconds } from './clients.ts';
import { runSimulation } from './model.ts';
import { fragmentCapacityOf, makeScenario, meanFragments, RECIPIENT_BYTES, ScenarioError } from './scenario.ts';

// the postmix model on a small network: 30 clients, 3 × 3 mixes, 4 gateways
const BASE = {
  clients: 30,
  layers: 3,
  layerSize: 3,
  gateways: 4,
  contacts: 2,
  rate: 2,
  realRate: 0.1,
  loopRate: 0.5,
  dropRate: 0.5,
  meanDelay: 0.05,
  duration: 300,
  warmup: 20,
  targets: 50,
  seed: 21,
};

describe('the postmix protocol in the model', () => {
  it('cuts messages by the proto/fragment rule', () => {
    const cap = fragmentCapacityOf({ payloadSize: 2048 });
    expect(cap).toBe(fragmentCapacity(2048, RECIPIENT_BYTES, TOKEN_LENGTH, packetSizes(DEFAULT_GEOMETRY).surb));
    expect(meanFragments({ payloadSize: 2048, messageBytes: 3 * cap + 1, messageBytesSigma: 0 })).toBe(fragmentCount(3 * cap + 1, cap));
    expect(fragmentCount(3 * cap + 1, cap)).toBe(4);
    // a log-normal spread of sizes costs more fragments than its median alone
    expect(meanFragments({ payloadSize: 2048, messageBytes: 3 * cap, messageBytesSigma: 1 })).toBeGreaterThan(3.5);
    const r = runSimulation({ ...BASE, messageBytes: 3 * cap + 1 });
    expect(r.messages!.fragments_per_message).toBe(4);
    expect(() => makeScenario({ ...BASE, realRate: 0.6, messageBytes: 3 * cap + 1 })).toThrow(ScenarioError);
  });

  it('every message is delivered and ACKed through the mixes, with no resend when nothing is lost', () => {
    const r = runSimulation({ ...BASE, messageBytes: 3000 });
    const m = r.messages!;
    expect(m.submitted).toBeGreaterThan(500);
    // messages submitted within the last few seconds may still be under way at the end
    expect(m.delivered).toBeGreaterThan(0.98 * m.submitted);
    expect(m.acked).toBeGreaterThan(0.98 * m.submitted);
    expect(m.resent).toBe(0);
    expect(m.bounced).toBe(0);
    // one ACK packet crosses the mixes per fragment the gateway took
    expect(Math.abs(r.overhead.ack_per_real - 1)).toBeLessThan(0.01);
    // the ACK comes back after delivery: its route, the home gateway's hop and a downlink tick
    expect(m.latency_acked.mean).toBeGreaterThan(m.latency_delivered.mean + 3 * 0.05);
    // submission → last fragment: at least the forward route's L + 1 Exp(μ) hops
    expect(m.latency_delivered.mean).toBeGreaterThan(4 * 0.05);
    // the whole trip stays far inside the client's ACK timeout
    expect(m.latency_acked.p99).toBeLessThan(ackTimeoutSeconds(3, 20));
  });

  it('lost packets are resent on timeout and the messages still arrive; without ACKs nothing is resent', () => {
    const r = runSimulation({ ...BASE, loss: 0.02, duration: 400 });
    const m = r.messages!;
    expect(r.messages!.lost_packets).toBeGreaterThan(0);
    expect(m.resent).toBeGreaterThan(0);
    // each send crosses 2·(L+1) + 1 lossy entries; 5 attempts make a bounce very unlikely
    expect(m.bounced).toBeLessThanOrEqual(1);
    expect(m.acked).toBeGreaterThan(0.9 * m.submitted);
    // a resend waits for the timeout, so the slowest messages take longer than it
    expect(m.latency_acked.max).toBeGreaterThan(ackTimeoutSeconds(3, 20));
    const noAcks = runSimulation({ ...BASE, loss: 0.02, acks: false });
    expect(noAcks.messages!.resent).toBe(0);
    expect(noAcks.overhead.ack).toBe(0);
  });

  it('a fragment that never gets its ACK is sent maxAttempts times, then the message bounces', () => {
    const r = runSimulation({ ...BASE, loss: 0.6, maxAttempts: 2, duration: 200 });
    expect(r.messages!.bounced).toBeGreaterThan(0);
    const sentPerFragment = r.messages!.sent / (r.messages!.submitted * r.messages!.fragments_per_message);
    expect(sentPerFragment).toBeLessThanOrEqual(2);
    expect(sentPerFragment).toBeGreaterThan(1.3);
  });

  it('the mailbox downlink runs at max(1, 1.5 × (λ_P + λ_L)) frames/s per client, dummies filling the gaps; every payload tick and loop brings one item', () => {
    const r = runSimulation(BASE);
    const d = r.messages!.downlink;
    expect(d.frames_per_client_s).toBe(mailboxRate({ lambdaP: 2, lambdaL: 0.5 }));
    expect(d.frames_per_client_s).toBe(3.75);
    // items: one per payload tick (an ACK or a decoy's answer, λ_P) and per loop (λ_L)
    const itemsPerClientS = d.items / (30 * 280);
    expect(Math.abs(itemsPerClientS - (2 + 0.5)) / 2.5).toBeLessThan(0.05);
    expect(Math.abs(d.dummy_fraction - (1 - 2.5 / 3.75))).toBeLessThan(0.03);
    // with drop cover in the payload stream (before issue 11 point 2): ACKs (≈ λ_real · fragments) and loops only
    const old = runSimulation({ ...BASE, payloadCover: 'drop' }).messages!.downlink;
    expect(Math.abs(old.items / (30 * 280) - (0.1 + 0.5)) / 0.6).toBeLessThan(0.08);
  });

  it('gateway loop cover (λ_G) adds traffic and ACK delay adds latency', () => {
    const a = runSimulation(BASE);
    const b = runSimulation({ ...BASE, gatewayLoopRate: 5, ackDelay: true });
    expect(a.overhead.gateway_loop).toBe(0);
    expect(Math.abs(b.overhead.gateway_loop / (4 * 5 * 280) - 1)).toBeLessThan(0.05);
    // one more Exp(μ) on the way back: +0.05 s on the ACK, nothing on delivery
    expect(b.messages!.latency_acked.mean - a.messages!.latency_acked.mean).toBeGreaterThan(0.02);
    expect(Math.abs(b.messages!.latency_delivered.mean - a.messages!.latency_delivered.mean)).toBeLessThan(0.05);
  });
});
