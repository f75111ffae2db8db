/**
 * The event queue: a calendar queue (Brown, CACM 1988) of time-stamped integer codes. Time is
 * cut into buckets of `width` seconds; a bucket holds, unsorted, the events that fall in it (in
 * any "year" of `buckets` × `width` seconds), and only the bucket being run is kept as a small
 * binary heap. A push is O(1) (an append to its bucket); a pop is O(log b) in the bucket's b
 * events, and the scan moves bucket by bucket in time order. With the width set so a bucket
 * holds a few dozen events, this costs a fraction of a binary heap over every pending event,
 * whose sift-downs miss the cache once the heap outgrows it.
 *
 * A bucket's events live in its own slab of `slab` slots, contiguous, so moving a bucket to the
 * front reads a few consecutive cache lines (which the hardware prefetches) instead of chasing a
 * linked list through memory, one dependent miss per event; a bucket with more events than its
 * slab (rare: the width makes the mean a half of it) or with events of later years keeps the
 * rest in a linked overflow list.
 *
 * Pushes far ahead are staged (Brown's queue writes each into a random bucket of a year that
 * spans tens or hundreds of megabytes at a million clients: a cache and TLB miss per push). The
 * buckets are grouped in blocks of `2^stage` consecutive buckets; a push whose block is two or
 * more blocks ahead of the running bucket's is appended to that block's staging list (chunks
 * of consecutive slots: the few hundred lists' tails stay in cache), and the block's list is
 * placed into its buckets, in push order, when the running bucket enters the block before it.
 * A bucket therefore sees the same pushes in the same order as without staging, and before
 * the same pops: the queue pops exactly what the unstaged queue pops, ties included.
 *
 * Order: by time; events at exactly the same time leave in an order that depends only on the
 * sequence of pushes and pops, so a run is reproducible bit for bit. No allocation per event:
 * the slabs are allocated once, the overflow items live in typed arrays with a free list, which
 * double when full.
 */
import { grown } from './arrays.ts';

/** slots per bucket's slab, by default; `sized` aims at half of it per bucket */
const SLAB = 48;
/** buckets per staging block, log2, by default (0: no staging) */
const STAGE = 5;
/** slots per staging chunk, log2 */
const CHUNK_BITS = 6;
const CHUNK = 1 << CHUNK_BITS;

export class CalendarQueue {
  private readonly invW: number;
  private readonly mask: number;
  private readonly slab: number;
  /** events in each bucket's slab */
  private readonly count: Int32Array;
  // the slabs, 16 bytes per slot in one buffer: bucket s's slot i holds its time at
  // slT[2j] and its code at slC[4j + 2], j = s·slab + i
  private readonly slT: Float64Array;
  private readonly slC: Int32Array;
  /** first overflow item of each bucket (−1: none) */
  private readonly head: Int32Array;
  // overflow items, 16 bytes each in one buffer: item e's time at itT[2e], its code at
  // itI[4e + 2], the next item of its bucket at itI[4e + 3]
  private itT: Float64Array;
  private itI: Int32Array;
  private freeTop = -1;
  private used = 0;
  private bucketed = 0;
  // the bucket being run, as a binary heap
  private fT: Float64Array;
  private fC: Int32Array;
  private fN = 0;
  /** the absolute number (floor(t / width)) of the bucket in the front heap */
  private cur = 0;
  // staging: log2 of buckets per block (0: off), blocks − 1, per block its chunk list (head,
  // tail, slots used in the tail); chunk c's slot i holds its time at stT[2j] and its code at
  // stC[4j + 2], j = c·CHUNK + i, and the next chunk at chNext[c]
  private readonly stage: number;
  private readonly blockMask: number;
  private readonly bHead: Int32Array;
  private readonly bTail: Int32Array;
  private readonly bFill: Int32Array;
  private stT: Float64Array;
  private stC: Int32Array;
  private chNext: Int32Array;
  private chFree = -1;
  private chUsed = 0;
  /**
   * Called with the front heap's codes (`codes[0 .. n−1]`) each time a bucket moves to the
   * front, before any of its events is popped: the caller may touch what the events will read,
   * so that the bucket's cache misses overlap instead of coming one per event.
   */
  onBucket: ((codes: Int32Array, n: number) => void) | null = null;

