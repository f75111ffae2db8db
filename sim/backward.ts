/**
 * Backward analysis (sender anonymity): for a packet leaving the mix network, the adversary's
 * probability of each client being its sender. It is the transpose of the forward pool map
 * (doubly stochastic, so with a uniform prior the posterior is its column), computed by walking
 * the link trace from the packet's departure back in time:
 *  - a departure from an honest pool of n packets, reversed: if the departing packet carries
 *    weight w, the pool gets w/n spread over everything in it, and every other departure leaves
 *    (n−1)/n of the pool's weight behind;
 *  - an arrival into an honest pool, reversed: the arriving packet takes the pool's weight;
 *    from a client that is evidence for the client, from a mix it becomes pending on that
 *    packet's previous departure, from a node's own cover or a gateway it is accounted to no
 *    client;
 *  - a compromised node passes each packet's weight through unchanged.
 * Pending weight sits on the trace record it belongs to (each record links to the same
 * packet's previous one), so the walk needs no lookup by packet. It ends when all weight has
 * reached a source (to 1e−9), or at the end of the ring buffer (then the result is counted as
 * truncated).
 */
import { AUX_POOL, SRC_MIX, TR_DEPART, type TraceRing } from './trace.ts';

/** (n − 1)/n for pool sizes below KEEP */
const KEEP = 1 << 16;
const keep = Float64Array.from({ length: KEEP }, (_, n) => (n === 0 ? 0 : (n - 1) / n));

export interface SenderPosterior {
  /** clients with weight, and their probabilities (summing to 1) */
  readonly clients: Int32Array;
  readonly probs: Float64Array;
  readonly entropy: number;
  readonly truncated: boolean;
}

/** What a walk yields without the per-client arrays (for the per-packet metric). */
export interface SenderSummary {
  /** clients with weight */
  touched: number;
  entropy: number;
  truncated: boolean;
}

export class BackwardWalker {
  private readonly score: Float64Array;
  private readonly touched: Int32Array;
  private nTouched = 0;
  private tot = 0;
  private readonly B: Float64Array;
  /**
   * weight pending on each trace record of the walk's window, at slot (record number mod
   * `window`), and the slots written in this walk
   */
  private readonly pend: Float64Array;
  private written: Int32Array;
  /** trace records visited, and walks made (for the benchmark) */
  visited = 0;
  walks = 0;

  constructor(
    private readonly trace: TraceRing,
    private readonly compromised: Uint8Array,
    clients: number,
    /** the most records a walk reads back (the trace's capacity unless the ring is larger than a walk's reach) */
    private readonly window = trace.capacity,
  ) {
    this.score = new Float64Array(clients);
    this.touched = new Int32Array(clients);
    this.B = new Float64Array(compromised.length);
    this.pend = new Float64Array(window);
    this.written = new Int32Array(1024);
  }

  /** The sender posterior of the packet whose departure is record `start` (default: the newest), reading back at most `avail` records. */
  walk(start = this.trace.written - 1, avail = Math.min(this.trace.count, this.window)): SenderPosterior {
    const truncated = this.run(start, avail);
    const clients = new Int32Array(this.nTouched);
    const probs = new Float64Array(this.nTouched);
    const entropy = this.collect(clients, probs);
    return { clients, probs, entropy, truncated };
  }

  /** The same walk, keeping only the entropy (no allocation); `out` is filled and returned. */
  summary(start: number, avail: number, out: SenderSummary): SenderSummary {
    out.truncated = this.run(start, avail);
    out.touched = this.nTouched;
    out.entropy = this.collect(null, null);
    return out;
  }

  /** The last walk's entropy, its clients and probabilities into the arrays if given; clears the scores. */
  private collect(clients: Int32Array | null, probs: Float64Array | null): number {
    const n = this.nTouched;
    const score = this.score;
    const touched = this.touched;
    const tot = this.tot;
    let h = 0;
    for (let j = 0; j < n; j++) {
      const c = touched[j]!;
      const q = tot > 0 ? score[c]! / tot : 0;
      if (clients !== null) {
        clients[j] = c;
        probs![j] = q;
      }
      if (q > 0) h -= q * Math.log2(q);
      score[c] = 0;
    }
    return h;
  }

  /** The walk itself: leaves the clients' weights in `score`/`touched`; returns whether it ran out of trace. */
  private run(start: number, avail: number): boolean {
    const tr = this.trace;
    const { nodeType, aux, back } = tr;
    const comp = this.compromised;
    const B = this.B;
    const score = this.score;
    const touched = this.touched;
    const pend = this.pend;
    const TC = tr.capacity;
    const PW = this.window;
    B.fill(0);
    let nTouched = 0;
    let nWritten = 0;
    let acc = 0;
    // i: the record's ring slot; j: its slot in `pend`
    let i = start % TC;
    let j = start % PW;
    pend[j] = 1;
    let written = this.written;
    written[nWritten++] = j;
    let k = 0;
    for (; k < avail && acc < 1 - 1e-9; k++) {
      const nt = nodeType[i]!;
      const node = nt >> 1;
      const w0 = pend[j]!;
      const d = back[i]!;
      const ii = i;
      const jj = j;
      i = i === 0 ? TC - 1 : i - 1;
      j = j === 0 ? PW - 1 : j - 1;
      if ((nt & 1) === TR_DEPART) {
        if (comp[node] === 1) {
          // a link past the records this walk may read was overwritten: the walk ends there
          if (w0 !== 0 && d > 0 && k + d < avail) {
            const q = jj >= d ? jj - d : jj - d + PW;
            pend[q] = w0;
            if (nWritten === written.length) written = this.grow();
            written[nWritten++] = q;
          }
          continue;
        }
        const n = aux[ii]! & AUX_POOL;
        // (n − 1)/n from a table (the same double as the division); weight decays
        // geometrically, and below 1e−30 per packet it is nothing: left alone it would sink into
        // subnormal numbers, whose arithmetic is a hundred times slower
        const nb = (w0 !== 0 ? w0 / n : 0) + (n < KEEP ? keep[n]! : (n - 1) / n) * B[node]!;
        B[node] = w0 === 0 && nb < 1e-30 ? 0 : nb;
        continue;
      }
      const w = comp[node] === 1 ? w0 : B[node]!;
      if (w === 0) continue;
      const src = aux[ii]!;
      if (src >= 0) {
        if (score[src] === 0) touched[nTouched++] = src;
        score[src]! += w;
        acc += w;
      } else if (src === SRC_MIX) {
        if (d > 0 && k + d < avail) {
          const q = jj >= d ? jj - d : jj - d + PW;
          pend[q] = w;
          if (nWritten === written.length) written = this.grow();
          written[nWritten++] = q;
        }
      } else acc += w; // a node's own cover or a gateway's packet: no client sent it
    }
    this.visited += k;
    this.walks++;
    for (let q = 0; q < nWritten; q++) pend[written[q]!] = 0;
    let tot = 0;
    for (let q = 0; q < nTouched; q++) tot += score[touched[q]!]!;
    this.nTouched = nTouched;
    this.tot = tot;
    return acc < 1 - 1e-6;
  }

  private grow(): Int32Array {
    const b = new Int32Array(this.written.length * 2);
    b.set(this.written);
    this.written = b;
    return b;
  }
}
