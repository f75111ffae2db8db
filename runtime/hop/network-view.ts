/**
 * What a hop (mix or gateway) or a client knows of the network: the verified documents it holds
 * (the one routing the previous epoch during the grace window, the one routing the current epoch,
 * any fetched ahead), and what follows from them. The document routing epoch e is the newest held
 * one with keys for e (proto/pki/validity.ts): e's own, or, while the authorities have published
 * none for e (an outage), an older one listing keys that far ahead.
 *
 * - the legal next hops (proto/pki/topology.ts), computed per document with this node's place
 *   in that document, so packets processed under the previous epoch's key during the grace
 *   window are routed by the previous document;
 * - every other node of the held documents: the peers allowed to connect, where to dial them,
 *   and where a packet that is not routed by the topology (a SURB's first hop) goes.
 */
import type { Multiaddr } from '@multiformats/multiaddr';
import type { PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { parseMultiaddr } from '../../runtime/link/index.ts';
import {
  bytesEqual,
  coversEpoch,
  documentAt,
  documentEpochAt,
  layerOf,
  legalNextHops,
  type DocumentBody,
  type NodeEntry,
  type VerifiedDocument,
} from '../../proto/pki/index.ts';

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

export class NetworkView {
  private readonly docs = new Map<number, VerifiedDocument>();
  private next = new Map<string, Peer>();
  private nodes = new Map<string, Peer>();
  private byPeer = new Map<string, Peer>();
  /** The epoch the derived tables were built for, and which documents went in. */
  private builtFor = '';
  /** This node's mix layer in the current document (0: not a mix in it). */
  layer = 0;
  /** Whether the current document lists this node (as a mix or a gateway). */
  listed = false;
  /** The document routing the epoch of the last update: its own, or an older one with keys for it. */
  current: VerifiedDocument | undefined;
  /** The epoch of the last update. */
  epoch = -1;
  private memo: { readonly doc: VerifiedDocument; readonly epoch: number; readonly body: DocumentBody } | undefined;

  constructor(private readonly nodeId: Uint8Array) {}

  has(epoch: number): boolean {
    return this.docs.has(epoch);
  }

  get(epoch: number): VerifiedDocument | undefined {
    return this.docs.get(epoch);
  }

  add(doc: VerifiedDocument): void {
    this.docs.set(doc.body.epoch, doc);
    // a replaced document for an epoch already held must not be skipped by the next update
    this.builtFor = '';
  }

  epochs(): number[] {
    return [...this.docs.keys()].sort((a, b) => a - b);
  }

  /** The newest held document with keys for epoch e. */
  private covering(e: number): VerifiedDocument | undefined {
    let best: VerifiedDocument | undefined;
    for (const d of this.docs.values()) if (coversEpoch(d.body, e) && (!best || d.body.epoch > best.body.epoch)) best = d;
    return best;
  }

  /**
   * Rebuilds the tables for epoch `e` (`inGrace`: the previous epoch's key is still accepted).
   * Forgets documents no longer needed (neither routing e or, in grace, e - 1, nor for a later
   * epoch). Returns true when something changed.
   */
  update(e: number, inGrace: boolean): boolean {
    const cur = this.covering(e);
    const prev = inGrace ? this.covering(e - 1) : undefined;
    for (const [k, d] of [...this.docs]) if (k <= e && d !== cur && d !== prev) this.docs.delete(k);
    const routing = [cur, prev !== cur ? prev : undefined].filter((d): d is VerifiedDocument => d !== undefined);
    const sig = `${e}|${this.epochs().join(',')}|${routing.map((d) => d.body.epoch).join(',')}`;
    this.epoch = e;
    if (sig === this.builtFor) return false;
    this.builtFor = sig;
    this.current = cur;
    this.layer = this.current ? layerOf(this.current.body, this.nodeId) : 0;
    this.listed = this.layer > 0 || (this.current?.body.gateways.some((g) => bytesEqual(g.nodeId, this.nodeId)) ?? false);
    const next = new Map<string, Peer>();
    // routing: the current document wins over the previous one for a node in both
    for (const d of [...routing].reverse()) {
      for (const n of legalNextHops(d.body, this.nodeId)) {
        const p = toPeer(n);
        if (p) next.set(idKey(n.nodeId), p);
      }
    }
    const nodes = new Map<string, Peer>();
    const byPeer = new Map<string, Peer>();
    // the newest document wins for a node listed in several
    for (const E of this.epochs()) {
      const body = this.docs.get(E)!.body;
      for (const n of [...body.layers.flat(), ...body.gateways]) {
        if (bytesEqual(n.nodeId, this.nodeId)) continue;
        const p = toPeer(n);
        if (!p) continue;
        nodes.set(idKey(n.nodeId), p);
        byPeer.set(n.peerId, p);
      }
    }
    this.next = next;
    this.nodes = nodes;
    this.byPeer = byPeer;
    return true;
  }

  /**
   * Rebuilds for time t (unix seconds) by the held documents' own epoch arithmetic, for a role
   * that processes no packets and has no epoch schedule of its own (the client).
   */
  updateAt(t: number): boolean {
    let newest: VerifiedDocument | undefined;
    for (const d of this.docs.values()) if (!newest || d.body.epoch > newest.body.epoch) newest = d;
    return newest ? this.update(documentEpochAt(newest.body, t), false) : false;
  }

  /**
   * The current document as of time t, for building packets: each node under its Sphinx key for
   * t's epoch (proto/pki/validity.ts documentAt). Undefined when no held document is usable at t.
   */
  documentAt(t: number): DocumentBody | undefined {
    const d = this.current;
    if (!d) return undefined;
    const e = documentEpochAt(d.body, t);
    if (this.memo?.doc === d && this.memo.epoch === e) return this.memo.body;
    const body = documentAt(d.body, t);
    if (!body) return undefined;
    this.memo = { doc: d, epoch: e, body };
    return body;
  }

  /**
   * What `documentAt(t)` will give at a later t once the view has moved there, from the documents
   * held now (one fetched ahead for t's epoch, else the newest with keys for it): for a client
   * building a packet ahead of the time it leaves. Not memoized. Undefined when none is usable.
   */
  documentAhead(t: number): DocumentBody | undefined {
    let newest: VerifiedDocument | undefined;
    for (const d of this.docs.values()) if (!newest || d.body.epoch > newest.body.epoch) newest = d;
    if (!newest) return undefined;
    const e = documentEpochAt(newest.body, t);
    if (this.current && e === this.epoch) return this.documentAt(t);
    const d = this.covering(e);
    return (d && documentAt(d.body, t)) ?? undefined;
  }

  /** True while the current document is older than the epoch it routes (no newer one yet). */
  get stale(): boolean {
    return this.current !== undefined && this.current.body.epoch < this.epoch;
  }

  /** The peer a packet for `nodeId` goes to, if it is a legal next hop. Hot path. */
  resolveNext(nodeId: Uint8Array): Peer | undefined {
    return this.next.get(idKey(nodeId));
  }

  /** Any other node of the held documents, legal next hop or not. */
  peerOf(nodeId: Uint8Array): Peer | undefined {
    return this.nodes.get(idKey(nodeId));
  }

  isKnownPeer(peer: PeerId): boolean {
    return this.byPeer.has(peer.toString());
  }

  addressesOf(peer: PeerId): readonly Multiaddr[] | undefined {
    return this.byPeer.get(peer.toString())?.addrs;
  }

  get nextHopCount(): number {
    return this.next.size;
  }
}
