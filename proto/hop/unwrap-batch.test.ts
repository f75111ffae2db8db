/**
 * The batch unwrap the worker threads run gives what processPacket gives on this thread, slot
 * for slot, on every suite: the spec vectors (docs/spec/vectors/sphinx.json) peeled in one batch
 * per vector, and forward / deliver / SURB reply / cover / refused packets through the slots.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_GEOMETRY as G,
  createPacket,
  createSurb,
  packetFromSurb,
  makeSodiumSuite,
  nobleSuite,
  nodeSuite,
  packetSizes,
  prepareHopKey,
  processPacket,
  requireSodiumNative,
  type HopResult,
  type SphinxSuite,
} from '../sphinx/index.ts';
import type { AllVectors } from '../sphinx/vectors.ts';
import { fromHex, hex } from '../util/bytes.ts';
import { readSlot, slotBytes, unwrapBatch } from './unwrap-batch.ts';

const stored = JSON.parse(readFileSync(new URL('../../docs/spec/vectors/sphinx.json', import.meta.url), 'utf8')) as AllVectors;

function batchOf(suite: SphinxSuite, geom: typeof G, frames: Uint8Array[], secrets: Uint8Array[]) {
  const P = packetSizes(geom).packet;
  const flat = new Uint8Array(new SharedArrayBuffer(frames.length * P));
  frames.forEach((f, i) => flat.set(f, i * P));
  const results = new Uint8Array(new SharedArrayBuffer(frames.length * slotBytes(geom)));
  unwrapBatch(
    { geometry: geom, count: frames.length, frames: flat, keyIndex: Uint8Array.from(frames.map((_, i) => i)), results },
    secrets.map((s) => prepareHopKey(suite, s)),
  );
  return frames.map((_, i) => readSlot(geom, results, i));
}

describe.each([makeSodiumSuite(requireSodiumNative()), nodeSuite, nobleSuite])('unwrapBatch: $name suite', (suite) => {
  it.each(stored.forward.map((v) => [v.name, v] as const))('spec vector %s: every hop in one batch, bit for bit', (_n, v) => {
    const geom = v.geometry;
    const got = batchOf(
      suite,
      geom,
      v.hops.map((h) => fromHex(h.packetIn)),
      v.hops.map((h) => fromHex(h.secretKey)),
    );
    v.hops.forEach((h, i) => {
      const { result, tag } = got[i]!;
      expect(hex(tag!)).toBe(h.replayTag);
      expect(result.ok && result.kind).toBe(h.result);
      if (result.ok && result.kind === 'forward') {
        expect(hex(result.packet)).toBe(v.hops[i + 1]!.packetIn);
        expect(hex(result.next)).toBe(v.hops[i + 1]!.nodeId);
        expect(result.delayMs).toBe(h.delayMs);
      }
      if (result.ok && result.kind === 'deliver') {
        expect(hex(result.payload)).toBe(v.deliveredPayload);
        expect(hex(result.queueId)).toBe(v.queueId);
      }
    });
  });

  it('the same results as processPacket, for forward, deliver, SURB reply, cover and refused packets', () => {
    const sk = suite.random(32);
    const me = { nodeId: new Uint8Array(32).fill(1), publicKey: suite.publicKey(sk) };
    const next = { nodeId: new Uint8Array(32).fill(2), publicKey: suite.publicKey(suite.random(32)) };
    const forward = createPacket(suite, G, {
      route: [
        { ...me, delayMs: 77 },
        { ...next, delayMs: 0 },
      ],
      terminal: { kind: 'drop' },
      payload: new Uint8Array([1, 2, 3]),
    }).packet;
    const deliver = createPacket(suite, G, {
      route: [{ ...me, delayMs: 5 }],
      terminal: { kind: 'deliver', queueId: new Uint8Array(32).fill(9) },
      payload: new Uint8Array([4, 5]),
    }).packet;
    const cover = createPacket(suite, G, { route: [{ ...me, delayMs: 3 }], terminal: { kind: 'drop' }, payload: new Uint8Array(0) }).packet;
    const { surb } = createSurb(suite, G, { route: [{ ...me, delayMs: 1 }], queueId: new Uint8Array(32).fill(7), surbId: new Uint8Array(16).fill(3) });
    const used = packetFromSurb(suite, G, surb, new Uint8Array([6, 6]));
    if (!used.ok) throw new Error(used.reason);
    const reply = used.packet;
    const badMac = forward.slice();
    badMac[100]! ^= 1;
    const badVersion = forward.slice();
    badVersion[0] = 9;
    const frames = [forward, deliver, cover, reply, badMac, badVersion];
    const got = batchOf(
      suite,
      G,
      frames,
      frames.map(() => sk),
    );
    const key = prepareHopKey(suite, sk);
    frames.forEach((f, i) => {
      let tag: Uint8Array | undefined;
      const want: HopResult = processPacket(G, key, f, { isReplay: (t) => ((tag = t), false) });
      expect(got[i]!.result).toEqual(want);
      expect(got[i]!.tag).toEqual(tag);
    });
    expect(got.map((g) => (g.result.ok ? g.result.kind : g.result.reason))).toEqual(['forward', 'deliver', 'drop', 'deliver', 'bad-mac', 'bad-version']);
  });
});
