import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { erlangCdf, erlangQuantile, exponentialMixEntropyBits, poissonPmf } from './analytic.ts';
import { CalendarQueue } from './calendar.ts';
import { runSimulation } from './model.ts';
import { Rng } from './rng.ts';
import { makeScenario, ScenarioError } from './scenario.ts';

describe('rng and heap', () => {
  it('same seed gives the same numbers bit for bit, different seeds differ', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const xa = Array.from({ length: 1000 }, () => a.next());
    const xb = Array.from({ length: 1000 }, () => b.next());
    const xc = Array.from({ length: 1000 }, () => c.next());
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
    expect(xa.every((x) => x >= 0 && x < 1)).toBe(true);
    // uniform: mean 1/2 within 4 sd (sd = 1/sqrt(12·1000))
    const mean = xa.reduce((s, x) => s + x, 0) / xa.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(4 / Math.sqrt(12 * 1000));
  });

  it('the calendar queue pops in time order, across years and with pushes while it runs', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.double({ min: 0, max: 50, noNaN: true }), fc.boolean()), { maxLength: 300 }),
        fc.constantFrom(0.001, 0.05, 1),
        fc.constantFrom(2, 16, 1024),
        fc.constantFrom(1, 3, 48),
        (steps, width, buckets, slab) => {
          // every event pops at or after the time of the one before; each pop may push a later one
          // (small slabs: most events overflow into the buckets' lists)
          const q = new CalendarQueue(width, buckets, slab);
          const ref: number[] = [];
          let code = 0;
          for (const [dt] of steps.slice(0, steps.length >> 1)) {
            q.push(dt, code++);
            ref.push(dt);
          }
          let now = 0;
          const popped: number[] = [];
          let k = steps.length >> 1;
          while (q.size > 0) {
            const t = q.peekTime();
            expect(t).toBeGreaterThanOrEqual(now);
            now = t;
            q.pop();
            popped.push(t);
            const s = steps[k++];
            if (s) {
              // the same time again (a tie), or later, possibly years ahead
              const at = s[1] ? now : now + s[0];
              q.push(at, code++);
              ref.push(at);
            }
          }
          expect(q.peekTime()).toBe(Infinity);
          expect(popped).toEqual(ref.sort((x, y) => x - y));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('staging far pushes changes nothing: the same events pop in the same order, ties included', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.double({ min: 0, max: 50, noNaN: true }), fc.integer({ min: 0, max: 3 })), { maxLength: 400 }),
        fc.constantFrom(0.001, 0.05, 1),
        fc.constantFrom(16, 64, 1024),
        fc.constantFrom(1, 3, 48),
        fc.constantFrom(1, 2, 4),
        (steps, width, buckets, slab, stage) => {
          const run = (q: CalendarQueue): Array<[number, number]> => {
            let code = 0;
            for (const [dt] of steps.slice(0, steps.length >> 1)) q.push(dt, code++);
            const out: Array<[number, number]> = [];
            let k = steps.length >> 1;
            while (q.size > 0) {
              const t = q.peekTime();
              out.push([t, q.peekCode()]);
              q.pop();
              const s = steps[k++];
              // a tie now, a tie with a later event, or later (possibly years ahead); sometimes two
              if (s) for (let i = 0; i <= (s[1] & 1); i++) q.push(s[1] === 0 ? t : s[1] === 1 ? t + Math.floor(s[0]) * width : t + s[0], code++);
            }
            return out;
          };
          expect(run(new CalendarQueue(width, buckets, slab, stage))).toEqual(run(new CalendarQueue(width, buckets, slab, 0)));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a whole run is reproducible from its seed', () => {
    const sc = { clients: 20, duration: 60, warmup: 5, targets: 50, seed: 9, loopRate: 0.5, dropRate: 0.5, mixLoopRate: 1 };
    const a = runSimulation(sc, { keepSamples: true });
    const b = runSimulation(sc, { keepSamples: true });
    expect(a.samples).toEqual(b.samples);
    expect(a.events).toBe(b.events);
    expect(a.latency).toEqual(b.latency);
    const c = runSimulation({ ...sc, seed: 10 }, { keepSamples: true });
    expect(c.samples!.entropy).not.toEqual(a.samples!.entropy);
  });
});

