import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeCommands, encodeCommands, type HopCommands } from './commands.ts';
import { DEFAULT_GEOMETRY, SPHINX_DROP_REASONS, packetSizes, type Geometry } from './index.ts';
import { createPacket, prepareHopKey, processPacket } from './packet.ts';
import { nobleSuite } from './suite-noble.ts';
import { nodeSuite } from './suite-node.ts';
import { createSurb, decodeSurbKeys, encodeSurbKeys, openSurbReply, packetFromSurb } from './surb.ts';
import type { HopResult, RouteHop } from './types.ts';
import type { SphinxSuite } from './suite.ts';

const G = DEFAULT_GEOMETRY;
const sizes = packetSizes(G);

interface Node {
  id: Uint8Array;
  sk: Uint8Array;
  pk: Uint8Array;
}

function makeNodes(suite: SphinxSuite, n: number, seed: number): Node[] {
  return Array.from({ length: n }, (_, i) => {
    const sk = new Uint8Array(32).fill((seed * 31 + i * 7 + 1) & 0xff);
    sk[0] = i;
    sk[1] = seed & 0xff;
    const id = new Uint8Array(32).fill(i + 1);
    id[1] = seed & 0xff;
    return { id, sk, pk: suite.publicKey(sk) };
  });
}

/** Walks a packet along `nodes`; returns every hop's result. */
function walk(geom: Geometry, suite: SphinxSuite, nodes: Node[], packet: Uint8Array): HopResult[] {
  const results: HopResult[] = [];
  let p = packet;
  for (const n of nodes) {
    const r = processPacket(geom, prepareHopKey(suite, n.sk), p);
    results.push(r);
    if (!r.ok || r.kind !== 'forward') break;
    p = r.packet;
  }
  return results;
}

const queueId = new Uint8Array(32).fill(0x51);

const routeArb = fc.record({
  hops: fc.integer({ min: 1, max: G.maxHops }),
  delays: fc.array(fc.integer({ min: 0, max: 0xffffffff }), { minLength: G.maxHops, maxLength: G.maxHops }),
  payload: fc.uint8Array({ minLength: 0, maxLength: G.payloadSize }),
  seed: fc.integer({ min: 0, max: 255 }),
  ephemeral: fc.uint8Array({ minLength: 32, maxLength: 32 }),
  drop: fc.boolean(),
});