  /**
   * `width`: seconds per bucket; `buckets`: a power of two, the year being `buckets` × `width`
   * (events further ahead wait in their bucket for their year); `slab`: slots per bucket;
   * `stage`: log2 of the buckets per staging block (0, or fewer than 4 blocks: no staging).
   */
  constructor(
    readonly width: number,
    readonly buckets: number,
    slab = SLAB,
    stage = STAGE,
  ) {
    if (!(width > 0) || buckets < 2 || (buckets & (buckets - 1)) !== 0) throw new Error('calendar queue: width > 0 and a power-of-two bucket count');
    if (!(slab >= 1) || !Number.isInteger(slab)) throw new Error('calendar queue: slab >= 1 slots');
    if (!(stage >= 0) || !Number.isInteger(stage)) throw new Error('calendar queue: stage >= 0');
    const blocks = stage > 0 ? buckets >>> stage : 0;
    this.stage = blocks >= 4 ? stage : 0;
    this.blockMask = this.stage > 0 ? blocks - 1 : 0;
    const nb = this.stage > 0 ? blocks : 0;
    this.bHead = new Int32Array(nb).fill(-1);
    this.bTail = new Int32Array(nb).fill(-1);
    this.bFill = new Int32Array(nb).fill(CHUNK);
    const chunks = this.stage > 0 ? 16 : 0;
    const st = new ArrayBuffer(chunks * CHUNK * 16);
    this.stT = new Float64Array(st);
    this.stC = new Int32Array(st);
    this.chNext = new Int32Array(chunks);
    this.invW = 1 / width;
    this.mask = buckets - 1;
    this.slab = slab;
    this.count = new Int32Array(buckets);
    const slabs = new ArrayBuffer(buckets * slab * 16);
    this.slT = new Float64Array(slabs);
    this.slC = new Int32Array(slabs);
    this.head = new Int32Array(buckets).fill(-1);
    const items = new ArrayBuffer(1024 * 16);
    this.itT = new Float64Array(items);
    this.itI = new Int32Array(items);
    this.fT = new Float64Array(256);
    this.fC = new Int32Array(256);
  }

  /**
   * Bucket width and count for events at about `rate` per second, most within `span` seconds of
   * now. At most 2^18 buckets (200 MB of slabs); past that the year is shorter than `span` and
   * the few events beyond it wait in the overflow lists.
   */
  static sized(rate: number, span: number): CalendarQueue {
    const width = Math.max(1e-9, SLAB / 2 / Math.max(rate, 1e-9));
    const want = Math.ceil(Math.max(span, 0) / width);
    let n = 1 << 10;
    while (n < want && n < 1 << 18) n <<= 1;
    return new CalendarQueue(width, n);
  }

  get size(): number {
    return this.fN + this.bucketed;
  }

  push(time: number, code: number): void {
    const a = Math.floor(time * this.invW);
    if (a <= this.cur) return this.frontPush(time, code);
    const s = (a | 0) & this.mask;
    this.bucketed++;
    const st = this.stage;
    if (st > 0) {
      const b = s >>> st;
      if (((b - (((this.cur | 0) & this.mask) >>> st)) & this.blockMask) >= 2) return this.staged(b, time, code);
    }
    this.place(s, time, code);
  }

  /** (time, code) into bucket `s`: its slab, or its overflow list when the slab is full. */
  private place(s: number, time: number, code: number): void {
    const k = this.count[s]!;
    if (k < this.slab) {
      const i = s * this.slab + k;
      this.slT[2 * i] = time;
      this.slC[4 * i + 2] = code;
      this.count[s] = k + 1;
      return;
    }
    this.head[s] = this.overflow(time, code, this.head[s]!);
  }

  /** Appends (time, code) to block `b`'s staging list. */
  private staged(b: number, time: number, code: number): void {
    let k = this.bFill[b]!;
    let c = this.bTail[b]!;
    if (k === CHUNK) {
      const n = this.newChunk();
      if (c >= 0) this.chNext[c] = n;
      else this.bHead[b] = n;
      this.bTail[b] = n;
      c = n;
      k = 0;
    }
    const j = (c << CHUNK_BITS) + k;
    this.stT[2 * j] = time;
    this.stC[4 * j + 2] = code;
    this.bFill[b] = k + 1;
  }

  private newChunk(): number {
    let c = this.chFree;
    if (c >= 0) this.chFree = this.chNext[c]!;
    else {
      if (this.chUsed === this.chNext.length) {
        const n = 2 * this.chUsed;
        const st = new ArrayBuffer(n * CHUNK * 16);
        new Uint8Array(st).set(new Uint8Array(this.stT.buffer));
        this.stT = new Float64Array(st);
        this.stC = new Int32Array(st);
        this.chNext = grown(this.chNext, n);
      }
      c = this.chUsed++;
    }
    this.chNext[c] = -1;
    return c;
  }

