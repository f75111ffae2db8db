/**
 * The statistical disclosure attack (Danezis 2003; Mathewson & Dingledine 2004), as its own
 * round-based model. Each round a batch of b messages leaves the mix: b−1 from other senders to
 * recipients uniform over N, and the target's message, to one of its m contacts uniformly.
 * The adversary sees the recipients of every round in which it sees the target send, adds them
 * up and names the m most frequent recipients (the SDA estimate b·Ō − (b−1)·u ranks exactly as
 * the raw counts, since u is uniform).
 *
 * With cover traffic the target is seen sending every round: a real message with probability
 * `realProb`, otherwise a drop-cover packet that reaches no recipient. The adversary cannot tell
 * which rounds were real, so it adds up every round. Without cover the target is seen only in
 * its real rounds (on average one in 1/realProb rounds).
 *
 * "Rounds needed" is the number of mix rounds after which the named set equals the true
 * contacts and stays equal up to the horizon (so a lucky early hit does not count).
 */
import { Rng } from '../rng.ts';

export interface SdaParams {
  /** recipients */
  N: number;
  /** batch size (messages per round, the target's included) */
  b: number;
  /** the target's contacts */
  m: number;
  /** the probability that the target has a real message in a round */
  realProb: number;
  /** the target sends cover in the rounds it has nothing real to send */
  cover: boolean;
  /** rounds simulated per trial (the horizon) */
  maxRounds: number;
  trials: number;
  seed: number;
}

export interface SdaReport {
  params: SdaParams;
  /** mix rounds needed, per trial (Infinity when not reached within the horizon) */
  rounds: number[];
  /** rounds in which the target really sent, needed, per trial */
  targetRounds: number[];
  median_rounds: number;
  p90_rounds: number;
  success_by_horizon: number;
  /** success fraction (named set correct at that round) against mix rounds, for plots */
  curve: Array<{ rounds: number; success: number }>;
}

export function runSda(p: SdaParams): SdaReport {
  const { N, b, m, maxRounds, trials } = p;
  if (!(N > m && m >= 1 && b >= 1 && maxRounds >= 1 && trials >= 1 && p.realProb > 0 && p.realProb <= 1))
    throw new Error('sda: need N > m >= 1, b >= 1, 0 < realProb <= 1, maxRounds >= 1, trials >= 1');
  const rng = new Rng(p.seed);
  const counts = new Int32Array(N);
  const isContact = new Uint8Array(N);
  const rounds: number[] = [];
  const targetRounds: number[] = [];
  const checkpoints: number[] = [];
  for (let r = 1; r <= maxRounds; r = Math.max(r + 1, Math.ceil(r * 1.15))) checkpoints.push(r);
  const hits = new Float64Array(checkpoints.length);
  for (let trial = 0; trial < trials; trial++) {
    counts.fill(0);
    isContact.fill(0);
    const contacts: number[] = [];
    while (contacts.length < m) {
      const c = rng.int(N);
      if (isContact[c] === 0) {
        isContact[c] = 1;
        contacts.push(c);
      }
    }
    let maxOther = 0;
    let lastWrong = 0;
    let seenRounds = 0;
    let realSoFar = 0;
    const realAt: number[] = [];
    let cp = 0;
    for (let r = 1; r <= maxRounds; r++) {
      const real = rng.next() < p.realProb;
      if (real) realSoFar++;
      realAt.push(realSoFar);
      if (real || p.cover) {
        seenRounds++;
        for (let i = 0; i < b - 1; i++) {
          const x = rng.int(N);
          const v = ++counts[x]!;
          if (isContact[x] === 0 && v > maxOther) maxOther = v;
        }
        if (real) counts[contacts[rng.int(m)]!]!++;
      }
      let minContact = Infinity;
      for (const c of contacts) if (counts[c]! < minContact) minContact = counts[c]!;
      const ok = seenRounds > 0 && minContact > maxOther;
      if (!ok) lastWrong = r;
      if (cp < checkpoints.length && checkpoints[cp] === r) {
        if (ok) hits[cp]!++;
        cp++;
      }
    }
    const need = lastWrong < maxRounds ? lastWrong + 1 : Infinity;
    rounds.push(need);
    targetRounds.push(Number.isFinite(need) ? realAt[need - 1]! : Infinity);
  }
  const sorted = [...rounds].sort((a, c) => a - c);
  const q = (f: number) => sorted[Math.min(sorted.length - 1, Math.floor(f * sorted.length))]!;
  return {
    params: p,
    rounds,
    targetRounds,
    median_rounds: q(0.5),
    p90_rounds: q(0.9),
    success_by_horizon: rounds.filter(Number.isFinite).length / trials,
    curve: checkpoints.map((r, i) => ({ rounds: r, success: hits[i]! / trials })),
  };
}
