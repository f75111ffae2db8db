/**
 * Streaming summary of a positive quantity in bounded memory: exact count, mean, min and max,
 * and quantiles from log-spaced bins with relative width 0.1% between 1e-6 and 1e6 (values
 * outside are clamped into the end bins). Quantiles are accurate to about 0.05% relative.
 */
const LO = 1e-6;
const REL = 0.001;
const LOG_STEP = Math.log1p(REL);
const NBINS = Math.ceil(Math.log(1e6 / LO) / LOG_STEP) + 2;

export class LogHistogram {
  readonly bins = new Float64Array(NBINS);
  count = 0;
  sum = 0;
  min = Infinity;
  max = -Infinity;

  add(x: number, weight = 1): void {
    this.count += weight;
    this.sum += x * weight;
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
    let i = x <= LO ? 0 : Math.floor(Math.log(x / LO) / LOG_STEP) + 1;
    if (i >= NBINS) i = NBINS - 1;
    this.bins[i]! += weight;
  }

  mean(): number {
    return this.count > 0 ? this.sum / this.count : NaN;
  }

  /** The q-quantile (0..1), bin midpoint (geometric), clamped to [min, max]. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const want = q * this.count;
    let acc = 0;
    for (let i = 0; i < NBINS; i++) {
      acc += this.bins[i]!;
      if (acc >= want && this.bins[i]! > 0) {
        const v = i === 0 ? LO : LO * Math.exp((i - 0.5) * LOG_STEP);
        return Math.min(this.max, Math.max(this.min, v));
      }
    }
    return this.max;
  }

  /** Empirical CDF sampled at `points` log-spaced values between min and max (for plots). */
  cdf(points = 200): Array<{ x: number; p: number }> {
    if (this.count === 0) return [];
    const out: Array<{ x: number; p: number }> = [];
    const lo = Math.max(this.min, LO);
    const hi = Math.max(this.max, lo * 1.0001);
    let acc = 0;
    let bin = 0;
    for (let k = 0; k < points; k++) {
      const x = lo * Math.pow(hi / lo, k / (points - 1));
      const lim = Math.min(NBINS - 1, Math.floor(Math.log(x / LO) / LOG_STEP) + 1);
      while (bin <= lim) acc += this.bins[bin++]!;
      out.push({ x, p: acc / this.count });
    }
    return out;
  }
}

/** Sorts a copy and reads the q-quantile by linear interpolation (for per-target arrays). */
export function quantileOf(xs: ArrayLike<number>, q: number): number {
  const a = Float64Array.from(xs).sort();
  if (a.length === 0) return NaN;
  const pos = q * (a.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(a.length - 1, lo + 1);
  return a[lo]! + (a[hi]! - a[lo]!) * (pos - lo);
}

export function meanOf(xs: ArrayLike<number>): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s / xs.length;
}
