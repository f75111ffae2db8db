import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ackTimeoutBaseMs, DEFAULT_RETRANSMIT, nominalRetransmitMs, retransmitDelayMs } from './retransmit.ts';

describe('retransmission policy', () => {
  it('the base is the Erlang mean of both routes × factor + margin', () => {
    expect(ackTimeoutBaseMs(4, 4, 10, { factor: 1, marginMs: 0, maxMs: 1e9 })).toBe(800);
    expect(ackTimeoutBaseMs(4, 4, 10)).toBe(3 * 800 + 5000);
  });

  it('the nominal wait doubles per attempt up to the cap', () => {
    const p = { factor: 3, marginMs: 5000, maxMs: 60_000 };
    expect([1, 2, 3, 4, 5].map((k) => nominalRetransmitMs(k, 7_400, p))).toEqual([7_400, 14_800, 29_600, 59_200, 60_000]);
    expect(nominalRetransmitMs(1000, 7_400, p)).toBe(60_000);
    expect(() => nominalRetransmitMs(0, 7_400, p)).toThrow(RangeError);
  });

  it('the drawn wait is uniform in [T/2, 3T/2): its ends come from the ends of the uniform', () => {
    expect(retransmitDelayMs(1, 10_000, () => 0)).toBe(5_000);
    expect(retransmitDelayMs(1, 10_000, () => 1 - 2 ** -53)).toBe(15_000);
    expect(retransmitDelayMs(3, 10_000, () => 0.5)).toBe(40_000);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 1e7 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (k, base, u) => {
          const t = nominalRetransmitMs(k, base, DEFAULT_RETRANSMIT);
          const d = retransmitDelayMs(k, base, () => u, DEFAULT_RETRANSMIT);
          return d >= Math.floor(t / 2) && d <= Math.ceil(1.5 * t);
        },
      ),
    );
  });
});
