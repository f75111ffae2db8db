/** uniforms drawn per refill of the buffer */
const BATCH = 64;

/**
 * Seeded, reproducible uniform generator: xoshiro128** (Blackman & Vigna) seeded through
 * splitmix32. Same seed, same numbers, bit for bit, on every platform (only 32-bit integer ops
 * and exact double arithmetic). next() returns a double in [0, 1) with 53 random bits.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private readonly buf = new Float64Array(BATCH);
  private pos = BATCH;

  constructor(seed: number) {
    let s = (Math.floor(seed) >>> 0) ^ Math.floor(seed / 4294967296);
    const split = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = split();
    this.b = split();
    this.c = split();
    this.d = split();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /**
   * Uniform double in [0, 1) with 53 bits: two 32-bit outputs, the high 27 and 26 bits of each.
   * Drawn BATCH at a time into a buffer (the generator's state stays in registers for the whole
   * batch instead of four property writes per output); the sequence is the same.
   */
  next(): number {
    if (this.pos === BATCH) this.refill();
    return this.buf[this.pos++]!;
  }

  private refill(): void {
    let a = this.a;
    let b = this.b;
    let c = this.c;
    let d = this.d;
    const buf = this.buf;
    for (let i = 0; i < BATCH; i++) {
      const hi = (Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0) >>> 5; // 27 bits
      let t = b << 9;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = rotl(d, 11);
      const lo = (Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0) >>> 6; // 26 bits
      t = b << 9;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = rotl(d, 11);
      buf[i] = (hi * 67108864 + lo) / 9007199254740992;
    }
    this.a = a;
    this.b = b;
    this.c = c;
    this.d = d;
    this.pos = 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** A bound `() => number` for the shared sampling rules in proto/mixing. */
  uniform(): () => number {
    return () => this.next();
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
