/**
 * The one source of uniform numbers for every random choice whose effect an adversary can see:
 * routes, per-hop delays, send times of the Poisson streams, cover, resend backoff, loop routes.
 *
 * Why not the engine's built-in generator: V8's is xorshift128+ with 128 bits of state, and each
 * output shows 52 of them; a first-layer mix sees the exact delay (a function of one draw) and
 * the next hop of every packet a client sends, so after a few dozen packets it can solve for the
 * state and predict that client's later routes, delays and send times, real or cover
 * (test/adversary-randomness.test.ts plays that attack). So production code never calls it
 * (test/no-math-random.test.ts checks the tree); seeded generators live in `sim/` and tests.
 *
 * Each draw takes 53 bits from the operating system's CSPRNG (node:crypto `randomFillSync`,
 * OpenSSL's RAND_bytes) and divides by 2^53, the resolution of a double in [0, 1). The bytes come
 * from a pool refilled 4 KiB at a time, because one `randomBytes` call has a fixed cost of about
 * a microsecond and a packet needs ~15 draws (`npm run bench -- random` compares the built-in
 * generator, one randomBytes call per draw, this pool and a ChaCha20 DRBG). Every word is zeroed
 * once read, so a later disclosure of the process memory does not reveal draws already made.
 */
import { randomFillSync } from 'node:crypto';
import type { Uniform } from '../mixing/params.ts';

const POOL_WORDS = 1024; // 4 KiB: 512 draws per refill
const TWO_POW_32 = 2 ** 32;
const TWO_POW_53 = 2 ** 53;

const pool = new Uint32Array(POOL_WORDS);
let next = POOL_WORDS;

/** A uniform number in [0, 1) with 53 random bits from the OS CSPRNG. */
export const csprngUniform: Uniform = () => {
  if (next + 2 > POOL_WORDS) {
    randomFillSync(pool);
    next = 0;
  }
  const hi = pool[next]! >>> 11; // 21 bits
  const lo = pool[next + 1]!; // 32 bits
  pool[next] = 0;
  pool[next + 1] = 0;
  next += 2;
  return (hi * TWO_POW_32 + lo) / TWO_POW_53;
};

/**
 * A uniform integer in [0, n) from `uniform` (n ≥ 1). floor(u·n) with 53-bit u is off from
 * uniform by at most n / 2^53 per value, far below anything observable for the layer sizes,
 * gateway counts and lists this picks from.
 */
export function uniformInt(n: number, uniform: Uniform): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`uniformInt: n must be an integer >= 1, got ${n}`);
  return Math.min(n - 1, Math.floor(uniform() * n));
}
