/**
 * The mix node's delay queue: holds each packet until the time its Sphinx header named, then
 * hands it to `onDue`. A binary min-heap on (due time, insertion order), so insert and pop are
 * O(log n) and packets due at the same instant leave in arrival order. ONE timer for the whole
 * queue, armed for the earliest due time and re-armed only when that changes.
 *
 * Memory is bounded by `maxBytes` (the sum of the `bytes` each entry declares, normally the
 * packet size) and optionally `maxEntries`; past either bound `push` drops the packet, counts
 * it and returns false. It never blocks and never stalls the queue.
 *
 * Accuracy: the timer is armed with setTimeout (ms granularity) on a monotonic clock
 * (performance.now); when it fires, every entry due by then is released in one pass, and an
 * early wake-up just re-arms. Typical lateness is 1-2 ms on an idle event loop; under load it
 * is whatever the event loop lag is (bench/link.ts measures it).
 */

export interface DelayQueueOptions<T> {
  /** Called for each entry when its time has come, in due-time order. Must not throw. */
  readonly onDue: (item: T, lateMs: number) => void;
  /** Bound on the sum of `bytes` over queued entries. */
  readonly maxBytes: number;
  /** Optional bound on the number of entries. */
  readonly maxEntries?: number;
  /** Monotonic clock in ms. Default: performance.now. */
  readonly now?: () => number;
  /** Arm the timer automatically (default true). With false, call `releaseDue()` yourself. */
  readonly autoTimer?: boolean;
}

export interface DelayQueueCounters {
  pushed: number;
  released: number;
  /** Dropped because of maxBytes / maxEntries. */
  droppedFull: number;
  /** Dropped by `clear()` (shutdown). */
  droppedCleared: number;
}

export class DelayQueue<T> {
  readonly counters: DelayQueueCounters = { pushed: 0, released: 0, droppedFull: 0, droppedCleared: 0 };
  // Heap as parallel arrays: fewer objects per packet, no per-entry allocation beyond the item.
  private due: number[] = [];
  private seq: number[] = [];
  private items: T[] = [];
  private sizes: number[] = [];
  private nextSeq = 0;
  private bytesQueued = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private closed = false;
  private readonly onDue: (item: T, lateMs: number) => void;
  private readonly maxBytes: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly autoTimer: boolean;
  private readonly fire = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    this.releaseDue();
  };

  constructor(opts: DelayQueueOptions<T>) {
    if (!(opts.maxBytes > 0)) throw new RangeError('maxBytes must be > 0');
    this.onDue = opts.onDue;
    this.maxBytes = opts.maxBytes;
    this.maxEntries = opts.maxEntries ?? Infinity;
    this.now = opts.now ?? (() => performance.now());
    this.autoTimer = opts.autoTimer ?? true;
  }

  get size(): number {
    return this.due.length;
  }

  get bytes(): number {
    return this.bytesQueued;
  }

  /** Due time (clock ms) of the next entry, or undefined when empty. */
  peekDue(): number | undefined {
    return this.due[0];
  }

  /**
   * Queues `item` to be released `delayMs` from now (0 or negative: at the next timer tick).
   * Returns false (and counts) when the queue is full or closed.
   */
  push(item: T, delayMs: number, bytes: number): boolean {
    if (this.closed || this.bytesQueued + bytes > this.maxBytes || this.due.length >= this.maxEntries) {
      this.counters.droppedFull++;
      return false;
    }
    const at = this.now() + (delayMs > 0 ? delayMs : 0);
    this.bytesQueued += bytes;
    this.counters.pushed++;
    const i = this.due.length;
    this.due.push(at);
    this.seq.push(this.nextSeq++);
    this.items.push(item);
    this.sizes.push(bytes);
    this.siftUp(i);
    if (this.autoTimer && at < this.timerAt) this.arm(at);
    return true;
  }

  /** Releases (calls onDue for) every entry due at `now`; returns how many. */
  releaseDue(now: number = this.now()): number {
    let n = 0;
    while (this.due.length > 0 && (this.due[0] as number) <= now) {
      const late = now - (this.due[0] as number);
      const item = this.popMin();
      n++;
      this.counters.released++;
      this.onDue(item, late);
    }
    if (this.autoTimer && !this.closed && this.due.length > 0) this.arm(this.due[0] as number);
    return n;
  }

  /** Removes and returns the earliest entry regardless of its due time (shutdown flush). */
  shift(): T | undefined {
    if (this.due.length === 0) return undefined;
    return this.popMin();
  }

  /** Stops the timer, drops everything (counted) and refuses further pushes. */
  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
    this.counters.droppedCleared += this.due.length;
    this.due = [];
    this.seq = [];
    this.items = [];
    this.sizes = [];
    this.bytesQueued = 0;
  }

  private arm(at: number): void {
    if (this.timer !== null) {
      if (this.timerAt <= at) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    const wait = Math.max(0, Math.ceil(at - this.now()));
    this.timer = setTimeout(this.fire, wait);
  }

  private less(a: number, b: number): boolean {
    const da = this.due[a] as number;
    const db = this.due[b] as number;
    return da < db || (da === db && (this.seq[a] as number) < (this.seq[b] as number));
  }

  private swap(a: number, b: number): void {
    const d = this.due,
      s = this.seq,
      it = this.items,
      z = this.sizes;
    const td = d[a] as number;
    d[a] = d[b] as number;
    d[b] = td;
    const ts = s[a] as number;
    s[a] = s[b] as number;
    s[b] = ts;
    const ti = it[a] as T;
    it[a] = it[b] as T;
    it[b] = ti;
    const tz = z[a] as number;
    z[a] = z[b] as number;
    z[b] = tz;
  }

  private siftUp(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  private siftDown(i: number): void {
    const n = this.due.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const m = r < n && this.less(r, l) ? r : l;
      if (!this.less(m, i)) break;
      this.swap(i, m);
      i = m;
    }
  }

  private popMin(): T {
    const item = this.items[0] as T;
    this.bytesQueued -= this.sizes[0] as number;
    const last = this.due.length - 1;
    if (last > 0) this.swap(0, last);
    this.due.pop();
    this.seq.pop();
    this.items.pop();
    this.sizes.pop();
    if (last > 0) this.siftDown(0);
    return item;
  }
}