describe('against the literature', () => {
  // One exponential mix (1 layer of 1 mix), Poisson arrivals λ = 100/s. Danezis (PET 2004):
  // H = log2(e·λ/μ). Tolerance 0.1 bit on the mean over 1500 targets (measured gap ≈ 0.03).
  it.each([5, 10, 30])('single exponential mix entropy at λ/μ = %d is log2(e·λ/μ) within 0.1 bit', (ratio) => {
    const lambda = 100;
    const r = runSimulation({ clients: 100, layers: 1, layerSize: 1, rate: 1, meanDelay: ratio / lambda, duration: 150, warmup: 15, targets: 1500, seed: 7 });
    expect(r.targets.finished).toBe(1500);
    expect(Math.abs(r.entropy.mean - exponentialMixEntropyBits(lambda, lambda / ratio))).toBeLessThan(0.1);
    expect(r.entropy.lost_mass).toBeLessThan(1e-6);
  });

  it('entropy grows with λ/μ by about log2 of the ratio', () => {
    const at = (ratio: number) =>
      runSimulation({ clients: 50, layers: 1, layerSize: 1, rate: 1, meanDelay: ratio / 50, duration: 120, warmup: 10, targets: 800, seed: 3 }).entropy.mean;
    expect(Math.abs(at(32) - at(4) - 3)).toBeLessThan(0.15);
  });

  // L exponential hops and no link latency: end-to-end latency is Erlang(L, μ).
  it('end-to-end latency of 3 hops is Erlang(3, μ): KS distance < 0.012, mean and p95/p99 within 2%', () => {
    const mu = 10;
    const r = runSimulation(
      { clients: 100, layers: 3, layerSize: 3, rate: 1, meanDelay: 1 / mu, duration: 400, warmup: 20, targets: 10, seed: 5 },
      { keepLatencies: true, keepSamples: true },
    );
    const xs = Float64Array.from(r.samples!.latencies!).sort();
    expect(xs.length).toBeGreaterThan(30000);
    let ks = 0;
    for (let i = 0; i < xs.length; i++) {
      const F = erlangCdf(xs[i]!, 3, mu);
      ks = Math.max(ks, Math.abs(F - i / xs.length), Math.abs(F - (i + 1) / xs.length));
    }
    expect(ks).toBeLessThan(0.012); // the 1% critical value at n > 30,000 is < 0.0095
    expect(Math.abs(r.latency.mean - 3 / mu) / (3 / mu)).toBeLessThan(0.02);
    expect(Math.abs(r.latency.p95 - erlangQuantile(0.95, 3, mu)) / erlangQuantile(0.95, 3, mu)).toBeLessThan(0.02);
    expect(Math.abs(r.latency.p99 - erlangQuantile(0.99, 3, mu)) / erlangQuantile(0.99, 3, mu)).toBeLessThan(0.03);
  });

  it('link latency and processing time add a constant per hop', () => {
    const r = runSimulation({
      clients: 50,
      layers: 2,
      layerSize: 2,
      rate: 1,
      meanDelay: 0.05,
      linkLatency: 0.02,
      processingTime: 0.005,
      duration: 200,
      warmup: 10,
      targets: 10,
      seed: 2,
    });
    // 2 pool delays + 3 links (client->l1, l1->l2, l2->gateway) + 2 processing times
    expect(Math.abs(r.latency.mean - (0.1 + 0.06 + 0.01))).toBeLessThan(0.003);
  });

  // Loopix Lemma 1: the pool of a mix with Poisson(λ) input and Exp(μ) delays is Poisson(λ/μ).
  it('pool size is Poisson(λ/μ) (Loopix Lemma 1): total variation < 0.02, mean within 2%', () => {
    const r = runSimulation({ clients: 200, layers: 2, layerSize: 4, rate: 1, meanDelay: 0.2, duration: 300, warmup: 20, targets: 10, seed: 11 });
    const mean = (200 / 4) * 0.2; // λ per mix = 50/s
    for (const hist of r.load.pool_size_hist) {
      let tv = 0;
      let pm = 0;
      for (let n = 0; n < Math.max(hist.length, 60); n++) ((tv += Math.abs((hist[n] ?? 0) - poissonPmf(n, mean))), (pm += n * (hist[n] ?? 0)));
      expect(tv / 2).toBeLessThan(0.02);
      expect(Math.abs(pm - mean) / mean).toBeLessThan(0.02);
    }
    for (const m of r.load.per_layer_pool_mean) expect(Math.abs(m - mean) / mean).toBeLessThan(0.02);
  });
});