  /** Block `b`'s staged events into their buckets, in the order they were pushed. */
  private flush(b: number): void {
    let c = this.bHead[b]!;
    if (c < 0) return;
    const tail = this.bTail[b]!;
    const fill = this.bFill[b]!;
    const stT = this.stT;
    const stC = this.stC;
    const invW = this.invW;
    const mask = this.mask;
    for (;;) {
      const n = c === tail ? fill : CHUNK;
      for (let j = c << CHUNK_BITS, end = j + n; j < end; j++) {
        const t = stT[2 * j]!;
        this.place((Math.floor(t * invW) | 0) & mask, t, stC[4 * j + 2]!);
      }
      const nx = this.chNext[c]!;
      this.chNext[c] = this.chFree;
      this.chFree = c;
      if (c === tail) break;
      c = nx;
    }
    this.bHead[b] = -1;
    this.bTail[b] = -1;
    this.bFill[b] = CHUNK;
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

  /**
   * Moves to the next bucket holding events of its year; false when the queue is empty. A
   * bucket's events enter the front heap newest first: its overflow list, then its slab from the
   * top. Events of a later year stay behind, in the overflow list.
   */
  private advance(): boolean {
    if (this.bucketed === 0) return false;
    const slT = this.slT;
    const slC = this.slC;
    const invW = this.invW;
    let scanned = 0;
    const st = this.stage;
    for (;;) {
      const a = ++this.cur;
      const s = (a | 0) & this.mask;
      // entering a block: the block after it stops staging
      if (st > 0 && (s & ((1 << st) - 1)) === 0) this.flush(((s >>> st) + 1) & this.blockMask);
      // (read per bucket: keeping an event of a later year may grow the overflow arrays)
      const itT = this.itT;
      const itI = this.itI;
      let e = this.head[s]!;
      let keep = -1;
      while (e >= 0) {
        const nx = itI[4 * e + 3]!;
        const t = itT[2 * e]!;
        if (Math.floor(t * invW) <= a) {
          this.frontPush(t, itI[4 * e + 2]!);
          itI[4 * e + 3] = this.freeTop;
          this.freeTop = e;
          this.bucketed--;
        } else {
          itI[4 * e + 3] = keep;
          keep = e;
        }
        e = nx;
      }
      const k = this.count[s]!;
      if (k > 0) {
        const base = s * this.slab;
        for (let i = base + k - 1; i >= base; i--) {
          const t = slT[2 * i]!;
          if (Math.floor(t * invW) <= a) {
            this.frontPush(t, slC[4 * i + 2]!);
            this.bucketed--;
          } else keep = this.overflow(t, slC[4 * i + 2]!, keep);
        }
        this.count[s] = 0;
      }
      this.head[s] = keep;
      if (this.fN > 0) {
        this.onBucket?.(this.fC, this.fN);
        return true;
      }
      if (++scanned > this.mask) {
        // a whole year without an event: jump to the earliest one
        this.cur = Math.floor(this.minBucketed() * invW) - 1;
        scanned = 0;
      }
    }
  }

  /** A new overflow item (time, code) in front of list `next`; returns it. */
  private overflow(time: number, code: number, next: number): number {
    let e = this.freeTop;
    if (e >= 0) this.freeTop = this.itI[4 * e + 3]!;
    else {
      if (2 * this.used === this.itT.length) this.growItems();
      e = this.used++;
    }
    this.itT[2 * e] = time;
    this.itI[4 * e + 2] = code;
    this.itI[4 * e + 3] = next;
    return e;
  }

  private minBucketed(): number {
    let m = Infinity;
    for (let s = 0; s <= this.mask; s++) {
      for (let e = this.head[s]!; e >= 0; e = this.itI[4 * e + 3]!) if (this.itT[2 * e]! < m) m = this.itT[2 * e]!;
      for (let i = s * this.slab, end = i + this.count[s]!; i < end; i++) if (this.slT[2 * i]! < m) m = this.slT[2 * i]!;
    }
    return m;
  }

  private growItems(): void {
    const items = new ArrayBuffer(this.itT.length * 16);
    new Uint8Array(items).set(new Uint8Array(this.itT.buffer));
    this.itT = new Float64Array(items);
    this.itI = new Int32Array(items);
  }
}
