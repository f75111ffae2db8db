/**
 * Forward analysis: exact probability tracking of tracked packets through the pools. A tracked
 * packet starts with mass 1 (or is given mass where it leaves a compromised node); in an honest
 * exponential pool every packet is equally likely to leave next (memorylessness), so a
 * departure from a pool of n packets carries 1/n of each target's mass in that pool and leaves
 * (n−1)/n behind; arrivals add the mass their packet carries. A compromised node passes each
 * packet's mass through with it. Mass that leaves the mix network (a departure from a mix to a
 * gateway) is handed to `onExit`; a target whose mass is all gone is finished.
 *
 * Mass riding packets lives in a small arena of linked (target, mass) entries; pools keep
 * per-node lists. Nothing is allocated per event unless a tracked target's mass moves.
 */

/** Where the mass lists riding packets hang: a packet table, or (forward-replay.ts) trace record numbers. */
export interface MassSlots {
  /** head of the mass list on `p`, or −1 */
  mass(p: number): number;
  setMass(p: number, e: number): void;
}

/** A target's mass below this is dropped (counted as lost). */
export const EPS = 1e-10;

export interface ExitSink {
  /** `mass` of target `tg` leaves the mix network on packet `p` at time `t`. */
  exit(tg: number, mass: number, p: number, t: number): void;
  /** every entry of target `tg` has exited or been dropped */
  finish(tg: number): void;
}

export class ForwardTracker {
  private arNext = new Int32Array(256);
  private arTg = new Int32Array(256);
  private arMs = new Float64Array(256);
  private arFree = -1;
  private arUsed = 0;
  private readonly poolTg: number[][];
  private readonly poolMs: number[][];
  /** targets with mass in each pool (the length of its lists, read on every departure) */
  private readonly poolLen: Int32Array;
  /** per target: entries holding its mass (pool entries and packet entries) */
  private live: Int32Array;
  /** mass dropped below EPS, summed per target */
  lost: Float64Array;

  constructor(
    private readonly pk: MassSlots,
    private readonly compromised: Uint8Array,
    nodes: number,
    targets: number,
    private readonly sink: ExitSink,
  ) {
    this.poolTg = Array.from({ length: nodes }, () => []);
    this.poolMs = Array.from({ length: nodes }, () => []);
    this.poolLen = new Int32Array(nodes);
    this.live = new Int32Array(Math.max(1, targets));
    this.lost = new Float64Array(Math.max(1, targets));
  }

  private alloc(tg: number, ms: number, next: number): number {
    let e: number;
    if (this.arFree >= 0) {
      e = this.arFree;
      this.arFree = this.arNext[e]!;
    } else {
      if (this.arUsed === this.arNext.length) {
        const n = this.arNext.length * 2;
        const a = new Int32Array(n);
        a.set(this.arNext);
        this.arNext = a;
        const b = new Int32Array(n);
        b.set(this.arTg);
        this.arTg = b;
        const c = new Float64Array(n);
        c.set(this.arMs);
        this.arMs = c;
      }
      e = this.arUsed++;
    }
    this.arNext[e] = next;
    this.arTg[e] = tg;
    this.arMs[e] = ms;
    return e;
  }

  private release(e: number): void {
    this.arNext[e] = this.arFree;
    this.arFree = e;
  }

  /** Gives packet `p` `mass` of target `tg` (a new target, or mass seen leaving a compromised node). */
  attach(p: number, tg: number, mass: number): void {
    this.pk.setMass(p, this.alloc(tg, mass, this.pk.mass(p)));
    this.live[tg]!++;
  }

  /** Packet `p` enters the pool of `node`. */
  arrive(p: number, node: number): void {
    const head = this.pk.mass(p);
    if (head < 0 || this.compromised[node] === 1) return;
    const tgs = this.poolTg[node]!;
    const mss = this.poolMs[node]!;
    let e = head;
    while (e >= 0) {
      const nx = this.arNext[e]!;
      this.addToPool(node, tgs, mss, this.arTg[e]!, this.arMs[e]!);
      this.release(e);
      e = nx;
    }
    this.pk.setMass(p, -1);
  }

  /**
   * Mass `ms` of target `tg`, which rode an entry of its own, joins the pool of `node` (lists
   * `tgs`/`mss`): added to the target's entry there, one live entry fewer, or a new entry.
   */
  private addToPool(node: number, tgs: number[], mss: number[], tg: number, ms: number): void {
    const j = tgs.indexOf(tg);
    if (j >= 0) {
      mss[j]! += ms;
      this.live[tg]!--;
    } else {
      tgs.push(tg);
      this.poolLen[node]!++;
      mss.push(ms);
    }
  }

