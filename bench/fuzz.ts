/**
 * Fuzz loop over every packet decoder: 100,000 random and mutated inputs (10,000 with --quick).
 * Counts outcomes per reason; any throw is a bug and is reported (and exits non-zero).
 */
import crypto from 'node:crypto';
import {
  DEFAULT_GEOMETRY as G,
  createPacket,
  createSurb,
  decodeCommands,
  decodeSurbKeys,
  nodeSuite,
  packetFromSurb,
  packetSizes,
  prepareHopKey,
  processPacket,
} from '../proto/sphinx/index.ts';
import { machineInfo, type BenchOptions, type BenchReport } from './harness.ts';

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const total = opts.quick ? 10_000 : 100_000;
  const sizes = packetSizes(G);
  const ns = Array.from({ length: 3 }, () => {
    const sk = new Uint8Array(crypto.randomBytes(32));
    return { id: new Uint8Array(crypto.randomBytes(32)), sk, pk: nodeSuite.publicKey(sk) };
  });
  const route = ns.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 3 }));
  const valid = createPacket(nodeSuite, G, { route, terminal: { kind: 'deliver', queueId: new Uint8Array(32) }, payload: new Uint8Array(100) }).packet;
  const { surb } = createSurb(nodeSuite, G, { route, queueId: new Uint8Array(32), surbId: new Uint8Array(16) });
  const key = prepareHopKey(nodeSuite, ns[0]!.sk);
  const outcomes: Record<string, number> = {};
  const count = (k: string) => (outcomes[k] = (outcomes[k] ?? 0) + 1);
  let throws = 0;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const mode = i % 5;
    try {
      if (mode === 0) {
        const r = processPacket(G, key, new Uint8Array(crypto.randomBytes(sizes.packet)));
        count(`packet/random/${r.ok ? r.kind : r.reason}`);
      } else if (mode === 1) {
        const p = valid.slice();
        const flips = 1 + (i % 16);
        for (let f = 0; f < flips; f++) p[crypto.randomInt(p.length)]! ^= 1 + crypto.randomInt(255);
        const r = processPacket(G, key, p);
        count(`packet/mutated/${r.ok ? r.kind : r.reason}`);
      } else if (mode === 2) {
        const len = crypto.randomInt(sizes.packet * 2);
        const r = processPacket(G, key, new Uint8Array(crypto.randomBytes(len)));
        count(`packet/any-length/${r.ok ? r.kind : r.reason}`);
      } else if (mode === 3) {
        const r = decodeCommands(new Uint8Array(crypto.randomBytes(G.perHopSize)));
        count(`commands/${r ? r.action : 'invalid'}`);
      } else {
        const s = surb.slice();
        s[crypto.randomInt(s.length)]! ^= 1;
        const r1 = packetFromSurb(nodeSuite, G, i % 2 ? s : s.subarray(0, crypto.randomInt(s.length)), new Uint8Array(10));
        const r2 = decodeSurbKeys(new Uint8Array(crypto.randomBytes(crypto.randomInt(700))));
        count(`surb/${r1.ok ? 'wrapped' : r1.reason}/${r2 ? 'keys' : 'no-keys'}`);
      }
    } catch (e) {
      throws++;
      count(`THROW/${(e as Error).message}`);
    }
    if ((i + 1) % 20_000 === 0) opts.log(`  fuzz: ${i + 1}/${total} inputs`);
  }
  const wall = (performance.now() - start) / 1000;
  opts.log(`fuzz: ${total} inputs in ${wall.toFixed(1)} s, ${throws} throws`);
  for (const [k, v] of Object.entries(outcomes).sort()) opts.log(`  ${k}: ${v}`);
  if (throws > 0) process.exitCode = 1;
  return { suite: 'fuzz', machine: machineInfo(), results: { inputs: total, throws, wall_s: wall, outcomes } };
}
