/** Durations on the command line: "90d", "12h", "30m", "45s", plain seconds, or "never" (0). */
export function parseDuration(s: string, what = 'duration'): number {
  const t = s.trim().toLowerCase();
  if (t === 'never' || t === '0') return 0;
  const m = /^(\d+)\s*(d|h|m|s)?$/.exec(t);
  if (!m) throw new Error(`${what}: "${s}" is not a duration (e.g. 90d, 12h, 30m, 3600, never)`);
  return Number(m[1]) * { d: 86_400, h: 3600, m: 60, s: 1 }[(m[2] ?? 's') as 'd' | 'h' | 'm' | 's'];
}

/** Seconds as the largest whole unit: "90d", "36h", "1800s"; 0 is "never". */
export function formatDuration(s: number): string {
  if (s === 0) return 'never';
  for (const [u, n] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
  ] as const)
    if (s % n === 0) return `${s / n}${u}`;
  return `${s}s`;
}
