/**
 * The packets in flight, with a free list: no allocation per packet once the table has grown to
 * the network's working set. A packet's route is `nHops` pooled hops (mixes, and for some kinds a
 * gateway) with their delays, then its destination, where it ends.
 *
 * Each packet is one record of a single buffer (array of structs): its integer fields and its
 * route's nodes first, then its doubles (newest trace record, the hops' delays, the submission
 * time), `stride` bytes in all, a multiple of the 64-byte cache line. An event touches one packet
 * chosen by the queue, i.e. a cold packet: with a field per array (struct of arrays) that cost a
 * cache miss per field read (about nine per hop), with one record it costs two or three. Read
 * the fields through the two views: integers at `i32[p * IS + I_*]` (nodes from `I_NODES`),
 * doubles at `f64[p * FS + FO + F_*]` (delays from `F_DELAYS`). With 3 layers a record is
 * 192 bytes: the integers and the route in the first line, the record number, t0 and the first
 * six delays in the second.
 */

export const KIND_REAL = 0;
export const KIND_DROP = 1;
export const KIND_LOOP = 2;
export const KIND_MIXLOOP = 3;
/** A fragment of a message (postmix mode): forward route, the gateway, the ACK's route home. */
export const KIND_FRAGMENT = 4;
/** A gateway's own loop cover (λ_G): its pool, every layer, back to the gateway. */
export const KIND_GWLOOP = 5;
/**
 * A decoy (postmix mode): the payload stream's cover, routed as a fragment is (forward route, a
 * random gateway that answers it through its SURB, the reply's route home), without a message.
 */
export const KIND_DECOY = 6;

// integer fields
/** the pooled hop the packet is at (== nHops: on the way to its destination) */
export const I_HOP = 0;
export const I_NHOPS = 1;
/** client index, or -1 - node for node-made packets */
export const I_SRC = 2;
export const I_KIND = 3;
/** forward-analysis target index, or -1 */
export const I_TARGET = 4;
/** head of the probability-mass list this packet carries, or -1 */
export const I_MASS = 5;
/** fragment id (postmix mode), or -1 */
export const I_FRAG = 6;
/** the route: nodes of hops 0 .. nHops−1, then the destination (H slots) */
export const I_NODES = 8;

// double fields
/** number of the packet's newest trace record, or -1 (past 2^31 in long runs) */
export const F_REC = 0;
/** submission time (message queued), for latency */
export const F_T0 = 1;
/** each pooled hop's delay (H − 1 slots) */
export const F_DELAYS = 2;

const LINE = 64;

export class PacketTable {
  /** route slots per packet (pooled hops and the destination) */
  readonly H: number;
  /** bytes per packet record */
  readonly stride: number;
  /** Int32 slots per record (`i32[p * IS]` is packet p's first integer) */
  readonly IS: number;
  /** Float64 slots per record, and the offset of the first double in a record */
  readonly FS: number;
  readonly FO: number;
  cap = 1024;
  i32: Int32Array;
  f64: Float64Array;
  private freeTop = 0;
  private freeStack: Int32Array;
  private used = 0;

  constructor(hopsPerPacket: number) {
    const H = (this.H = hopsPerPacket);
    const intBytes = Math.ceil((4 * (I_NODES + H)) / 8) * 8;
    // doubles: the record number, t0, H − 1 delays (a route's last slot is its destination)
    this.stride = Math.ceil((intBytes + 8 * (F_DELAYS + Math.max(0, H - 1))) / LINE) * LINE;
    this.IS = this.stride / 4;
    this.FS = this.stride / 8;
    this.FO = intBytes / 8;
    const buf = new ArrayBuffer(this.cap * this.stride);
    this.i32 = new Int32Array(buf);
    this.f64 = new Float64Array(buf);
    this.freeStack = new Int32Array(this.cap);
  }

  alloc(): number {
    if (this.freeTop > 0) return this.freeStack[--this.freeTop]!;
    if (this.used === this.cap) this.grow();
    return this.used++;
  }

  free(p: number): void {
    this.freeStack[this.freeTop++] = p;
  }

  /** Head of the mass list packet `p` carries (−1: none). */
  mass(p: number): number {
    return this.i32[p * this.IS + I_MASS]!;
  }

  setMass(p: number, e: number): void {
    this.i32[p * this.IS + I_MASS] = e;
  }

  private grow(): void {
    const n = this.cap * 2;
    const buf = new ArrayBuffer(n * this.stride);
    new Uint8Array(buf).set(new Uint8Array(this.i32.buffer));
    this.i32 = new Int32Array(buf);
    this.f64 = new Float64Array(buf);
    const fs = new Int32Array(n);
    fs.set(this.freeStack);
    this.freeStack = fs;
    this.cap = n;
  }
}
