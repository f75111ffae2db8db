/**
 * Byte helpers, one of each: equality (constant-time in the contents, so comparing a secret or a
 * MAC leaks at most its length), hex both ways, ordering, and a cheap string key for maps.
 */
import { timingSafeEqual } from 'node:crypto';

/** True when both hold the same bytes; the time taken depends only on the lengths. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Lower-case hex. */
export function hex(u: Uint8Array): string {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('hex');
}

/** The bytes of a hex string (either case); throws RangeError for anything else. */
export function fromHex(s: string): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(s)) throw new RangeError('not a hex string');
  return Uint8Array.from(Buffer.from(s, 'hex'));
}

/** The bytes of lower-case hex of exactly `n` bytes (as this code writes it); null for anything else. */
export function hexBytes(s: unknown, n: number): Uint8Array | null {
  return typeof s === 'string' && s.length === n * 2 && /^[0-9a-f]*$/.test(s) ? fromHex(s) : null;
}

/** Byte-wise order (shorter first on a common prefix), for sorting ids. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** The bytes as a map key, cheaply (latin1: one character per byte). */
export function bytesKey(u: Uint8Array): string {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('latin1');
}
