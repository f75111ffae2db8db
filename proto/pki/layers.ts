/**
 * Layer assignment (docs/spec/pki.md §6.3): deterministic, so every authority computes the same
 * result from the same inputs; balanced (layer sizes differ by at most one); stable (a mix keeps
 * its previous layer unless balance forces a move).
 *
 *   1. A mix that was in layer k (1..L) of the previous document starts in layer k.
 *   2. Every other mix is placed, in order of rank, in its preferred layer if that layer is
 *      currently among the smallest, else in the smallest layer (lowest index on ties).
 *   3. While the largest layer exceeds the smallest by more than one, the mix with the highest
 *      rank in the largest layer (lowest index on ties) moves to the smallest (lowest index).
 * rank(node) = SHA-256(u32be(epoch) || node_id), compared as bytes: an unbiased order that
 * changes every epoch, so which mix moves is not predictable from its id alone.
 */
import { compareBytes, hex, sha256 } from './keys.ts';
import { u32be } from './signing.ts';

export interface LayerCandidate {
  readonly nodeId: Uint8Array;
  /** 0 = none. */
  readonly layerPreference: number;
}

export function rank(epoch: number, nodeId: Uint8Array): Uint8Array {
  const b = new Uint8Array(4 + nodeId.length);
  b.set(u32be(epoch), 0);
  b.set(nodeId, 4);
  return sha256(b);
}

/** Returns layer (1..numLayers) per node id (hex). `previous` maps node id hex to its old layer. */
export function assignLayers(
  mixes: readonly LayerCandidate[],
  numLayers: number,
  epoch: number,
  previous: ReadonlyMap<string, number> = new Map(),
): Map<string, number> {
  if (!Number.isInteger(numLayers) || numLayers < 1) throw new RangeError('numLayers must be >= 1');
  const ranked = mixes.map((m) => ({ id: hex(m.nodeId), pref: m.layerPreference, r: rank(epoch, m.nodeId) })).sort((a, b) => compareBytes(a.r, b.r));
  const layers: (typeof ranked)[] = Array.from({ length: numLayers }, () => []);
  const fresh: typeof ranked = [];
  for (const m of ranked) {
    const prev = previous.get(m.id);
    if (prev !== undefined && prev >= 1 && prev <= numLayers) layers[prev - 1]!.push(m);
    else fresh.push(m);
  }
  const smallest = (): number => {
    let best = 0;
    for (let i = 1; i < numLayers; i++) if (layers[i]!.length < layers[best]!.length) best = i;
    return best;
  };
  const largest = (): number => {
    let best = 0;
    for (let i = 1; i < numLayers; i++) if (layers[i]!.length > layers[best]!.length) best = i;
    return best;
  };
  for (const m of fresh) {
    const min = layers[smallest()]!.length;
    const p = m.pref - 1;
    if (p >= 0 && p < numLayers && layers[p]!.length === min) layers[p]!.push(m);
    else layers[smallest()]!.push(m);
  }
  // each layer is kept sorted by rank so "highest rank" is the last element
  for (const l of layers) l.sort((a, b) => compareBytes(a.r, b.r));
  for (let guard = 0; guard < mixes.length + 1; guard++) {
    const hi = largest();
    const lo = smallest();
    if (layers[hi]!.length - layers[lo]!.length <= 1) break;
    const m = layers[hi]!.pop()!;
    layers[lo]!.push(m);
    layers[lo]!.sort((a, b) => compareBytes(a.r, b.r));
  }
  const out = new Map<string, number>();
  layers.forEach((l, i) => l.forEach((m) => out.set(m.id, i + 1)));
  return out;
}
