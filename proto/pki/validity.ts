/**
 * How long a network document is good for, and what it says at a given time
 * (docs/spec/pki.md §5.1). As Tor's consensus has valid-after / fresh-until / valid-until, a
 * document for epoch E is
 *
 * - fresh from `validAfter` until `freshUntil` (the end of E): the next document is due by then,
 *   and a role holding none newer says its document is stale;
 * - usable until `validUntil`, the end of epoch E + k (k = `keysAheadOf`): it lists every node's
 *   Sphinx keys for E … E + k, so while no authority answers a client goes on building packets
 *   under the keys of the epoch it is in, and a hop goes on routing by it;
 * - accepted by `verifyDocument` until `validUntil + grace`, while packets built under its last
 *   keys are still in flight.
 *
 * Pure: time is always a parameter (unix seconds).
 */
import type { DocumentBody, NodeEntry } from './codec.ts';

/** How many epochs past its own the document lists keys for (0 when it is good for E only). */
export function keysAheadOf(body: DocumentBody): number {
  return Math.round((body.validUntil - body.freshUntil) / body.epochLength);
}

/** The epoch the network is in at t, by the document's own epoch arithmetic. */
export function documentEpochAt(body: DocumentBody, t: number): number {
  return body.epoch + Math.floor((t - body.validAfter) / body.epochLength);
}

/** The last epoch the document lists keys for. */
export function lastKeyEpoch(body: DocumentBody): number {
  return body.epoch + keysAheadOf(body);
}

/** True when the document lists keys for epoch e (E <= e <= E + k). */
export function coversEpoch(body: DocumentBody, e: number): boolean {
  return e >= body.epoch && e <= lastKeyEpoch(body);
}

/** True while no newer document is due yet (t < freshUntil). */
export function isFreshAt(body: DocumentBody, t: number): boolean {
  return t < body.freshUntil;
}

/** True while packets may be built under the document: its epoch has begun and its keys last. */
export function isUsableAt(body: DocumentBody, t: number): boolean {
  return t >= body.validAfter && t < body.validUntil;
}

/** A node's Sphinx key for epoch e from the document it is listed in, if the document has one. */
export function nodeSphinxKey(entry: NodeEntry, body: DocumentBody, e: number): Uint8Array | undefined {
  const j = e - body.epoch;
  if (j === 0) return entry.sphinxKey;
  if (j < 0 || j > keysAheadOf(body)) return undefined;
  return entry.sphinxKeysAhead[j - 1];
}

/**
 * What a document for epoch e would say, derived from the document for E <= e: the same nodes,
 * layers and parameters, each node under its key for e (a node that published none for e is left
 * out), the epoch and freshness moved to e. Null when the document has no keys for e. The result
 * is a view for building routes and reading parameters; it is not signed and is never encoded.
 */
export function documentForEpoch(body: DocumentBody, e: number): DocumentBody | null {
  if (!coversEpoch(body, e)) return null;
  const j = e - body.epoch;
  if (j === 0) return body;
  const shift = (n: NodeEntry): NodeEntry[] => {
    const k = n.sphinxKeysAhead[j - 1];
    return k ? [{ ...n, sphinxKey: k, sphinxKeysAhead: n.sphinxKeysAhead.slice(j) }] : [];
  };
  const validAfter = body.validAfter + j * body.epochLength;
  return {
    ...body,
    epoch: e,
    validAfter,
    freshUntil: validAfter + body.epochLength,
    layers: body.layers.map((l) => l.flatMap(shift)),
    gateways: body.gateways.flatMap(shift),
  };
}

/** The document as of time t (`documentForEpoch` at t's epoch), or null when it is not usable at t. */
export function documentAt(body: DocumentBody, t: number): DocumentBody | null {
  return isUsableAt(body, t) ? documentForEpoch(body, documentEpochAt(body, t)) : null;
}

/**
 * Of several verified documents, the one to route by at t: the newest that is usable at t. A
 * document fetched ahead for the next epoch is not usable before that epoch begins.
 */
export function newestUsable<T extends { readonly body: DocumentBody }>(docs: Iterable<T>, t: number): T | undefined {
  let best: T | undefined;
  for (const d of docs) if (isUsableAt(d.body, t) && (!best || d.body.epoch > best.body.epoch)) best = d;
  return best;
}
