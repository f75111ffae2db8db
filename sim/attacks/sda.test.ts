import { describe, expect, it } from 'vitest';
import { sdaRoundBound } from '../analytic.ts';
import { runSda } from './sda.ts';

describe('statistical disclosure attack', () => {
  // Danezis (2003): t > [m(l·sqrt((N−1)/N²·(b−1)) + l·sqrt((N−1)/N²·(b−1) + (m−1)/m²))]².
  // The bound separates one contact from the noise with confidence l; naming all m contacts
  // against all N−m others (and staying right) needs somewhat more. Stated tolerance: the
  // median number of rounds lies between the l = 1 bound and twice the l = 2 bound.
  it.each([
    [100, 10, 5],
    [200, 20, 4],
    [1000, 50, 10],
  ])('N=%d b=%d m=%d: median rounds within [bound(l=1), 2·bound(l=2)]', (N, b, m) => {
    const r = runSda({ N, b, m, realProb: 1, cover: false, maxRounds: 3000, trials: 150, seed: 3 });
    expect(r.success_by_horizon).toBe(1);
    expect(r.median_rounds).toBeGreaterThan(sdaRoundBound(N, b, m, 1));
    expect(r.median_rounds).toBeLessThan(2 * sdaRoundBound(N, b, m, 2));
  });

  it('cover traffic makes the attack need more rounds', () => {
    const p = { N: 100, b: 10, m: 5, realProb: 0.3, maxRounds: 20000, trials: 60, seed: 5 };
    const cover = runSda({ ...p, cover: true });
    const none = runSda({ ...p, cover: false });
    expect(cover.median_rounds).toBeGreaterThan(1.5 * none.median_rounds);
    // without cover the attack needs the same number of real rounds as at realProb = 1
    const full = runSda({ ...p, realProb: 1, cover: false });
    const med = (xs: number[]) => [...xs].sort((a, c) => a - c)[Math.floor(xs.length / 2)]!;
    expect(med(none.targetRounds) / full.median_rounds).toBeGreaterThan(0.6);
    expect(med(none.targetRounds) / full.median_rounds).toBeLessThan(1.6);
  });
});
