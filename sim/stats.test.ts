import { describe, expect, it } from 'vitest';
import { foldReplicates, meanCi, tQuantile975 } from './stats.ts';

describe('confidence intervals over replicates', () => {
  it("Student's t quantiles", () => {
    expect(tQuantile975(1)).toBe(12.706);
    expect(tQuantile975(9)).toBe(2.262);
    expect(Math.abs(tQuantile975(40) - 2.021)).toBeLessThan(0.002);
    expect(Math.abs(tQuantile975(1000) - 1.962)).toBeLessThan(0.002);
  });

  it('mean ± t·s/√n', () => {
    const m = meanCi([1, 2, 3, 4, 5]);
    expect(m.mean).toBe(3);
    const h = (2.776 * Math.sqrt(2.5)) / Math.sqrt(5);
    expect(m.ci95[0]).toBeCloseTo(3 - h, 12);
    expect(m.ci95[1]).toBeCloseTo(3 + h, 12);
    expect(meanCi([7]).ci95.every(Number.isNaN)).toBe(true);
  });

  it('covers the true mean about 95% of the time', () => {
    let seed = 7;
    const u = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 4294967296;
    let hit = 0;
    const trials = 2000;
    for (let i = 0; i < trials; i++) {
      const xs = Array.from({ length: 8 }, () => u() + u() + u()); // mean 1.5
      const { ci95 } = meanCi(xs);
      if (ci95[0] <= 1.5 && 1.5 <= ci95[1]) hit++;
    }
    expect(Math.abs(hit / trials - 0.95)).toBeLessThan(0.02);
  });

  it('folds results field by field: numbers get _ci95, nulls count as missing', () => {
    const f = foldReplicates([
      { entropy: { mean: 1 }, sda: { t: null }, name: 'x', arr: [1] },
      { entropy: { mean: 3 }, sda: { t: 4 }, name: 'y', arr: [2] },
    ]) as Record<string, any>;
    expect(f.entropy.mean).toBe(2);
    expect(f.entropy.mean_ci95[0]).toBeLessThan(2);
    expect(f.sda.t).toBe(4);
    expect(f.sda.t_missing).toBe(1);
    expect(f.name).toBe('x');
    expect(f.arr).toEqual([1]);
  });
});
