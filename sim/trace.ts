/**
 * The global passive adversary's view of every link, kept as a bounded ring buffer of records in
 * time order: a packet entering a node's pool (arrival) or leaving it (departure). The backward
 * analyses walk it from a departure back.
 *
 * Records are numbered from 0 in the order written (`written` counts them); the ring keeps the
 * last `capacity`. Each record stores how many records back the same packet's previous record
 * is, so a walk follows a packet by arithmetic and knows a link is broken (overwritten) when it
 * points past the records the walk may read. The arrays can live in shared memory
 * (`SharedArrayBuffer`), so the analyses can read the trace on another thread while the event
 * loop writes it: `limit` is the first record number the writer may not write until a reader
 * says it is done with the records it would overwrite (`onFull`).
 */

export const TR_ARRIVE = 0;
export const TR_DEPART = 1;

/** Arrival sources (`aux` of an arrival): a client index >= 0, or one of these. */
export const SRC_MIX = -1;
/** made by the node itself and entering its own pool unseen (mix or gateway loop cover) */
export const SRC_SELF = -2;
/** sent by a gateway (an ACK, a gateway's loop, a mix loop passing through) */
export const SRC_GATEWAY = -3;

/** A departure's `aux` with this bit set: the packet leaves the mix network (a mix to a gateway). */
export const AUX_EXIT = 1 << 30;
/** A departure's pool size: `aux & AUX_POOL`. */
export const AUX_POOL = AUX_EXIT - 1;
/**
 * Links this many records back or more are not kept (`back` 0). Links past the ring are kept
 * (a walk tells them from its `avail`), so the forward replay can follow a packet that waited
 * longer than the ring holds.
 */
export const BACK_MAX = 1 << 30;

/** Bytes of shared memory per trace record (three Int32 fields). */
export const TRACE_RECORD_BYTES = 12;

export class TraceRing {
  readonly capacity: number;
  /** node * 2 + type */
  readonly nodeType: Int32Array;
  /** departure: pool size before leaving (`AUX_POOL`), `AUX_EXIT` if it leaves the mix network; arrival: source */
  readonly aux: Int32Array;
  /** records back to the same packet's previous record (a departure's arrival at that node, an arrival's departure from the node before); 0: none (or `BACK_MAX` or more) */
  readonly back: Int32Array;
  /** ring slot of the next record */
  head = 0;
  /** records written in all (the ring keeps the last `capacity`) */
  written = 0;
  /** the writer calls `onFull` before writing record number `limit` */
  limit = Infinity;
  onFull: (w: number) => void = () => {};

  constructor(capacity: number, buffer?: SharedArrayBuffer) {
    this.capacity = capacity;
    const buf = buffer ?? new ArrayBuffer(capacity * TRACE_RECORD_BYTES);
    this.nodeType = new Int32Array(buf, 0, capacity);
    this.aux = new Int32Array(buf, 4 * capacity, capacity);
    this.back = new Int32Array(buf, 8 * capacity, capacity);
  }

  static shared(capacity: number): TraceRing {
    return new TraceRing(capacity, new SharedArrayBuffer(capacity * TRACE_RECORD_BYTES));
  }

  /** Records the walk that starts at the newest record may read (the ring's fill). */
  get count(): number {
    return Math.min(this.written, this.capacity);
  }

  /** Appends a record; `prev` is the number of the same packet's previous record (−1: none). Returns its number. */
  push(node: number, type: number, aux: number, prev: number): number {
    const w = this.written;
    if (w >= this.limit) this.onFull(w);
    const h = this.head;
    this.nodeType[h] = node * 2 + type;
    this.aux[h] = aux;
    const d = w - prev;
    this.back[h] = prev >= 0 && d < BACK_MAX ? d : 0;
    this.head = h + 1 === this.capacity ? 0 : h + 1;
    this.written = w + 1;
    return w;
  }
}

/** Bytes of shared memory per entry (time and client). */
export const ENTRY_BYTES = 12;

/** First-hop entries of client packets only (time, client): what the timing attacks scan. */
export class EntryRing {
  readonly capacity: number;
  readonly time: Float64Array;
  readonly client: Int32Array;
  head = 0;
  written = 0;
  limit = Infinity;
  onFull: (w: number) => void = () => {};

  constructor(capacity: number, buffer?: SharedArrayBuffer) {
    this.capacity = capacity;
    const buf = buffer ?? new ArrayBuffer(capacity * ENTRY_BYTES);
    this.time = new Float64Array(buf, 0, capacity);
    this.client = new Int32Array(buf, 8 * capacity, capacity);
  }

  static shared(capacity: number): EntryRing {
    return new EntryRing(capacity, new SharedArrayBuffer(capacity * ENTRY_BYTES));
  }

  get count(): number {
    return Math.min(this.written, this.capacity);
  }

  push(t: number, client: number): void {
    const w = this.written;
    if (w >= this.limit) this.onFull(w);
    const h = this.head;
    this.time[h] = t;
    this.client[h] = client;
    this.head = h + 1 === this.capacity ? 0 : h + 1;
    this.written = w + 1;
  }
}
