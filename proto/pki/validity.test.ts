import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_GEOMETRY } from '../sphinx/geometry.ts';
import { DEFAULT_MIXING } from '../mixing/params.ts';
import { buildDocumentBody, verifyDescriptor, type DocumentParams } from './index.ts';
import { epochEnd, epochStart, type EpochConfig } from './epoch.ts';
import { testNode } from '../../test/support/pki.ts';
import { generateIdentity, hex } from './keys.ts';
import {
  coversEpoch,
  documentAt,
  documentEpochAt,
  documentForEpoch,
  isFreshAt,
  isUsableAt,
  keysAheadOf,
  lastKeyEpoch,
  newestUsable,
  nodeSphinxKey,
} from './validity.ts';

const EC: EpochConfig = { origin: 1_000_000, length: 60, grace: 10 };
const PARAMS: DocumentParams = {
  epochConfig: EC,
  geometry: DEFAULT_GEOMETRY,
  mixing: DEFAULT_MIXING,
  numLayers: 2,
  authorities: [generateIdentity().publicKey],
  threshold: 1,
};
const E = 40;
const NODES = [...Array.from({ length: 4 }, (_, i) => testNode(E, i, 'mix')), testNode(E, 9, 'gateway')];
const BODY = buildDocumentBody(
  PARAMS,
  E,
  NODES.map((n) => verifyDescriptor(n.descriptor)),
);
const keyOf = (nodeId: Uint8Array, e: number) => hex(NODES.find((n) => hex(n.identity.nodeId) === hex(nodeId))!.keys[e - E]!.publicKey);

describe('document validity (fresh until the end of its epoch, valid while its keys last)', () => {
  it('is fresh for its epoch and usable for the epochs it has keys for', () => {
    expect(keysAheadOf(BODY)).toBe(3);
    expect(lastKeyEpoch(BODY)).toBe(E + 3);
    expect(isFreshAt(BODY, epochEnd(EC, E) - 1)).toBe(true);
    expect(isFreshAt(BODY, epochEnd(EC, E))).toBe(false);
    expect(isUsableAt(BODY, epochStart(EC, E) - 1)).toBe(false); // fetched ahead, not yet
    expect(isUsableAt(BODY, epochEnd(EC, E + 3) - 1)).toBe(true);
    expect(isUsableAt(BODY, epochEnd(EC, E + 3))).toBe(false);
    expect([E - 1, E, E + 3, E + 4].map((e) => coversEpoch(BODY, e))).toEqual([false, true, true, false]);
  });

  it('as of any time in its validity, lists every node under its key for that epoch', () => {
    fc.assert(
      fc.property(fc.integer({ min: epochStart(EC, E) - 2 * EC.length, max: epochEnd(EC, E + 5) }), (t) => {
        const d = documentAt(BODY, t);
        if (!isUsableAt(BODY, t)) return d === null;
        const e = documentEpochAt(BODY, t);
        expect(d).not.toBeNull();
        expect(d!.epoch).toBe(e);
        expect(d!.validAfter).toBe(epochStart(EC, e));
        expect(d!.freshUntil).toBe(epochEnd(EC, e));
        expect(d!.validUntil).toBe(BODY.validUntil);
        expect(keysAheadOf(d!)).toBe(E + 3 - e);
        const nodes = [...d!.layers.flat(), ...d!.gateways];
        expect(nodes).toHaveLength(NODES.length);
        for (const n of nodes) {
          expect(hex(n.sphinxKey)).toBe(keyOf(n.nodeId, e));
          expect(n.sphinxKeysAhead.map(hex)).toEqual(Array.from({ length: E + 3 - e }, (_, j) => keyOf(n.nodeId, e + 1 + j)));
          expect(hex(nodeSphinxKey(n, d!, e)!)).toBe(keyOf(n.nodeId, e));
        }
        expect(d!.layers.map((l) => l.map((n) => hex(n.nodeId)))).toEqual(BODY.layers.map((l) => l.map((n) => hex(n.nodeId))));
        return true;
      }),
    );
  });

  it('has no keys outside its epochs', () => {
    const n = BODY.layers[0]![0]!;
    expect(nodeSphinxKey(n, BODY, E - 1)).toBeUndefined();
    expect(nodeSphinxKey(n, BODY, E + 4)).toBeUndefined();
    expect(documentForEpoch(BODY, E + 4)).toBeNull();
    expect(documentForEpoch(BODY, E)).toBe(BODY);
  });

  it('routes by the newest usable document: the next one only once its epoch has begun', () => {
    const next = buildDocumentBody(
      PARAMS,
      E + 1,
      [testNode(E + 1, 20, 'mix'), testNode(E + 1, 21, 'mix')].map((n) => verifyDescriptor(n.descriptor)),
    );
    const docs = [{ body: BODY }, { body: next }];
    expect(newestUsable(docs, epochEnd(EC, E) - 1)?.body.epoch).toBe(E);
    expect(newestUsable(docs, epochEnd(EC, E))?.body.epoch).toBe(E + 1);
    // the authorities went quiet after E + 1: its keys carry the network to the end of E + 4
    expect(newestUsable(docs, epochEnd(EC, E + 4) - 1)?.body.epoch).toBe(E + 1);
    expect(newestUsable(docs, epochEnd(EC, E + 4))).toBeUndefined();
    expect(newestUsable([], epochEnd(EC, E))).toBeUndefined();
  });
});
