/**
 * The packets in flight, as a struct of arrays with a free list: no allocation per packet once
 * the arrays have grown to the network's working set. A packet's route is `nHops` pooled hops
 * (mixes, and for some kinds a gateway) in `nodes[p*H .. p*H+nHops-1]` with their delays, then
 * its destination, where it ends, in `nodes[p*H+nHops]`.
 */

import { grown } from './arrays.ts';

export const KIND_REAL = 0;
export const KIND_DROP = 1;
export const KIND_LOOP = 2;
export const KIND_MIXLOOP = 3;
/** A fragment of a message (postmix mode): forward route, the gateway, the ACK's route home. */
export const KIND_FRAGMENT = 4;
/** A gateway's own loop cover (λ_G): its pool, every layer, back to the gateway. */
export const KIND_GWLOOP = 5;

export class PacketTable {
  /** slots per packet in `nodes` / `delays` */
  readonly H: number;
  cap = 1024;
  hop: Int32Array;
  nHops: Int32Array;
  /** client index, or -1 - node for node-made packets */
  src: Int32Array;
  kind: Uint8Array;
  /** submission time (message queued), for latency */
  t0: Float64Array;
  /** forward-analysis target index, or -1 */
  target: Int32Array;
  /** head of the probability-mass list this packet carries, or -1 */
  mass: Int32Array;
  /** fragment id (postmix mode), or -1 */
  frag: Int32Array;
  /** number of the packet's newest trace record, or -1 */
  rec: Float64Array;
  nodes: Int32Array;
  delays: Float64Array;
  private freeTop = 0;
  private freeStack: Int32Array;
  private used = 0;

  constructor(hopsPerPacket: number) {
    this.H = hopsPerPacket;
    const c = this.cap;
    this.hop = new Int32Array(c);
    this.nHops = new Int32Array(c);
    this.src = new Int32Array(c);
    this.kind = new Uint8Array(c);
    this.t0 = new Float64Array(c);
    this.target = new Int32Array(c);
    this.mass = new Int32Array(c);
    this.frag = new Int32Array(c);
    this.rec = new Float64Array(c);
    this.nodes = new Int32Array(c * this.H);
    this.delays = new Float64Array(c * this.H);
    this.freeStack = new Int32Array(c);
  }

  alloc(): number {
    if (this.freeTop > 0) return this.freeStack[--this.freeTop]!;
    if (this.used === this.cap) this.grow();
    return this.used++;
  }

  free(p: number): void {
    this.freeStack[this.freeTop++] = p;
  }

  private grow(): void {
    const n = this.cap * 2;
    this.hop = grown(this.hop, n);
    this.nHops = grown(this.nHops, n);
    this.src = grown(this.src, n);
    this.kind = grown(this.kind, n);
    this.t0 = grown(this.t0, n);
    this.target = grown(this.target, n);
    this.mass = grown(this.mass, n);
    this.frag = grown(this.frag, n);
    this.rec = grown(this.rec, n);
    this.nodes = grown(this.nodes, n * this.H);
    this.delays = grown(this.delays, n * this.H);
    this.freeStack = grown(this.freeStack, n);
    this.cap = n;
  }
}