describe('Sphinx forward packets', () => {
  it('a packet for any route of 1..maxHops is processed correctly hop by hop (node suite)', () => {
    fc.assert(
      fc.property(routeArb, ({ hops, delays, payload, seed, ephemeral, drop }) => {
        const nodes = makeNodes(nodeSuite, hops, seed);
        const route: RouteHop[] = nodes.map((n, i) => ({ nodeId: n.id, publicKey: n.pk, delayMs: delays[i]! }));
        const terminal = drop ? ({ kind: 'drop' } as const) : ({ kind: 'deliver', queueId } as const);
        const { packet, firstHop } = createPacket(nodeSuite, G, { route, terminal, payload, ephemeral });
        expect(packet.length).toBe(sizes.packet);
        expect(firstHop).toEqual(nodes[0]!.id);
        const res = walk(G, nodeSuite, nodes, packet);
        expect(res.length).toBe(hops);
        res.forEach((r, i) => {
          if (!r.ok) throw new Error(`hop ${i} dropped: ${r.reason}`);
          expect(r.delayMs).toBe(delays[i]);
          if (i < hops - 1) {
            expect(r.kind).toBe('forward');
            if (r.kind === 'forward') {
              expect(r.next).toEqual(nodes[i + 1]!.id);
              expect(r.packet.length).toBe(sizes.packet);
            }
          }
        });
        const last = res[hops - 1]!;
        if (!last.ok) throw new Error('unreachable');
        if (drop) expect(last.kind).toBe('drop');
        else {
          expect(last.kind).toBe('deliver');
          if (last.kind === 'deliver') {
            expect(last.queueId).toEqual(queueId);
            expect(last.surbId).toBeUndefined();
            expect(last.payload.subarray(0, payload.length)).toEqual(payload);
            expect(last.payload.subarray(payload.length).every((b) => b === 0)).toBe(true);
          }
        }
        // replay tags differ per hop
        const tags = new Set(res.map((r) => (r.ok ? Buffer.from(r.replayTag).toString('hex') : '')));
        expect(tags.size).toBe(hops);
      }),
      { numRuns: 60 },
    );
  });

  it('the node and noble suites produce byte-identical packets and results', () => {
    fc.assert(
      fc.property(routeArb, ({ hops, delays, payload, seed, ephemeral }) => {
        const a = makeNodes(nodeSuite, hops, seed);
        const route: RouteHop[] = a.map((n, i) => ({ nodeId: n.id, publicKey: n.pk, delayMs: delays[i]! }));
        const input = { route, terminal: { kind: 'deliver', queueId } as const, payload, ephemeral };
        const p1 = createPacket(nodeSuite, G, input).packet;
        const p2 = createPacket(nobleSuite, G, input).packet;
        expect(Buffer.from(p1).equals(Buffer.from(p2))).toBe(true);
        const r1 = walk(G, nodeSuite, a, p1);
        const r2 = walk(G, nobleSuite, a, p2);
        expect(r2).toEqual(r1);
      }),
      { numRuns: 8 },
    );
  });

  it('works at the largest payload the network document may choose (32 KiB)', () => {
    const geom: Geometry = { ...G, payloadSize: 32 * 1024 };
    const nodes = makeNodes(nodeSuite, 4, 9);
    const route = nodes.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 1 }));
    const payload = new Uint8Array(32 * 1024).map((_, i) => i & 0xff);
    const { packet } = createPacket(nodeSuite, geom, { route, terminal: { kind: 'deliver', queueId }, payload });
    expect(packet.length).toBe(packetSizes(geom).packet);
    const last = walk(geom, nodeSuite, nodes, packet).at(-1)!;
    expect(last.ok && last.kind === 'deliver' && Buffer.from(last.payload).equals(Buffer.from(payload))).toBe(true);
  });

  it('flipping any bit of the header makes that hop reject the packet', () => {
    const nodes = makeNodes(nodeSuite, 3, 4);
    const route = nodes.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 5 }));
    const { packet } = createPacket(nodeSuite, G, { route, terminal: { kind: 'deliver', queueId }, payload: new Uint8Array(10) });
    const key = prepareHopKey(nodeSuite, nodes[0]!.sk);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: sizes.header * 8 - 1 }), (bit) => {
        const p = packet.slice();
        p[bit >> 3]! ^= 1 << (bit & 7);
        const r = processPacket(G, key, p);
        expect(r.ok).toBe(false);
        if (!r.ok) expect(['bad-version', 'bad-mac', 'bad-group-element']).toContain(r.reason);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a second encoding of α (its top bit, which X25519 ignores, set)', () => {
    const nodes = makeNodes(nodeSuite, 3, 6);
    const route = nodes.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 5 }));
    const { packet } = createPacket(nodeSuite, G, { route, terminal: { kind: 'deliver', queueId }, payload: new Uint8Array(10) });
    const key = prepareHopKey(nodeSuite, nodes[0]!.sk);
    expect(processPacket(G, key, packet).ok).toBe(true);
    const p = packet.slice();
    p[2 + 31]! ^= 0x80;
    expect(processPacket(G, key, p)).toEqual({ ok: false, reason: 'bad-group-element' });
  });

  it('flipping any bit of the payload makes the final check fail', () => {
    const nodes = makeNodes(nodeSuite, 3, 5);
    const route = nodes.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 5 }));
    const { packet } = createPacket(nodeSuite, G, { route, terminal: { kind: 'deliver', queueId }, payload: new Uint8Array(100).fill(7) });
    fc.assert(
      fc.property(fc.integer({ min: sizes.header * 8, max: sizes.packet * 8 - 1 }), fc.integer({ min: 0, max: 2 }), (bit, at) => {
        // tamper on the link into hop `at`
        let p = packet;
        for (let i = 0; i < at; i++) {
          const r = processPacket(G, prepareHopKey(nodeSuite, nodes[i]!.sk), p);
          if (!r.ok || r.kind !== 'forward') throw new Error('setup');
          p = r.packet;
        }
        p = p.slice();
        p[bit >> 3]! ^= 1 << (bit & 7);
        const res = walk(G, nodeSuite, nodes.slice(at), p);
        const last = res.at(-1)!;
        // intermediate hops cannot tell (the payload is a wide block); the final hop must
        expect(res.length).toBe(3 - at);
        expect(last).toEqual({ ok: false, reason: 'bad-payload' });
      }),
      { numRuns: 150 },
    );
  });

  it('the replay callback drops a packet whose tag was seen', () => {
    const nodes = makeNodes(nodeSuite, 2, 6);
    const route = nodes.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 0 }));
    const { packet } = createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(0) });
    const seen = new Set<string>();
    const isReplay = (t: Uint8Array) => {
      const k = Buffer.from(t).toString('hex');
      if (seen.has(k)) return true;
      seen.add(k);
      return false;
    };
    const key = prepareHopKey(nodeSuite, nodes[0]!.sk);
    expect(processPacket(G, key, packet, { isReplay }).ok).toBe(true);
    expect(processPacket(G, key, packet, { isReplay })).toEqual({ ok: false, reason: 'replay' });
  });

  it('a packet for one node is rejected by another', () => {
    const nodes = makeNodes(nodeSuite, 2, 8);
    const route = nodes.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 0 }));
    const { packet } = createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(0) });
    expect(processPacket(G, prepareHopKey(nodeSuite, nodes[1]!.sk), packet)).toEqual({ ok: false, reason: 'bad-mac' });
  });
});

