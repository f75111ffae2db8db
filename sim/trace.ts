/**
 * The global passive adversary's view of every link, kept as a bounded ring buffer of records in
 * time order: a packet entering a node's pool (arrival) or leaving it (departure). The backward
 * analyses walk it from the newest record back.
 */

export const TR_ARRIVE = 0;
export const TR_DEPART = 1;

/** Arrival sources (`aux` of an arrival): a client index >= 0, or one of these. */
export const SRC_MIX = -1;
/** made by the node itself and entering its own pool unseen (mix or gateway loop cover) */
export const SRC_SELF = -2;
/** sent by a gateway (an ACK, a gateway's loop, a mix loop passing through) */
export const SRC_GATEWAY = -3;

export class TraceRing {
  readonly capacity: number;
  readonly time: Float64Array;
  readonly serial: Int32Array;
  /** node * 2 + type */
  readonly nodeType: Int32Array;
  /** departure: pool size before leaving; arrival: source */
  readonly aux: Int32Array;
  /**
   * The ring index of the same packet's previous record (a departure's arrival at that node, an
   * arrival's departure from the node before), or −1: the backward walk follows a packet by
   * index instead of looking its serial up.
   */
  readonly link: Int32Array;
  head = 0;
  count = 0;
  /** records written in all (the ring keeps the last `capacity`) */
  written = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.time = new Float64Array(capacity);
    this.serial = new Int32Array(capacity);
    this.nodeType = new Int32Array(capacity);
    this.aux = new Int32Array(capacity);
    this.link = new Int32Array(capacity);
  }

  /** Appends a record; returns its ring index. */
  push(t: number, serial: number, node: number, type: number, aux: number, link: number): number {
    const h = this.head;
    this.time[h] = t;
    this.serial[h] = serial;
    this.nodeType[h] = node * 2 + type;
    this.aux[h] = aux;
    this.link[h] = link;
    this.head = h + 1 === this.capacity ? 0 : h + 1;
    if (this.count < this.capacity) this.count++;
    this.written++;
    return h;
  }
}

/** First-hop entries of client packets only (time, client): what the timing attacks scan. */
export class EntryRing {
  readonly capacity: number;
  readonly time: Float64Array;
  readonly client: Int32Array;
  head = 0;
  count = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.time = new Float64Array(capacity);
    this.client = new Int32Array(capacity);
  }

  push(t: number, client: number): void {
    const h = this.head;
    this.time[h] = t;
    this.client[h] = client;
    this.head = h + 1 === this.capacity ? 0 : h + 1;
    if (this.count < this.capacity) this.count++;
  }
}
