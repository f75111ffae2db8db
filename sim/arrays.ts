/** Typed-array helpers for the struct-of-arrays tables. */

/** A copy of `a` at length `n` (n >= a.length), the same element type. */
export function grown<T extends Int32Array | Float64Array | Uint8Array>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}
