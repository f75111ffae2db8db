import { describe, expect, it } from 'vitest';
import { spreadOverOutage, spreadTimes } from './authority-outage.ts';

describe('submission times of an outage or a soak', () => {
  it('spreads the overlay messages evenly and sends the others at the start', () => {
    expect(spreadTimes([true, false, true, true, false], 1000, 3000)).toEqual([1000, 1000, 2000, 3000, 1000]);
    expect(spreadTimes([true], 1000, 3000)).toEqual([3000]);
  });

  it('puts the last overlay message of an outage past the old expiry, even when the outage is short', () => {
    const t = { downAt: 0, oldExpiryMs: 17_000, validUntilMs: 39_000 };
    // 25 s outage, 10 s epochs: from 1 s to 20 s in
    expect(spreadOverOutage([true, true, true, true], t, 25, 10)).toEqual([1000, 7333.333333333333, 13666.666666666666, 20000]);
    // an outage that would end before the old expiry: the last one still goes after it
    expect(spreadOverOutage([true, true], t, 12, 10).at(-1)).toBe(19_000);
  });
});
