/**
 * One run on two threads (the exit analyses on a worker reading the shared trace) gives exactly
 * the result of the one-thread run for the same seed: every metric, every per-target sample, the
 * attacks' reports. The small trace ring makes the event loop wait for the worker often and the
 * walks run out of trace, so the hand-over at the ring's edge is exercised too.
 */
import { describe, expect, it } from 'vitest';
import { runSimulation, type RunResult } from './model.ts';
import type { Scenario } from './scenario.ts';

function strip(r: RunResult): Omit<RunResult, 'wall_s' | 'events_per_s'> {
  const { wall_s: _w, events_per_s: _e, ...rest } = r;
  return rest;
}

function both(sc: Partial<Scenario>): [RunResult, RunResult] {
  return [runSimulation(sc, { keepSamples: true, threads: 1 }), runSimulation(sc, { keepSamples: true, threads: 2 })];
}

describe('two threads give the one-thread result', () => {
  it('idealised model with cover, mix loops and compromised mixes', () => {
    const [a, b] = both({
      clients: 200,
      layers: 3,
      layerSize: 3,
      duration: 40,
      warmup: 5,
      targets: 150,
      seed: 11,
      loopRate: 0.5,
      dropRate: 0.5,
      mixLoopRate: 1,
      compromised: 0.2,
    });
    expect(a.sender_entropy.n).toBeGreaterThan(100);
    expect(a.attacks.timing.n).toBeGreaterThan(100);
    expect(strip(b)).toEqual(strip(a));
  });

  it('a trace ring too small for the walks: truncated walks and the event loop waiting on the worker', () => {
    const [a, b] = both({ clients: 300, layers: 3, layerSize: 3, duration: 20, warmup: 2, targets: 100, seed: 12, traceCapacity: 1024 });
    expect(a.sender_entropy.truncated).toBeGreaterThan(0);
    expect(strip(b)).toEqual(strip(a));
  });

  it('postmix model: fragments, ACKs, loss and every attack', () => {
    const sc: Partial<Scenario> = {
      clients: 60,
      layers: 2,
      layerSize: 3,
      gateways: 4,
      realRate: 0.05,
      messageBytes: 5000,
      rate: 2,
      loopRate: 0.5,
      dropRate: 0.5,
      mixLoopRate: 0.5,
      gatewayLoopRate: 0.5,
      duration: 60,
      warmup: 5,
      targets: 80,
      messageTargets: 20,
      withholdAcks: true,
      compromisedGateways: 0.5,
      compromised: 0.2,
      loss: 0.01,
      linkLatency: 0.002,
      // (13 until decoys joined the model: its draws changed, and 13 left the target no message to a withholding gateway)
      seed: 14,
    };
    const [a, b] = both(sc);
    expect(a.attacks.ack_withholding!.messages).toBeGreaterThan(0);
    expect(a.attacks.compromise!.messages).toBeGreaterThan(0);
    expect(strip(b)).toEqual(strip(a));
  });
});
