/**
 * Adversary: the final hop of a route (the recipient's gateway for mail, the home gateway for
 * SURB replies and loops, any node for drop cover). It must not learn how long the route was
 * (docs/threat-model.md, "A malicious mix"; docs/spec/sphinx.md §5.1 step 4).
 *
 * It unwraps its layer as docs/spec/sphinx.md §7 says and looks at everything the header holds
 * after its own slot, `D[s .. B)`. Before issue 11 the sender padded the last slot's region with
 * zeros, so `(maxHops - n) · s` zero bytes followed the slot and the hop read the route length n
 * off the first non-zero byte. The padding now comes from a stream keyed by the sender's secret.
 * The test builds forward packets and SURB replies of every length 1..maxHops with the real
 * code, carries them through the real hops, and runs two distinguishers at the final hop.
 */
import { describe, expect, it } from 'vitest';
import { deriveHopKeys } from '../proto/sphinx/keys.ts';
import {
  AD_LENGTH,
  DEFAULT_GEOMETRY,
  GROUP_ELEMENT_LENGTH,
  createPacket,
  createSurb,
  nodeSuite,
  packetFromSurb,
  prepareHopKey,
  processPacket,
  type RouteHop,
} from '../proto/sphinx/index.ts';

const geom = DEFAULT_GEOMETRY;
const s = geom.perHopSize;
const B = geom.maxHops * s;
const suite = nodeSuite;

interface Node {
  readonly secret: Uint8Array;
  readonly hop: RouteHop;
}
function node(): Node {
  const secret = suite.random(32);
  return { secret, hop: { nodeId: suite.random(32), publicKey: suite.publicKey(secret), delayMs: 10 } };
}

/** Carries `packet` through every hop but the last; returns what the last hop receives. */
function toFinalHop(route: readonly Node[], packet: Uint8Array): Uint8Array {
  let p = packet;
  for (const n of route.slice(0, -1)) {
    const r = processPacket(geom, prepareHopKey(suite, n.secret), p);
    if (!r.ok || r.kind !== 'forward') throw new Error(`hop failed: ${r.ok ? r.kind : r.reason}`);
    p = r.packet;
  }
  return p;
}

/** What the final hop reads after its own slot: D[s .. B) of §7 step 5, with its own key. */
function afterOwnSlot(secret: Uint8Array, packet: Uint8Array): Uint8Array {
  const alpha = packet.subarray(AD_LENGTH, AD_LENGTH + GROUP_ELEMENT_LENGTH);
  const shared = suite.dh(suite.prepareScalar(secret), suite.preparePoint(alpha))!;
  const k = deriveHopKeys(suite, shared);
  const d = new Uint8Array(B + s);
  d.set(packet.subarray(AD_LENGTH + GROUP_ELEMENT_LENGTH, AD_LENGTH + GROUP_ELEMENT_LENGTH + B));
  suite.xorStream(k.headerKey, d);
  return d.subarray(s, B);
}

/** Distinguisher 1: the run of zero bytes right after the slot, in slots, read as the missing hops. */
function guessFromZeros(rest: Uint8Array): number {
  let z = 0;
  while (z < rest.length && rest[z] === 0) z++;
  return geom.maxHops - Math.floor(z / s);
}

/** Distinguisher 2: how many bytes after the slot are zero (the padding was (maxHops - n) · s of them). */
function zeroBytes(rest: Uint8Array): number {
  return rest.reduce((a, b) => a + (b === 0 ? 1 : 0), 0);
}

/** Packets of every route length, as the final hop receives them, each with its true length. */
function samples(perLength: number): { n: number; kind: 'forward' | 'surb-reply'; rest: Uint8Array }[] {
  const out: { n: number; kind: 'forward' | 'surb-reply'; rest: Uint8Array }[] = [];
  for (let n = 1; n <= geom.maxHops; n++) {
    for (let i = 0; i < perLength; i++) {
      const route = Array.from({ length: n }, node);
      const hops = route.map((x) => x.hop);
      const last = route[n - 1]!;
      const fwd = createPacket(suite, geom, { route: hops, terminal: { kind: 'deliver', queueId: new Uint8Array(32) }, payload: new Uint8Array(10) });
      out.push({ n, kind: 'forward', rest: afterOwnSlot(last.secret, toFinalHop(route, fwd.packet)) });
      const { surb } = createSurb(suite, geom, { route: hops, queueId: new Uint8Array(32), surbId: new Uint8Array(16) });
      const reply = packetFromSurb(suite, geom, surb, new Uint8Array(8));
      if (!reply.ok) throw new Error('SURB did not wrap');
      out.push({ n, kind: 'surb-reply', rest: afterOwnSlot(last.secret, toFinalHop(route, reply.packet)) });
    }
  }
  return out;
}

describe('the final hop and the route length', () => {
  const all = samples(30);
  const chance = 1 / geom.maxHops;

  it('the bytes after its own slot carry no run of zeros that gives the length away', () => {
    const right = all.filter((x) => guessFromZeros(x.rest) === x.n).length / all.length;
    // under the old zero padding this guess was right for every packet (accuracy 1.0)
    expect(right).toBeLessThan(chance + 0.1);
  });

  it('they look uniformly random: about 1/256 zero bytes, whatever the length', () => {
    for (let n = 1; n <= geom.maxHops; n++) {
      const mine = all.filter((x) => x.n === n);
      const zeros = mine.reduce((a, x) => a + zeroBytes(x.rest), 0) / (mine.length * (B - s));
      expect(zeros).toBeLessThan(3 / 256);
    }
    // and no byte value stands out over all of them (chi-square, 255 d.o.f.: false alarm ~1e-8)
    const counts = new Array<number>(256).fill(0);
    let total = 0;
    for (const x of all)
      for (const b of x.rest) {
        counts[b]!++;
        total++;
      }
    const e = total / 256;
    expect(counts.reduce((a, c) => a + (c - e) ** 2 / e, 0)).toBeLessThan(400);
  });

  it('the count of zero bytes does not predict the length better than chance (best threshold rule)', () => {
    // the final hop's best single-threshold rule per pair of lengths, judged on the packets themselves
    for (let a = 1; a < geom.maxHops; a++) {
      const xa = all.filter((x) => x.n === a).map((x) => zeroBytes(x.rest));
      const xb = all.filter((x) => x.n === a + 1).map((x) => zeroBytes(x.rest));
      let best = 0;
      for (let t = 0; t <= B; t++) {
        const acc = (xa.filter((v) => v > t).length + xb.filter((v) => v <= t).length) / (xa.length + xb.length);
        best = Math.max(best, acc, 1 - acc);
      }
      expect(best).toBeLessThan(0.75);
    }
  });
});