describe('SURBs', () => {
  it.each([nodeSuite, nobleSuite])('a reply round-trips through any route ($name)', (suite) => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: G.maxHops }),
        fc.uint8Array({ minLength: 0, maxLength: G.payloadSize }),
        fc.integer({ min: 0, max: 255 }),
        (hops, reply, seed) => {
          const nodes = makeNodes(suite, hops, seed);
          const route = nodes.map((n, i) => ({ nodeId: n.id, publicKey: n.pk, delayMs: i }));
          const surbId = new Uint8Array(16).fill(seed);
          const { surb, keys } = createSurb(suite, G, { route, queueId, surbId });
          expect(surb.length).toBe(sizes.surb);
          const used = packetFromSurb(suite, G, surb, reply);
          if (!used.ok) throw new Error(used.reason);
          expect(used.firstHop).toEqual(nodes[0]!.id);
          const last = walk(G, suite, nodes, used.packet).at(-1)!;
          if (!last.ok || last.kind !== 'deliver') throw new Error('not delivered');
          expect(last.surbId).toEqual(surbId);
          expect(last.queueId).toEqual(queueId);
          const stored = decodeSurbKeys(encodeSurbKeys(keys));
          expect(stored).not.toBeNull();
          const opened = openSurbReply(suite, G, stored!, last.payload);
          if (!opened.ok) throw new Error(opened.reason);
          expect(opened.payload.subarray(0, reply.length)).toEqual(reply);
          // a modified reply does not open
          const bad = last.payload.slice();
          bad[bad.length - 1]! ^= 1;
          expect(openSurbReply(suite, G, keys, bad)).toEqual({ ok: false, reason: 'bad-payload' });
        },
      ),
      { numRuns: suite === nodeSuite ? 40 : 4 },
    );
  });

  it('rejects malformed SURBs and oversize replies without throwing', () => {
    expect(packetFromSurb(nodeSuite, G, new Uint8Array(5), new Uint8Array(1))).toEqual({ ok: false, reason: 'bad-length' });
    expect(packetFromSurb(nodeSuite, G, new Uint8Array(sizes.surb), new Uint8Array(G.payloadSize + 1))).toEqual({
      ok: false,
      reason: 'bad-payload-size',
    });
    expect(decodeSurbKeys(new Uint8Array(10))).toBeNull();
  });
});

