/**
 * Combining independent pieces of evidence about one sender. Each piece is a posterior over
 * clients under a uniform prior (a backward walk of one packet, or an ACK's way home), so the
 * combined posterior is their normalised product: a client absent from any piece is excluded.
 */
import type { SenderPosterior } from '../backward.ts';

export interface Verdict {
  /** Shannon entropy (bits) of the combined posterior */
  entropy: number;
  /** the combined posterior of the true sender */
  pTrue: number;
  /** clients left with probability */
  support: number;
}

/** A running product of posteriors (log space), folded one piece at a time. */
export class EvidenceFold {
  private ll: Map<number, number> | null = null;
  pieces = 0;

  add(p: SenderPosterior): void {
    this.pieces++;
    const prev = this.ll;
    const next = new Map<number, number>();
    for (let i = 0; i < p.clients.length; i++) {
      const q = p.probs[i]!;
      if (!(q > 0)) continue;
      const c = p.clients[i]!;
      if (prev === null) next.set(c, Math.log(q));
      else {
        const v = prev.get(c);
        if (v !== undefined) next.set(c, v + Math.log(q));
      }
    }
    this.ll = next;
  }

  verdict(trueSender: number): Verdict {
    const ll = this.ll;
    if (ll === null) return { entropy: NaN, pTrue: NaN, support: 0 };
    let max = -Infinity;
    for (const v of ll.values()) if (v > max) max = v;
    let z = 0;
    for (const v of ll.values()) z += Math.exp(v - max);
    let h = 0;
    for (const v of ll.values()) {
      const q = Math.exp(v - max) / z;
      if (q > 0) h -= q * Math.log2(q);
    }
    const lt = ll.get(trueSender);
    return { entropy: ll.size > 0 ? h : NaN, pTrue: lt === undefined || ll.size === 0 ? 0 : Math.exp(lt - max) / z, support: ll.size };
  }
}

export function combine(pieces: readonly SenderPosterior[], trueSender: number): Verdict {
  const f = new EvidenceFold();
  for (const p of pieces) f.add(p);
  return f.verdict(trueSender);
}

/**
 * Sequential evidence over many messages: the posterior of the true sender after each message,
 * and the first message count at which it reaches `sure`.
 */
export function messagesUntilSure(
  perMessage: ReadonlyArray<readonly SenderPosterior[]>,
  trueSender: number,
  sure = 0.95,
): { curve: number[]; messages: number | null } {
  const curve: number[] = [];
  const fold = new EvidenceFold();
  let messages: number | null = null;
  for (const pieces of perMessage) {
    for (const p of pieces) fold.add(p);
    const v = fold.verdict(trueSender);
    curve.push(v.pTrue);
    if (messages === null && v.pTrue >= sure) messages = curve.length;
  }
  return { curve, messages };
}
