/**
 * The stratified topology of a network document (docs/spec/pki.md §6.3): a layer-k mix forwards
 * only to layer k+1, the last layer only to gateways, and a gateway only to layer 1 (the gateway
 * hop of a mix's own loop cover, runtime/hop/loop-cover.ts).
 */
import type { DocumentBody, NodeEntry } from './codec.ts';
import { bytesEqual } from './keys.ts';

/** A node's mix layer in a document (0 when it is not a mix there). */
export function layerOf(body: DocumentBody, nodeId: Uint8Array): number {
  for (let i = 0; i < body.layers.length; i++) if (body.layers[i]!.some((n) => bytesEqual(n.nodeId, nodeId))) return i + 1;
  return 0;
}

/** The nodes the stratified topology lets `nodeId` send a packet to next, in this document. */
export function legalNextHops(body: DocumentBody, nodeId: Uint8Array): readonly NodeEntry[] {
  const k = layerOf(body, nodeId);
  if (k > 0) return k < body.layers.length ? body.layers[k]! : body.gateways;
  if (body.gateways.some((g) => bytesEqual(g.nodeId, nodeId))) return body.layers[0] ?? [];
  return [];
}