describe('decoders never throw', () => {
  const key = prepareHopKey(nodeSuite, new Uint8Array(32).fill(1));
  const reasons = new Set(SPHINX_DROP_REASONS);

  it('wrong lengths, all-zero and random packets get a typed error', () => {
    for (const len of [0, 1, sizes.packet - 1, sizes.packet + 1, 100_000]) {
      expect(processPacket(G, key, new Uint8Array(len))).toEqual({ ok: false, reason: 'bad-length' });
    }
    const zero = new Uint8Array(sizes.packet);
    expect(processPacket(G, key, zero)).toEqual({ ok: false, reason: 'bad-version' });
    zero[0] = 1;
    expect(processPacket(G, key, zero)).toEqual({ ok: false, reason: 'bad-group-element' });
    fc.assert(
      fc.property(fc.uint8Array({ minLength: sizes.packet, maxLength: sizes.packet }), fc.boolean(), (p, fixVersion) => {
        if (fixVersion) {
          p[0] = 1;
          p[1] = 0;
        }
        const r = processPacket(G, key, p);
        expect(r.ok).toBe(false);
        if (!r.ok) expect(reasons.has(r.reason)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('fuzz loop: 2,000 mutated valid packets never throw and never pass as another packet', () => {
    const nodes = makeNodes(nodeSuite, 3, 11);
    const route = nodes.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 1 }));
    const { packet } = createPacket(nodeSuite, G, { route, terminal: { kind: 'deliver', queueId }, payload: new Uint8Array(50) });
    const k0 = prepareHopKey(nodeSuite, nodes[0]!.sk);
    let rng = 12345;
    const rand = () => (rng = (rng * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let forwarded = 0;
    for (let i = 0; i < 2000; i++) {
      const p = packet.slice();
      const flips = 1 + Math.floor(rand() * 8);
      for (let f = 0; f < flips; f++) p[Math.floor(rand() * p.length)]! ^= 1 + Math.floor(rand() * 255);
      const r = processPacket(G, k0, p);
      if (r.ok) {
        // only payload damage passes hop 0 (the payload is checked at the end)
        expect(r.kind).toBe('forward');
        forwarded++;
      } else expect(reasons.has(r.reason)).toBe(true);
    }
    expect(forwarded).toBeLessThan(2000);
  });

  it('routing commands: encode/decode round-trips, random slots never throw', () => {
    const cmdArb: fc.Arbitrary<HopCommands> = fc.oneof(
      fc.record({
        action: fc.constant('next' as const),
        next: fc.uint8Array({ minLength: 32, maxLength: 32 }),
        mac: fc.uint8Array({ minLength: 16, maxLength: 16 }),
        delayMs: fc.integer({ min: 0, max: 0xffffffff }),
      }),
      fc.record({
        action: fc.constant('deliver' as const),
        queueId: fc.uint8Array({ minLength: 32, maxLength: 32 }),
        surbId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
        delayMs: fc.integer({ min: 0, max: 0xffffffff }),
      }),
      fc.record({ action: fc.constant('drop' as const), delayMs: fc.integer({ min: 0, max: 0xffffffff }) }),
    );
    fc.assert(
      fc.property(cmdArb, (c) => {
        const slot = new Uint8Array(G.perHopSize);
        encodeCommands(c, slot);
        expect(decodeCommands(slot)).toEqual(c);
      }),
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (slot) => {
        const r = decodeCommands(slot);
        expect(r === null || typeof r.action === 'string').toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
