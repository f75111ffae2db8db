import { describe, expect, it } from 'vitest';
import { AckStatus } from '../proto/fragment/index.ts';
import { ackStatusLabel } from './metrics.ts';

describe('gateway metric labels', () => {
  it('label ACK statuses by name, not by the number on the wire', () => {
    expect(ackStatusLabel(AckStatus.TokenRefused)).toBe('token-refused');
    expect(ackStatusLabel(AckStatus.Stored)).toBe('stored');
    const all = Object.values(AckStatus).filter((v): v is AckStatus => typeof v === 'number');
    const labels = all.map(ackStatusLabel);
    expect(new Set(labels).size).toBe(all.length);
    for (const l of labels) expect(l).toMatch(/^[a-z]+(-[a-z]+)*$/);
  });
});
