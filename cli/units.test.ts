import { InvalidArgumentError } from 'commander';
import { describe, expect, it } from 'vitest';
import { DurationError, durationOption, formatDuration, parseDuration } from './units.ts';

describe('durations on the command line', () => {
  it('take a unit, and a bare number is seconds', () => {
    expect(parseDuration('50ms')).toBeCloseTo(0.05, 15);
    expect(parseDuration('0.05s')).toBeCloseTo(0.05, 15);
    expect(parseDuration('0.05')).toBeCloseTo(0.05, 15);
    expect(parseDuration('2m')).toBe(120);
    expect(parseDuration('1h')).toBe(3600);
    expect(parseDuration('90d')).toBe(90 * 86_400);
    expect(parseDuration('250us')).toBeCloseTo(250e-6, 15);
    expect(parseDuration(' 1e-3 s ')).toBeCloseTo(0.001, 15);
    for (const bad of ['', 'ms', '5 parsecs', '-1s', '1,5s', 'NaN']) expect(() => parseDuration(bad)).toThrow(DurationError);
  });

  it('print back in a form they parse to the same value', () => {
    for (const s of [0.05, 0.0001, 1.5, 600, 0, 129_600, 90 * 86_400, 1800]) expect(parseDuration(formatDuration(s))).toBeCloseTo(s, 12);
  });

  it('flag parsers bound the value and say what a bare number meant', () => {
    const p = durationOption('--mean-delay', 0.001, 10);
    expect(p('50ms')).toBeCloseTo(0.05, 15);
    expect(() => p('50')).toThrow(InvalidArgumentError);
    expect(() => p('50')).toThrow(/did you mean 50ms/);
    expect(() => p('xyz')).toThrow(/not a duration/);
  });
});