  /** True when the pool of `node` holds some target's mass (the cheap test on every departure). */
  holds(node: number): boolean {
    return this.poolLen[node]! > 0;
  }

  /** Packet `p` leaves the pool of `node`, which held `n` packets; `isExit`: it leaves the mix network. */
  depart(p: number, node: number, n: number, isExit: boolean, t: number): void {
    if (this.compromised[node] === 0) {
      const tgs = this.poolTg[node]!;
      if (tgs.length === 0) return;
      const mss = this.poolMs[node]!;
      for (let j = tgs.length - 1; j >= 0; j--) {
        const tg = tgs[j]!;
        const M = mss[j]!;
        const out = M / n;
        const rest = n === 1 ? 0 : M - out;
        if (isExit) this.sink.exit(tg, out, p, t);
        else if (out >= EPS) this.attach(p, tg, out);
        else this.lost[tg]! += out;
        if (rest < EPS) this.dropEntry(node, tgs, mss, j, tg, rest);
        else mss[j] = rest;
      }
    } else if (isExit) this.exitCarried(p, t);
  }

  /**
   * Entry `j` of `node`'s pool (target `tg`) keeps only `rest` < EPS: that is counted lost and
   * the entry removed by swapping the last one into its place. Callers walk `j` downward, so the
   * entry swapped in has already been visited.
   */
  private dropEntry(node: number, tgs: number[], mss: number[], j: number, tg: number, rest: number): void {
    this.lost[tg]! += rest;
    const last = tgs.length - 1;
    tgs[j] = tgs[last]!;
    mss[j] = mss[last]!;
    tgs.pop();
    mss.pop();
    this.poolLen[node]!--;
    if (--this.live[tg]! === 0) this.sink.finish(tg);
  }

  private tmpTg = new Int32Array(64);
  private tmpMs = new Float64Array(64);

  /**
   * `depart(p, node, n, false, t)` followed by `arrive(p, next)` at an honest `next`, for a
   * packet `p` that carries no mass: the same arithmetic in the same order (the departing mass
   * collected in the order `depart` would attach it, merged in the order `arrive` would read
   * the packet's list: newest first), without the packet's list.
   */
  departInto(node: number, n: number, next: number): void {
    const tgs = this.poolTg[node]!;
    const mss = this.poolMs[node]!;
    if (this.tmpTg.length < tgs.length) {
      this.tmpTg = new Int32Array(2 * tgs.length);
      this.tmpMs = new Float64Array(2 * tgs.length);
    }
    const tmpTg = this.tmpTg;
    const tmpMs = this.tmpMs;
    const live = this.live;
    let k = 0;
    for (let j = tgs.length - 1; j >= 0; j--) {
      const tg = tgs[j]!;
      const M = mss[j]!;
      const out = M / n;
      const rest = n === 1 ? 0 : M - out;
      if (out >= EPS) {
        tmpTg[k] = tg;
        tmpMs[k++] = out;
        live[tg]!++;
      } else this.lost[tg]! += out;
      if (rest < EPS) this.dropEntry(node, tgs, mss, j, tg, rest);
      else mss[j] = rest;
    }
    const ntg = this.poolTg[next]!;
    const nms = this.poolMs[next]!;
    while (k > 0) {
      k--;
      this.addToPool(next, ntg, nms, tmpTg[k]!, tmpMs[k]!);
    }
  }

  /** The mass packet `p` carries leaves the mix network with it. */
  exitCarried(p: number, t: number): void {
    let e = this.pk.mass(p);
    while (e >= 0) {
      const nx = this.arNext[e]!;
      const tg = this.arTg[e]!;
      this.sink.exit(tg, this.arMs[e]!, p, t);
      this.release(e);
      if (--this.live[tg]! === 0) this.sink.finish(tg);
      e = nx;
    }
    this.pk.setMass(p, -1);
  }

  /** Packet `p` ends (or is lost) carrying mass: that mass is lost. */
  drop(p: number): void {
    let e = this.pk.mass(p);
    while (e >= 0) {
      const nx = this.arNext[e]!;
      const tg = this.arTg[e]!;
      this.lost[tg]! += this.arMs[e]!;
      this.release(e);
      if (--this.live[tg]! === 0) this.sink.finish(tg);
      e = nx;
    }
    this.pk.setMass(p, -1);
  }
}
