/**
 * One convention for time on every command line (testnet and sim alike): a duration is a
 * number with a unit — `50ms`, `0.05s`, `2m`, `1h`, `90d`, `250us` — and a bare number is seconds.
 */
import { InvalidArgumentError } from 'commander';

const UNIT_SECONDS: Record<string, number> = { us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600, d: 86_400 };

export class DurationError extends Error {
  override readonly name = 'DurationError';
}

/** Seconds in `text` (`50ms`, `0.05s`, `2m`, `600`); throws DurationError on anything else. */
export function parseDuration(text: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(us|µs|ms|s|m|h|d)?\s*$/i.exec(text);
  if (!m) throw new DurationError(`not a duration: "${text}" (give a number and a unit: 50ms, 0.05s, 2m; a bare number is seconds)`);
  const unit = (m[2] ?? 's').toLowerCase();
  const v = Number(m[1]) * UNIT_SECONDS[unit]!;
  if (!Number.isFinite(v)) throw new DurationError(`not a finite duration: "${text}"`);
  return v;
}

/** Prints seconds the way the flags take them back (`50ms`, `1.5s`; whole minutes, hours, days as `2m`, `36h`, `90d`). */
export function formatDuration(seconds: number): string {
  if (seconds !== 0 && Math.abs(seconds) < 1) return `${+(seconds * 1000).toPrecision(6)}ms`;
  for (const [unit, n] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
  ] as const)
    if (Math.abs(seconds) >= n && seconds % n === 0) return `${seconds / n}${unit}`;
  return `${+seconds.toPrecision(6)}s`;
}

/** A commander parser for a duration flag, in seconds, within [min, max] seconds. */
export function durationOption(flag: string, min = 0, max = Infinity): (v: string) => number {
  return (v: string) => {
    let s: number;
    try {
      s = parseDuration(v);
    } catch (e) {
      throw new InvalidArgumentError(`${flag}: ${(e as Error).message}`);
    }
    if (s < min || s > max)
      throw new InvalidArgumentError(
        `${flag}: ${formatDuration(s)} is outside ${formatDuration(min)}..${formatDuration(max)} (a bare number is seconds${/^\s*[0-9.]+\s*$/.test(v) ? `; did you mean ${v}ms?` : ''})`,
      );
    return s;
  };
}