describe('model behaviour', () => {
  it('a fully compromised network gives zero entropy, per packet and per sender', () => {
    const r = runSimulation({ clients: 30, duration: 60, warmup: 5, targets: 100, seed: 4, compromised: 1 });
    expect(r.entropy.mean).toBe(0);
    expect(r.sender_entropy.mean).toBe(0);
  });

  it('compromising mixes lowers anonymity; sender entropy is bounded by log2(N)', () => {
    const base = { clients: 50, duration: 120, warmup: 10, targets: 300, seed: 6 };
    const honest = runSimulation(base);
    const half = runSimulation({ ...base, compromised: 0.5 });
    expect(half.entropy.mean).toBeLessThan(honest.entropy.mean);
    expect(half.sender_entropy.mean).toBeLessThan(honest.sender_entropy.mean);
    expect(honest.sender_entropy.mean).toBeLessThanOrEqual(Math.log2(50));
    expect(honest.sender_entropy.truncated).toBe(0);
    expect(honest.targets.finished).toBe(300);
  });

  it('cover traffic: overhead matches the configured rates and raises anonymity', () => {
    // λ_P = 2 with real messages at 1/s: ~1 drop per real in the payload stream, plus λ_L + λ_D = 1
    const r = runSimulation({ clients: 40, rate: 2, realRate: 1, loopRate: 0.5, dropRate: 0.5, duration: 200, warmup: 20, targets: 200, seed: 8 });
    expect(Math.abs(r.overhead.cover_per_real - 2) / 2).toBeLessThan(0.05);
    const without = runSimulation({ clients: 40, rate: 1, duration: 200, warmup: 20, targets: 200, seed: 8 });
    expect(r.entropy.mean).toBeGreaterThan(without.entropy.mean + 0.5);
    // queueing in the payload stream adds latency on top of the Erlang mixing delay
    expect(r.latency.mean).toBeGreaterThan(without.latency.mean);
  });

  it('mix loop cover adds traffic and anonymity', () => {
    const base = { clients: 20, duration: 120, warmup: 10, targets: 200, seed: 12 };
    const a = runSimulation(base);
    const b = runSimulation({ ...base, mixLoopRate: 20 });
    expect(b.overhead.mix_loop).toBeGreaterThan(0);
    expect(b.entropy.mean).toBeGreaterThan(a.entropy.mean);
  });

  it('timing correlation beats guessing with short delays and fades with long ones', () => {
    const fast = runSimulation({ clients: 50, rate: 0.2, meanDelay: 0.01, duration: 200, warmup: 10, targets: 300, seed: 13 });
    const slow = runSimulation({ clients: 50, rate: 0.2, meanDelay: 2, duration: 200, warmup: 10, targets: 300, seed: 13 });
    expect(fast.attacks.timing.top1).toBeGreaterThan(10 * fast.attacks.timing.baseline_top1);
    expect(slow.attacks.timing.top1).toBeLessThan(fast.attacks.timing.top1);
  });

  it('cascade is no better than stratified; free-route runs and tracks every target', () => {
    const base = { clients: 60, layers: 3, layerSize: 3, duration: 120, warmup: 10, targets: 300, seed: 14 };
    const s = runSimulation(base);
    const c = runSimulation({ ...base, topology: 'cascade' });
    const f = runSimulation({ ...base, topology: 'free-route' });
    expect(c.entropy.mean).toBeLessThan(s.entropy.mean);
    expect(f.targets.finished).toBe(300);
    expect(f.entropy.mean).toBeGreaterThan(0);
  });

  // Threshold mix of n (batch of n, uniform permutation): every output carries 1/n, so H = log2 n
  // exactly. Threshold pool mix keeping f of n at each flush (Serjantov & Danezis, PET 2002):
  // outputs of the r-th flush after the target arrived carry (1/n)(f/n)^(r−1), which gives
  // H = log2 n + f/(n−f)·log2(n/f). Both are exact, so the tolerance is 1e-6 bit.
  it.each([
    [8, 0],
    [8, 4],
    [10, 3],
  ])('threshold pool mix n=%d keep=%d: entropy log2 n + f/(n−f)·log2(n/f) exactly', (n, f) => {
    const r = runSimulation({
      clients: 50,
      layers: 1,
      layerSize: 1,
      mix: 'threshold',
      threshold: n,
      poolKeep: f,
      duration: 80,
      warmup: 5,
      targets: 200,
      seed: 15,
    });
    const want = Math.log2(n) + (f > 0 ? (f / (n - f)) * Math.log2(n / f) : 0);
    expect(r.targets.finished).toBeGreaterThan(190);
    expect(Math.abs(r.entropy.mean - want)).toBeLessThan(1e-6);
    expect(Math.abs(r.entropy.p5 - want)).toBeLessThan(1e-6);
  });

  it('rejects bad scenarios', () => {
    expect(() => makeScenario({ meanDelay: 0 })).toThrow(ScenarioError);
    expect(() => makeScenario({ warmup: 10, duration: 5 })).toThrow(ScenarioError);
    expect(() => makeScenario({ rate: 1, realRate: 1 })).toThrow(ScenarioError);
    expect(() => makeScenario({ clients: 1.5 })).toThrow(ScenarioError);
    expect(() => makeScenario({ mix: 'threshold', threshold: 4, poolKeep: 4 })).toThrow(ScenarioError);
  });
});
