/**
 * What the mix node knows of the network: the verified documents it holds (previous epoch
 * during the grace window, current, next), and what follows from them:
 *
 * - the legal next hops: in the stratified topology a layer-k mix forwards only to layer k+1,
 *   and the last layer only to gateways (computed per document, with this node's layer in
 *   that document, so packets processed under the previous epoch's key during the grace
 *   window are routed by the previous document);
 * - the peers allowed to connect (every node of every held document), and where to dial them.
 */
import type { Multiaddr } from '@multiformats/multiaddr';
import type { PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { parseMultiaddr } from '../proto/link/index.ts';
import { bytesEqual, type DocumentBody, type NodeEntry, type VerifiedDocument } from '../proto/pki/index.ts';

export interface Peer {
  readonly peerId: PeerId;
  readonly addrs: readonly Multiaddr[];
  readonly entry: NodeEntry;
}

/** Node ids as map keys, cheaply (latin1 of the 32 bytes). */
export function idKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.length).toString('latin1');
}

function toPeer(n: NodeEntry): Peer | undefined {
  try {
    const peerId = peerIdFromString(n.peerId);
    const addrs = n.addresses.map((a) => parseMultiaddr(a.includes('/p2p/') ? a : `${a}/p2p/${n.peerId}`));
    return { peerId, addrs, entry: n };
  } catch {
    return undefined; // a peer id or address we cannot use: the node is unreachable for us
  }
}

/** This node's layer in a document (0 when absent). */
export function layerOf(body: DocumentBody, nodeId: Uint8Array): number {
  for (let i = 0; i < body.layers.length; i++) if (body.layers[i]!.some((n) => bytesEqual(n.nodeId, nodeId))) return i + 1;
  return 0;
}

export class NetworkView {
  private readonly docs = new Map<number, VerifiedDocument>();
  private next = new Map<string, Peer>();
  private allowed = new Set<string>();
  private addrs = new Map<string, readonly Multiaddr[]>();
  /** The epoch the derived tables were built for, and which documents went in. */
  private builtFor = '';
  /** This node's layer in the current document (0: not in it). */
  layer = 0;
  current: VerifiedDocument | undefined;

  constructor(private readonly nodeId: Uint8Array) {}

  has(epoch: number): boolean {
    return this.docs.has(epoch);
  }

  get(epoch: number): VerifiedDocument | undefined {
    return this.docs.get(epoch);
  }

  add(doc: VerifiedDocument): void {
    this.docs.set(doc.body.epoch, doc);
  }

  epochs(): number[] {
    return [...this.docs.keys()].sort((a, b) => a - b);
  }

  /**
   * Rebuilds the tables for epoch `e` (`inGrace`: the previous epoch's key is still accepted).
   * Forgets documents older than needed. Returns true when something changed.
   */
  update(e: number, inGrace: boolean): boolean {
    for (const k of [...this.docs.keys()]) if (k < e - 1 || (k === e - 1 && !inGrace)) this.docs.delete(k);
    const routing = [this.docs.get(e), inGrace ? this.docs.get(e - 1) : undefined].filter((d): d is VerifiedDocument => d !== undefined);
    const sig = `${e}|${this.epochs().join(',')}|${routing.map((d) => d.body.epoch).join(',')}`;
    if (sig === this.builtFor) return false;
    this.builtFor = sig;
    this.current = this.docs.get(e);
    this.layer = this.current ? layerOf(this.current.body, this.nodeId) : 0;
    const next = new Map<string, Peer>();
    // routing: the current document wins over the previous one for a node in both
    for (const d of [...routing].reverse()) {
      const body = d.body;
      const mine = layerOf(body, this.nodeId);
      if (mine === 0) continue;
      const targets = mine < body.layers.length ? body.layers[mine]! : body.gateways;
      for (const n of targets) {
        const p = toPeer(n);
        if (p) next.set(idKey(n.nodeId), p);
      }
    }
    const allowed = new Set<string>();
    const addrs = new Map<string, readonly Multiaddr[]>();
    for (const d of this.docs.values()) {
      for (const n of [...d.body.layers.flat(), ...d.body.gateways]) {
        if (bytesEqual(n.nodeId, this.nodeId)) continue;
        const p = toPeer(n);
        if (!p) continue;
        allowed.add(n.peerId);
        addrs.set(n.peerId, p.addrs);
      }
    }
    this.next = next;
    this.allowed = allowed;
    this.addrs = addrs;
    return true;
  }

  /** The peer a packet for `nodeId` goes to, if it is a legal next hop. Hot path. */
  resolveNext(nodeId: Uint8Array): Peer | undefined {
    return this.next.get(idKey(nodeId));
  }

  isKnownPeer(peer: PeerId): boolean {
    return this.allowed.has(peer.toString());
  }

  addressesOf(peer: PeerId): readonly Multiaddr[] | undefined {
    return this.addrs.get(peer.toString());
  }

  get nextHopCount(): number {
    return this.next.size;
  }
}
