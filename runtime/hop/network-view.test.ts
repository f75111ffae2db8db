import { describe, expect, it } from 'vitest';
import { peerIdFromString } from '@libp2p/peer-id';
import { testDocumentBody as doc } from '../../test/support/pki.ts';
import type { DocumentBody, VerifiedDocument } from '../../proto/pki/index.ts';
import { NetworkView } from './network-view.ts';

const verified = (body: DocumentBody): VerifiedDocument => ({
  body,
  bytes: new Uint8Array(0),
  bodyBytes: new Uint8Array(0),
  digest: new Uint8Array(32),
  signers: [],
});

describe('network view', () => {
  it('routes a layer-k mix only to layer k+1 (the last layer to gateways) and admits every listed peer', () => {
    const b = doc([2, 2, 2], { gateways: 2 });
    const me = b.layers[0]![0]!;
    const v = new NetworkView(me.nodeId);
    v.add(verified(b));
    expect(v.update(1, false)).toBe(true);
    expect(v.update(1, false)).toBe(false);
    expect(v.layer).toBe(1);
    expect(v.resolveNext(b.layers[1]![0]!.nodeId)).toBeDefined();
    expect(v.resolveNext(b.layers[2]![0]!.nodeId)).toBeUndefined();
    expect(v.resolveNext(b.gateways[0]!.nodeId)).toBeUndefined();
    const last = new NetworkView(b.layers[2]![1]!.nodeId);
    last.add(verified(b));
    last.update(1, false);
    expect(last.resolveNext(b.gateways[1]!.nodeId)).toBeDefined();
    expect(last.resolveNext(b.layers[0]![0]!.nodeId)).toBeUndefined();
    for (const n of [...b.layers.flat(), ...b.gateways]) {
      if (n === me) continue;
      expect(v.isKnownPeer(peerIdFromString(n.peerId))).toBe(true);
      expect(v.peerOf(n.nodeId)?.entry).toBe(n);
      expect(v.addressesOf(peerIdFromString(n.peerId))?.map(String)).toEqual([`${n.addresses[0]}/p2p/${n.peerId}`]);
    }
    expect(v.peerOf(me.nodeId)).toBeUndefined();
  });

  it('routes a gateway only to layer 1 (the way back of a mix loop)', () => {
    const b = doc([2, 2, 2], { gateways: 2 });
    const g = new NetworkView(b.gateways[0]!.nodeId);
    g.add(verified(b));
    g.update(1, false);
    expect(g.layer).toBe(0);
    expect(g.nextHopCount).toBe(2);
    for (const n of b.layers[0]!) expect(g.resolveNext(n.nodeId)).toBeDefined();
    for (const n of [...b.layers[1]!, ...b.layers[2]!, ...b.gateways]) expect(g.resolveNext(n.nodeId)).toBeUndefined();
    // a node in no role of the document has no next hop at all
    const stranger = new NetworkView(new Uint8Array(32).fill(1));
    stranger.add(verified(b));
    stranger.update(1, false);
    expect(stranger.nextHopCount).toBe(0);
  });

  it('takes a replaced document for an epoch it holds at the next update', () => {
    const b = doc([1, 1, 1]);
    const me = b.layers[0]![0]!;
    const v = new NetworkView(me.nodeId);
    v.add(verified(b));
    v.update(1, false);
    const moved = { ...b, layers: [b.layers[0]!, [], b.layers[1]!] };
    v.add(verified(moved));
    expect(v.update(1, false)).toBe(true);
    expect(v.resolveNext(b.layers[1]![0]!.nodeId)).toBeUndefined();
  });
});
