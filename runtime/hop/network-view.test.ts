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

  it('routes by an older document that lists keys for the epoch while the authorities publish none', () => {
    const b1 = doc([1, 1, 1], { epoch: 1, keysAhead: 3 });
    const me = b1.layers[0]![0]!;
    const v = new NetworkView(me.nodeId);
    v.add(verified(b1));
    expect(v.update(1, false)).toBe(true);
    expect(v.stale).toBe(false);
    // epochs 2..4: no newer document; b1 routes on, under its keys for each epoch
    for (const e of [2, 3, 4]) {
      v.update(e, true);
      expect(v.current?.body).toBe(b1);
      expect(v.stale).toBe(true);
      expect(v.resolveNext(b1.layers[1]![0]!.nodeId)).toBeDefined();
      const now = v.documentAt(e * 100 + 50)!;
      expect(now.epoch).toBe(e);
      expect(now.layers[1]![0]!.sphinxKey).toEqual(b1.layers[1]![0]!.sphinxKeysAhead[e - 2]);
    }
    // past its last keys: nothing to build packets with; packets under epoch 4's keys are routed
    // through the grace window, then nothing is
    v.update(5, true);
    expect(v.current).toBeUndefined();
    expect(v.documentAt(505)).toBeUndefined();
    expect(v.resolveNext(b1.layers[1]![0]!.nodeId)).toBeDefined();
    v.update(5, false);
    expect(v.resolveNext(b1.layers[1]![0]!.nodeId)).toBeUndefined();
    expect(v.epochs()).toEqual([]);
  });

  it('takes a newer document when its epoch begins, keeps the one before through the grace window, then forgets it', () => {
    const b1 = doc([1, 1, 1], { epoch: 1, keysAhead: 3 });
    const b2 = doc([1, 1, 1], { epoch: 2, keysAhead: 3 });
    const v = new NetworkView(b1.layers[0]![0]!.nodeId);
    v.add(verified(b1));
    v.add(verified(b2)); // fetched ahead
    v.update(1, false);
    expect(v.current?.body).toBe(b1);
    expect(v.epochs()).toEqual([1, 2]);
    v.update(2, true);
    expect(v.current?.body).toBe(b2);
    expect(v.stale).toBe(false);
    expect(v.epochs()).toEqual([1, 2]); // b1 routes what was built under epoch 1's keys
    expect(v.resolveNext(b1.layers[1]![0]!.nodeId)).toBeDefined();
    v.update(2, false);
    expect(v.epochs()).toEqual([2]);
    expect(v.resolveNext(b1.layers[1]![0]!.nodeId)).toBeUndefined();
    // a client (no schedule of its own) follows by the documents' clock
    const c = new NetworkView(new Uint8Array(32).fill(9));
    c.add(verified(b1));
    c.add(verified(b2));
    c.updateAt(199);
    expect(c.current?.body).toBe(b1);
    c.updateAt(200);
    expect(c.current?.body).toBe(b2);
  });
});
