/**
 * The forward analysis of the targets (forward.ts) replayed from the trace, so that it can run
 * on the analysis thread beside the backward walks rather than on the event loop.
 *
 * Everything the forward tracking does happens at a trace record: a departure from an honest
 * mix whose pool holds mass (the pool size is the record's `aux`, and `AUX_EXIT` says whether
 * the packet leaves the mix network), an arrival of a packet that carries mass (its `back` link
 * names the departure it came from), a departure from a compromised mix (mass passes through
 * with the packet). The mass riding a packet is keyed by the packet's newest record number
 * instead of the packet. What the trace does not show comes as ops from the event loop, each
 * placed between two records (`pos`: the number of records written when it was made):
 * - `OP_START`: a target's packet made record `pos − 1`, its first arrival, carrying mass 1;
 * - `OP_DROP`: the packet whose newest record is `arg` ends (lost on a link, or at a mix it
 *   ends at) with no further record: the mass it carries is lost;
 * - `OP_LOST_NEW`: a target's packet was lost before its first record.
 *
 * The replay makes the same ForwardTracker calls, in the same order, as the event loop made
 * when it tracked the targets itself, so the entropies, the lost mass and the order the
 * targets finish in are the same; on one thread the replay runs a little behind the writer
 * (InlineExits), on two on the worker (analysis-thread.ts), with the same code.
 *
 * Forward mass never rides into a gateway (a departure from a mix to a gateway is an exit), so
 * the records a packet ends with at a gateway need no op; a packet ending at a mix (a mix
 * loop) writes no record there and gets an `OP_DROP`.
 */
import { ForwardTracker, type ExitSink, type MassSlots } from './forward.ts';
import { AUX_EXIT, AUX_POOL, TR_DEPART, type TraceRing } from './trace.ts';

export const OP_START = 1;
export const OP_DROP = 2;
export const OP_LOST_NEW = 3;

/** Fields of one op in the shared op queue: pos, kind, arg. */
export const OP_FIELDS = 3;

export interface ForwardResults {
  /** per finished target, in the order they finished: its forward (per-packet) entropy */
  entropy: Float64Array;
  /** the mass each finished target lost, summed over them in the order they finished */
  lostMass: number;
  finished: number;
}

const SLOTS = 4096;

/**
 * Mass lists keyed by trace record number: a few packets at a time carry mass, each for a short
 * while, so a direct-mapped table (by the number's low bits) holds them, and the rare key whose
 * slot is taken waits in a map.
 */
class RecordSlots implements MassSlots {
  private readonly keys = new Float64Array(SLOTS).fill(-1);
  private readonly heads = new Int32Array(SLOTS);
  private readonly overflow = new Map<number, number>();
  /** keys held */
  count = 0;

  mass(k: number): number {
    const s = k & (SLOTS - 1);
    if (this.keys[s] === k) return this.heads[s]!;
    if (this.overflow.size === 0) return -1;
    const e = this.overflow.get(k);
    return e === undefined ? -1 : e;
  }

  setMass(k: number, e: number): void {
    const s = k & (SLOTS - 1);
    const keys = this.keys;
    if (keys[s] === k) {
      if (e >= 0) this.heads[s] = e;
      else {
        keys[s] = -1;
        this.count--;
      }
      return;
    }
    if (this.overflow.size > 0 && this.overflow.has(k)) {
      if (e >= 0) this.overflow.set(k, e);
      else {
        this.overflow.delete(k);
        this.count--;
      }
      return;
    }
    if (e < 0) return;
    this.count++;
    if (keys[s] === -1) {
      keys[s] = k;
      this.heads[s] = e;
    } else this.overflow.set(k, e);
  }
}

/** the key of a target's packet lost before its first record */
const NO_RECORD = -2;

export class ForwardReplay implements ExitSink {
  private readonly slots = new RecordSlots();
  private readonly fwd: ForwardTracker;
  private readonly tgH: Float64Array;
  private readonly tgM: Float64Array;
  private readonly entropy: number[] = [];
  private lostMass = 0;
  finished = 0;
  /** records replayed: the next record to read is number `scanned` */
  scanned = 0;
  private slot = 0;

