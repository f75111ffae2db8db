/**
 * The event queue: a binary min-heap on time over two parallel typed arrays (time, event code).
 * No allocation per push or pop; the arrays double when full. Ties pop in an unspecified but
 * deterministic order (the heap is deterministic given the same push sequence).
 */
export class EventHeap {
  private t: Float64Array;
  private c: Int32Array;
  size = 0;

  constructor(capacity = 1024) {
    this.t = new Float64Array(capacity);
    this.c = new Int32Array(capacity);
  }

  push(time: number, code: number): void {
    if (this.size === this.t.length) this.grow();
    const t = this.t;
    const c = this.c;
    let i = this.size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pt = t[p]!;
      if (pt <= time) break;
      t[i] = pt;
      c[i] = c[p]!;
      i = p;
    }
    t[i] = time;
    c[i] = code;
  }

  /** Time of the earliest event (Infinity when empty). */
  peekTime(): number {
    return this.size > 0 ? this.t[0]! : Infinity;
  }

  /** Code of the earliest event; call before pop(). */
  peekCode(): number {
    return this.c[0]!;
  }

  /** Removes the earliest event. */
  pop(): void {
    const n = --this.size;
    if (n <= 0) return;
    const t = this.t;
    const c = this.c;
    const lt = t[n]!;
    const lc = c[n]!;
    let i = 0;
    const half = n >> 1;
    while (i < half) {
      let k = 2 * i + 1;
      let kt = t[k]!;
      const r = k + 1;
      if (r < n) {
        const rt = t[r]!;
        if (rt < kt) {
          k = r;
          kt = rt;
        }
      }
      if (kt >= lt) break;
      t[i] = kt;
      c[i] = c[k]!;
      i = k;
    }
    t[i] = lt;
    c[i] = lc;
  }

  private grow(): void {
    const t = new Float64Array(this.t.length * 2);
    t.set(this.t);
    const c = new Int32Array(this.c.length * 2);
    c.set(this.c);
    this.t = t;
    this.c = c;
  }
}
