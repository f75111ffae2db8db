/** Small shared helpers for benchmark suites. Benchmarks print figures; they never assert them. */

export interface BenchOptions {
  readonly json: boolean;
  readonly quick: boolean;
  readonly log: (line: string) => void;
}

export interface BenchReport {
  readonly suite: string;
  readonly machine: { readonly node: string; readonly cpus: number; readonly cpu: string };
  readonly results: Record<string, unknown>;
}

import os from 'node:os';

export function machineInfo(): BenchReport['machine'] {
  const cpus = os.cpus();
  return { node: process.version, cpus: cpus.length, cpu: cpus[0]?.model ?? 'unknown' };
}

/**
 * Runs `fn` repeatedly for about `seconds` (after a warm-up) and returns operations per second.
 * `fn` returns how many operations it did, so batched loops count correctly.
 */
export function opsPerSecond(fn: () => number, seconds: number): { opsPerSec: number; ops: number; seconds: number } {
  const warmEnd = performance.now() + Math.min(200, seconds * 200);
  while (performance.now() < warmEnd) fn();
  let ops = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  let now = start;
  while (now < end) {
    ops += fn();
    now = performance.now();
  }
  const elapsed = (now - start) / 1000;
  return { opsPerSec: ops / elapsed, ops, seconds: elapsed };
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
