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
import { SRC_MIX, TR_DEPART, type TraceRing } from './trace.ts';

export interface SenderPosterior {
  /** clients with weight, and their probabilities (summing to 1) */
  readonly clients: Int32Array;
  readonly probs: Float64Array;
  readonly entropy: number;
  readonly truncated: boolean;
}

export class BackwardWalker {
  private readonly score: Float64Array;
  private readonly touched: Int32Array;
  private readonly B: Float64Array;
  /** weight pending on each trace record, and the records written in this walk */
  private readonly pend: Float64Array;
  private written: Int32Array;
  /** trace records visited, and walks made (for the benchmark) */
  visited = 0;
  walks = 0;

  constructor(
    private readonly trace: TraceRing,
    private readonly compromised: Uint8Array,
    clients: number,
  ) {
    this.score = new Float64Array(clients);
    this.touched = new Int32Array(clients);
    this.B = new Float64Array(compromised.length);
    this.pend = new Float64Array(trace.capacity);
    this.written = new Int32Array(1024);
  }

  /** The sender posterior of the packet whose departure is the newest trace record. */
  walk(): SenderPosterior {
    const tr = this.trace;
    const { nodeType, aux, link, serial } = tr;
    const comp = this.compromised;
    const B = this.B;
    const score = this.score;
    const touched = this.touched;
    const pend = this.pend;
    const TC = tr.capacity;
    B.fill(0);
    let nTouched = 0;
    let nWritten = 0;
    let acc = 0;
    let i = tr.head;
    const start = i === 0 ? TC - 1 : i - 1;
    pend[start] = 1;
    let written = this.written;
    written[nWritten++] = start;
    let k = 0;
    for (; k < tr.count && acc < 1 - 1e-9; k++) {
      i = i === 0 ? TC - 1 : i - 1;
      const nt = nodeType[i]!;
      const node = nt >> 1;
      const w0 = pend[i]!;
      if ((nt & 1) === TR_DEPART) {
        if (comp[node] === 1) {
          if (w0 !== 0) {
            const j = link[i]!;
            if (j >= 0 && serial[j] === serial[i]) {
              pend[j] = w0;
              if (nWritten === written.length) written = this.grow();
              written[nWritten++] = j;
            }
          }
          continue;
        }
        const b = B[node]!;
        const n = aux[i]!;
        if (w0 !== 0) B[node] = w0 / n + ((n - 1) / n) * b;
        else if (b !== 0) {
          // weight decays geometrically; below 1e−30 per packet it is nothing, and left alone it
          // would sink into subnormal numbers, whose arithmetic is a hundred times slower
          const nb = ((n - 1) / n) * b;
          B[node] = nb < 1e-30 ? 0 : nb;
        }
        continue;
      }
      const w = comp[node] === 1 ? w0 : B[node]!;
      if (w === 0) continue;
      const src = aux[i]!;
      if (src >= 0) {
        if (score[src] === 0) touched[nTouched++] = src;
        score[src]! += w;
        acc += w;
      } else if (src === SRC_MIX) {
        const j = link[i]!;
        // a record overwritten by the ring (the same packet's serial no longer there) is past the end
        if (j >= 0 && serial[j] === serial[i]) {
          pend[j] = w;
          if (nWritten === written.length) written = this.grow();
          written[nWritten++] = j;
        }
      } else acc += w; // a node's own cover or a gateway's packet: no client sent it
    }
    this.visited += k;
    this.walks++;
    for (let j = 0; j < nWritten; j++) pend[written[j]!] = 0;
    let tot = 0;
    for (let j = 0; j < nTouched; j++) tot += score[touched[j]!]!;
    const clients = new Int32Array(nTouched);
    const probs = new Float64Array(nTouched);
    let h = 0;
    for (let j = 0; j < nTouched; j++) {
      const c = touched[j]!;
      const q = tot > 0 ? score[c]! / tot : 0;
      clients[j] = c;
      probs[j] = q;
      if (q > 0) h -= q * Math.log2(q);
      score[c] = 0;
    }
    return { clients, probs, entropy: h, truncated: acc < 1 - 1e-6 };
  }

  private grow(): Int32Array {
    const b = new Int32Array(this.written.length * 2);
    b.set(this.written);
    this.written = b;
    return b;
  }
}
