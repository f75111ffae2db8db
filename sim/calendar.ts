/**
 * The event queue: a calendar queue (Brown, CACM 1988) of time-stamped integer codes. Time is
 * cut into buckets of `width` seconds; a bucket is an unsorted linked list of the events that
 * fall in it (in any "year" of `buckets` × `width` seconds), and only the bucket being run is
 * kept as a small binary heap. A push is O(1) (a link into its bucket); a pop is O(log b) in the
 * bucket's b events, and the scan moves bucket by bucket in time order. With the width set so a
 * bucket holds a few dozen events, this costs a fraction of a binary heap over every pending
 * event, whose sift-downs miss the cache once the heap outgrows it.
 *
 * Order: by time; events at exactly the same time leave in an order that depends only on the
 * sequence of pushes and pops, so a run is reproducible bit for bit. No allocation per event:
 * the items live in typed arrays with a free list, which double when full.
 */
import { grown } from './arrays.ts';

export class CalendarQueue {
  private readonly invW: number;
  private readonly mask: number;
  private readonly head: Int32Array;
  // bucketed items
  private itT: Float64Array;
  private itC: Int32Array;
  private itNext: Int32Array;
  private freeTop = -1;
  private used = 0;
  private bucketed = 0;
  // the bucket being run, as a binary heap
  private fT: Float64Array;
  private fC: Int32Array;
  private fN = 0;
  /** the absolute number (floor(t / width)) of the bucket in the front heap */
  private cur = 0;

  /**
   * `width`: seconds per bucket; `buckets`: a power of two, the year being `buckets` × `width`
   * (events further ahead wait in their bucket for their year).
   */
  constructor(
    readonly width: number,
    readonly buckets: number,
  ) {
    if (!(width > 0) || buckets < 2 || (buckets & (buckets - 1)) !== 0) throw new Error('calendar queue: width > 0 and a power-of-two bucket count');
    this.invW = 1 / width;
    this.mask = buckets - 1;
    this.head = new Int32Array(buckets).fill(-1);
    this.itT = new Float64Array(1024);
    this.itC = new Int32Array(1024);
    this.itNext = new Int32Array(1024);
    this.fT = new Float64Array(256);
    this.fC = new Int32Array(256);
  }

  /** Bucket width and count for events at about `rate` per second, most within `span` seconds of now. */
  static sized(rate: number, span: number): CalendarQueue {
    const width = Math.max(1e-9, 24 / Math.max(rate, 1e-9));
    const want = Math.ceil(Math.max(span, 0) / width);
    let n = 1 << 10;
    while (n < want && n < 1 << 22) n <<= 1;
    return new CalendarQueue(width, n);
  }

  get size(): number {
    return this.fN + this.bucketed;
  }

  push(time: number, code: number): void {
    const a = Math.floor(time * this.invW);
    if (a <= this.cur) return this.frontPush(time, code);
    let e = this.freeTop;
    if (e >= 0) this.freeTop = this.itNext[e]!;
    else {
      if (this.used === this.itT.length) this.growItems();
      e = this.used++;
    }
    const s = (a | 0) & this.mask;
    this.itT[e] = time;
    this.itC[e] = code;
    this.itNext[e] = this.head[s]!;
    this.head[s] = e;
    this.bucketed++;
  }

  /** Time of the earliest event (Infinity when empty). */
  peekTime(): number {
    if (this.fN === 0 && !this.advance()) return Infinity;
    return this.fT[0]!;
  }

  /** Code of the earliest event; call after peekTime(). */
  peekCode(): number {
    return this.fC[0]!;
  }

  /** Removes the earliest event (after peekTime()). */
  pop(): void {
    const n = --this.fN;
    if (n <= 0) return;
    const t = this.fT;
    const c = this.fC;
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

  private frontPush(time: number, code: number): void {
    if (this.fN === this.fT.length) {
      this.fT = grown(this.fT, 2 * this.fN);
      this.fC = grown(this.fC, 2 * this.fN);
    }
    const t = this.fT;
    const c = this.fC;
    let i = this.fN++;
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

  /** Moves to the next bucket holding events of its year; false when the queue is empty. */
  private advance(): boolean {
    if (this.bucketed === 0) return false;
    const itT = this.itT;
    const itNext = this.itNext;
    const invW = this.invW;
    let scanned = 0;
    for (;;) {
      const a = ++this.cur;
      const s = (a | 0) & this.mask;
      let e = this.head[s]!;
      let keep = -1;
      while (e >= 0) {
        const nx = itNext[e]!;
        const t = itT[e]!;
        if (Math.floor(t * invW) <= a) {
          this.frontPush(t, this.itC[e]!);
          itNext[e] = this.freeTop;
          this.freeTop = e;
          this.bucketed--;
        } else {
          itNext[e] = keep;
          keep = e;
        }
        e = nx;
      }
      this.head[s] = keep;
      if (this.fN > 0) return true;
      if (++scanned > this.mask) {
        // a whole year without an event: jump to the earliest one
        this.cur = Math.floor(this.minBucketed() * invW) - 1;
        scanned = 0;
      }
    }
  }

  private minBucketed(): number {
    let m = Infinity;
    for (let s = 0; s <= this.mask; s++) for (let e = this.head[s]!; e >= 0; e = this.itNext[e]!) if (this.itT[e]! < m) m = this.itT[e]!;
    return m;
  }

  private growItems(): void {
    const n = this.itT.length * 2;
    this.itT = grown(this.itT, n);
    this.itC = grown(this.itC, n);
    this.itNext = grown(this.itNext, n);
  }
}
