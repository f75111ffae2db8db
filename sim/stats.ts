/**
 * Means with 95 % confidence intervals over replicates (independent seeds): Student's t, so a
 * handful of replicates gets an honest, wider interval.
 */

// two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069,
  2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

export function tQuantile975(df: number): number {
  if (df < 1) return NaN;
  if (df <= 30) return T975[df - 1]!;
  // Cornish–Fisher expansion about the normal quantile; within 1e−3 of the table's values past 30
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df);
}

export interface MeanCi {
  mean: number;
  ci95: [number, number];
  n: number;
}

export function meanCi(xs: readonly number[]): MeanCi {
  const v = xs.filter((x) => Number.isFinite(x));
  const n = v.length;
  if (n === 0) return { mean: NaN, ci95: [NaN, NaN], n };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, ci95: [NaN, NaN], n };
  const sd = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
  const h = (tQuantile975(n - 1) * sd) / Math.sqrt(n);
  return { mean, ci95: [mean - h, mean + h], n };
}

/**
 * Folds R results of the same shape into one: every numeric leaf `x` becomes the mean over the
 * replicates, with `x_ci95: [lo, hi]` beside it (and `x_missing` when some replicates had no
 * value, e.g. an attack that did not succeed within the run). Arrays and strings are taken from
 * the first replicate unless listed in `drop`.
 */
export function foldReplicates(results: readonly unknown[], drop: ReadonlySet<string> = new Set()): unknown {
  const first = results[0];
  if (typeof first === 'number' || first === null) {
    const xs = results.map((r) => (typeof r === 'number' ? r : NaN));
    return meanCi(xs);
  }
  if (first === undefined || typeof first !== 'object' || Array.isArray(first)) return first;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(first as object)) {
    if (drop.has(key)) continue;
    const vals = results.map((r) => (r as Record<string, unknown>)[key]);
    const numeric = vals.some((v) => typeof v === 'number') && vals.every((v) => typeof v === 'number' || v === null);
    if (numeric) {
      const m = meanCi(vals.map((v) => (typeof v === 'number' ? v : NaN)));
      out[key] = m.mean;
      out[`${key}_ci95`] = m.ci95;
      const missing = vals.filter((v) => typeof v !== 'number' || !Number.isFinite(v)).length;
      if (missing > 0) out[`${key}_missing`] = missing;
    } else if (vals.every((v) => v !== null && typeof v === 'object' && !Array.isArray(v))) out[key] = foldReplicates(vals, drop);
    else out[key] = vals[0];
  }
  return out;
}
