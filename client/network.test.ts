/**
 * The client follows epochs by its documents' clock: the newest usable document routes, a next
 * one fetched ahead takes over at the boundary, an older one goes on under the keys it lists
 * for the epoch while no newer one comes, and none routes past its validity (the old client kept
 * building packets under a dead document, which the first mix counted as bad-mac).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_GEOMETRY, nodeSuite } from '../proto/sphinx/index.ts';
import { DEFAULT_MIXING } from '../proto/mixing/params.ts';
import {
  buildDocumentBody,
  combineSignatures,
  encodeCheckedDocumentBody,
  epochEnd,
  epochStart,
  generateIdentity,
  hex,
  signDocumentBody,
  verifyDescriptor,
  verifyDocument,
  type DocumentParams,
  type EpochConfig,
  type VerifiedDocument,
} from '../proto/pki/index.ts';
import { testNode, type TestNode } from '../test/support/pki.ts';
import { OverlayConnection } from './network.ts';
import { buildDropPacket } from './sender.ts';
import { seededUniform } from '../test/support/in-process-mixnet.ts';

const EC: EpochConfig = { origin: 1_000_000, length: 60, grace: 10 };
const AUTH = generateIdentity();
const PARAMS: DocumentParams = {
  epochConfig: EC,
  geometry: DEFAULT_GEOMETRY,
  mixing: DEFAULT_MIXING,
  numLayers: 2,
  authorities: [AUTH.publicKey],
  threshold: 1,
};
const E = 300;

function signed(epoch: number, nodes: readonly TestNode[]): VerifiedDocument {
  const body = encodeCheckedDocumentBody(
    buildDocumentBody(
      PARAMS,
      epoch,
      nodes.map((n) => verifyDescriptor(n.descriptor)),
    ),
  );
  return verifyDocument(combineSignatures(body, [signDocumentBody(AUTH, body)]), { authorities: [AUTH.publicKey], threshold: 1 });
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function overlay(doc: VerifiedDocument | undefined, clock: { t: number }) {
  const o = await OverlayConnection.open({ document: doc, mailboxId: new Uint8Array(32), home: '', log: null, now: () => clock.t });
  closers.push(() => o.close());
  return o;
}

describe('the client overlay follows epochs', () => {
  const nodesE = [testNode(E, 1, 'mix'), testNode(E, 2, 'mix'), testNode(E, 3, 'gateway')];
  const docE = signed(E, nodesE);
  const keyOf = (nodeId: Uint8Array, e: number) => hex(nodesE.find((n) => hex(n.identity.nodeId) === hex(nodeId))!.keys[e - E]!.publicKey);

  it('builds under each epoch’s keys from an older document while no newer one comes, and stops when its keys end', async () => {
    const clock = { t: epochStart(EC, E) + 1 };
    const o = await overlay(docE, clock);
    expect(o.document()!.epoch).toBe(E);
    expect(o.stale).toBe(false);
    for (const e of [E + 1, E + 2, E + 3]) {
      clock.t = epochStart(EC, e) + 30;
      const d = o.document()!;
      expect(d.epoch).toBe(e);
      expect(o.stale).toBe(true);
      for (const n of [...d.layers.flat(), ...d.gateways]) expect(hex(n.sphinxKey)).toBe(keyOf(n.nodeId, e));
      // and the packets say so: the key phase in the header is this epoch's
      expect(buildDropPacket(nodeSuite, d, seededUniform(1)).packet[1]).toBe(e & 0xff);
    }
    clock.t = epochEnd(EC, E + 3);
    expect(o.document()).toBeNull();
    expect(o.home()).toBeNull();
  });

  it('takes a document fetched ahead at its boundary, and refuses a second body for an epoch', async () => {
    const clock = { t: epochStart(EC, E) + 50 };
    const o = await overlay(docE, clock);
    const next = signed(E + 1, [testNode(E + 1, 7, 'mix'), testNode(E + 1, 8, 'mix'), testNode(E + 1, 9, 'gateway')]);
    expect(o.update(next)).toBe(true);
    expect(o.document()!.epoch).toBe(E); // not before its epoch
    clock.t = epochStart(EC, E + 1);
    expect(o.document()!.epoch).toBe(E + 1);
    expect(o.current).toBe(next);
    expect(o.stale).toBe(false);
    const other = signed(E + 1, [testNode(E + 1, 10, 'mix'), testNode(E + 1, 11, 'mix')]);
    expect(o.update(other)).toBe(false);
    expect(o.current).toBe(next);
    // past the grace window only the document in use is kept
    clock.t = epochStart(EC, E + 1) + EC.grace + 1;
    o.document();
    expect(o.documents().map((d) => d.body.epoch)).toEqual([E + 1]);
  });

  it('answers ahead of time (a packet built ahead of its slot): the document its slot will route by, past the boundary too', async () => {
    const clock = { t: epochStart(EC, E) + 59 };
    const o = await overlay(docE, clock);
    // within the epoch: the very document routing now
    expect(o.document(500)).toBe(o.document());
    // past the boundary with no newer document: the next epoch's keys from this one, and the
    // same document (epoch, start, predecessor) that routes once the clock is there
    const ahead = o.document(2_000)!;
    expect(ahead.epoch).toBe(E + 1);
    for (const n of [...ahead.layers.flat(), ...ahead.gateways]) expect(hex(n.sphinxKey)).toBe(keyOf(n.nodeId, E + 1));
    expect(o.home(2_000)!.sphinxKey).toEqual(ahead.gateways[0]!.sphinxKey);
    // a document fetched ahead for the next epoch: that one, by identity, as after the boundary
    const next = signed(E + 1, [testNode(E + 1, 7, 'mix'), testNode(E + 1, 8, 'mix'), testNode(E + 1, 9, 'gateway')]);
    o.update(next);
    expect(o.document()!.epoch).toBe(E);
    const built = o.document(2_000)!;
    expect(built).toBe(next.body);
    clock.t = epochStart(EC, E + 1) + 1;
    expect(o.document()).toBe(built);
  });

  it('starts without any document, holds (null), and attaches when one is given', async () => {
    const clock = { t: epochStart(EC, E) + 5 };
    const o = await overlay(undefined, clock);
    expect(o.document()).toBeNull();
    expect(o.update(docE)).toBe(true);
    expect(o.document()!.epoch).toBe(E);
    expect(o.home()).not.toBeNull();
  });
});
