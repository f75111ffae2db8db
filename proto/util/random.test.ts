import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { csprngUniform, uniformInt } from './random.ts';

describe('csprngUniform', () => {
  it('draws in [0, 1) with 53-bit resolution, across many pool refills', () => {
    const n = 20_000; // ~40 refills of the 512-draw pool
    const seen = new Set<number>();
    let fine = 0;
    for (let i = 0; i < n; i++) {
      const u = csprngUniform();
      expect(u >= 0 && u < 1).toBe(true);
      seen.add(u);
      // a multiple of 2^-53 and not of 2^-32 most of the time: the low bits are used
      expect(Number.isInteger(u * 2 ** 53)).toBe(true);
      if (!Number.isInteger(u * 2 ** 32)) fine++;
    }
    expect(seen.size).toBe(n);
    expect(fine).toBeGreaterThan(n * 0.99);
  });

  it('is uniform: 64 equal bins pass a chi-square test (false alarm 1e-9)', () => {
    const bins = new Array<number>(64).fill(0);
    const n = 64_000;
    for (let i = 0; i < n; i++) bins[Math.floor(csprngUniform() * 64)]!++;
    const e = n / 64;
    const chi2 = bins.reduce((a, o) => a + (o - e) ** 2 / e, 0);
    expect(chi2).toBeLessThan(155.1); // chi-square, 63 d.o.f.: exceeded with probability 1e-9
  });

  it('uniformInt stays in range and refuses nonsense', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), (n) => {
        const v = uniformInt(n, csprngUniform);
        return Number.isInteger(v) && v >= 0 && v < n;
      }),
    );
    expect(uniformInt(5, () => 0.9999999999999999)).toBe(4);
    expect(() => uniformInt(0, csprngUniform)).toThrow(RangeError);
    expect(() => uniformInt(2.5, csprngUniform)).toThrow(RangeError);
  });
});
