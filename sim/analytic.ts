/**
 * Closed forms from the literature that the tests (and docs/sim.md) compare the simulator with.
 */

/**
 * Entropy (bits) of one continuous-time mix with Poisson(λ) arrivals and Exp(μ) delays, for
 * large λ/μ: H = log2(e·λ/μ) (Danezis, "The traffic analysis of continuous-time mixes",
 * PET 2004: H = log λ + differential entropy of the delay, which is 1 − ln μ nats for Exp(μ)).
 */
export function exponentialMixEntropyBits(lambda: number, mu: number): number {
  return Math.log2((Math.E * lambda) / mu);
}

/** CDF of Erlang(k, μ): the sum of k independent Exp(μ) per-hop delays. */
export function erlangCdf(x: number, k: number, mu: number): number {
  if (x <= 0) return 0;
  const y = mu * x;
  let term = 1;
  let sum = 1;
  for (let n = 1; n < k; n++) {
    term *= y / n;
    sum += term;
  }
  return 1 - Math.exp(-y) * sum;
}

/** Density of Erlang(k, μ). */
export function erlangPdf(x: number, k: number, mu: number): number {
  if (x < 0) return 0;
  let lg = 0;
  for (let n = 2; n < k; n++) lg += Math.log(n);
  return Math.exp(k * Math.log(mu) + (k - 1) * Math.log(Math.max(x, 1e-300)) - mu * x - lg);
}

/** The q-quantile of Erlang(k, μ), by bisection. */
export function erlangQuantile(q: number, k: number, mu: number): number {
  let lo = 0;
  let hi = (k + 20 * Math.sqrt(k) + 20) / mu;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (erlangCdf(mid, k, mu) < q) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/**
 * Loopix Lemma 1 (Piotrowska et al. 2017): with Poisson(λ) arrivals and Exp(μ) delays the
 * number of packets in a mix's pool is Poisson with mean λ/μ (an M/M/∞ queue in steady state).
 */
export function poissonPmf(n: number, mean: number): number {
  let lg = 0;
  for (let i = 2; i <= n; i++) lg += Math.log(i);
  return Math.exp(n * Math.log(mean) - mean - lg);
}

/**
 * The statistical disclosure attack's round bound (Danezis 2003; restated by Mathewson &
 * Dingledine 2004): with N recipients, batches of b messages, and a target sending to one of m
 * contacts uniformly, the adversary separates the contacts from the rest with confidence
 * parameter l (l = 2: about 95% per side) after t rounds in which the target sent, where
 *   t > [ m·( l·sqrt((N−1)/N²·(b−1)) + l·sqrt((N−1)/N²·(b−1) + (m−1)/m²) ) ]².
 */
export function sdaRoundBound(N: number, b: number, m: number, l: number): number {
  const noise = ((N - 1) / (N * N)) * (b - 1);
  const x = m * (l * Math.sqrt(noise) + l * Math.sqrt(noise + (m - 1) / (m * m)));
  return x * x;
}