  constructor(
    private readonly trace: TraceRing,
    private readonly compromised: Uint8Array,
    /** nodes below this are mixes */
    private readonly mixes: number,
    nodes: number,
    targets: number,
  ) {
    this.fwd = new ForwardTracker(this.slots, compromised, nodes, targets, this);
    this.tgH = new Float64Array(Math.max(1, targets));
    this.tgM = new Float64Array(Math.max(1, targets));
  }

  exit(tg: number, m: number): void {
    if (m > 0) {
      this.tgH[tg]! -= m * Math.log2(m);
      this.tgM[tg]! += m;
    }
  }

  finish(tg: number): void {
    this.finished++;
    const M = this.tgM[tg]!;
    this.lostMass += 1 - M;
    this.entropy.push(M > 0 ? this.tgH[tg]! / M + Math.log2(M) : 0);
  }

  /** Replays records `scanned` .. `upTo − 1` (they must still be in the ring). */
  advance(upTo: number): void {
    const tr = this.trace;
    const { nodeType, aux, back } = tr;
    const TC = tr.capacity;
    const comp = this.compromised;
    const NM = this.mixes;
    const fwd = this.fwd;
    const slots = this.slots;
    let i = this.scanned;
    let s = this.slot;
    for (; i < upTo; i++) {
      const nt = nodeType[s]!;
      const ss = s;
      s = s + 1 === TC ? 0 : s + 1;
      // the mass this packet carries moves to its new record
      if (slots.count > 0) {
        const d = back[ss]!;
        if (d > 0) {
          const e = slots.mass(i - d);
          if (e >= 0) {
            slots.setMass(i - d, -1);
            slots.setMass(i, e);
          }
        }
      }
      const node = nt >> 1;
      if ((nt & 1) === TR_DEPART) {
        if (node >= NM) continue;
        if (comp[node] === 0) {
          if (!fwd.holds(node)) continue;
          const a = aux[ss]!;
          const isExit = (a & AUX_EXIT) !== 0;
          // the common case: the packet's arrival at an honest node is the next record (no gap
          // on the link, and no op between them: ops come before `upTo` only)
          if (
            !isExit &&
            i + 1 < upTo &&
            back[s] === 1 &&
            (nodeType[s]! & 1) !== TR_DEPART &&
            comp[nodeType[s]! >> 1] === 0 &&
            (slots.count === 0 || slots.mass(i) < 0)
          ) {
            fwd.departInto(node, a & AUX_POOL, nodeType[s]! >> 1);
            i++;
            s = s + 1 === TC ? 0 : s + 1;
            continue;
          }
          fwd.depart(i, node, a & AUX_POOL, isExit, 0);
        } else if ((aux[ss]! & AUX_EXIT) !== 0 && slots.count > 0 && slots.mass(i) >= 0) fwd.exitCarried(i, 0);
      } else if (slots.count > 0 && slots.mass(i) >= 0) fwd.arrive(i, node);
    }
    this.scanned = i;
    this.slot = s;
  }

  /** An op made when `pos` records had been written (`pos` ≥ `scanned`). */
  apply(pos: number, kind: number, arg: number): void {
    if (pos < this.scanned) throw new Error(`forward replay: op at record ${pos} after record ${this.scanned - 1} was replayed`);
    this.advance(pos);
    if (kind === OP_START) {
      const r = pos - 1;
      this.fwd.attach(r, arg, 1);
      this.fwd.arrive(r, this.trace.nodeType[(this.slot === 0 ? this.trace.capacity : this.slot) - 1]! >> 1);
    } else if (kind === OP_DROP) this.fwd.drop(arg);
    else if (kind === OP_LOST_NEW) {
      this.fwd.attach(NO_RECORD, arg, 1);
      this.fwd.drop(NO_RECORD);
    }
  }

  results(): ForwardResults {
    return { entropy: Float64Array.from(this.entropy), lostMass: this.lostMass, finished: this.finished };
  }
}
