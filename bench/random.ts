/**
 * Uniform draws (`npm run bench -- random`): the cost of one number in [0, 1) from
 * - the engine's built-in generator (xorshift128+; predictable, so production never uses it),
 * - one `crypto.randomBytes(8)` call per draw (the simplest CSPRNG draw),
 * - `csprngUniform` (proto/util/random.ts: 53 bits from a 4 KiB randomFillSync pool; production),
 * - a ChaCha20 DRBG with fast key erasure (@noble/ciphers keystream, 4 KiB per refill, the first
 *   32 bytes of each block becoming the next key), seeded once from the OS: the alternative the
 *   pool was measured against.
 * Also draws per client packet (what a fragment packet with its SURB takes) and the cost of those
 * draws per packet. Figures only; nothing is asserted.
 */
import { chacha20 } from '@noble/ciphers/chacha.js';
import { randomBytes } from 'node:crypto';
import type { Uniform } from '../proto/mixing/params.ts';
import { csprngUniform } from '../proto/util/random.ts';
import { buildFragmentPacket } from '../client/sender.ts';
import { InProcessMixnet } from '../test/support/in-process-mixnet.ts';
import { nodeSuite } from '../proto/sphinx/index.ts';
import { fmt, machineInfo, opsPerSecond, type BenchOptions, type BenchReport } from './harness.ts';

function chachaDrbg(): Uniform {
  let key = new Uint8Array(randomBytes(32));
  const nonce = new Uint8Array(12);
  const zeros = new Uint8Array(4096 + 32);
  let words = new Uint32Array(0);
  let next = 0;
  return () => {
    if (next + 2 > words.length) {
      const out = chacha20(key, nonce, zeros);
      key = out.slice(0, 32);
      words = new Uint32Array(out.buffer, out.byteOffset + 32, 1024);
      next = 0;
    }
    const hi = words[next]! >>> 11;
    const lo = words[next + 1]!;
    next += 2;
    return (hi * 2 ** 32 + lo) / 2 ** 53;
  };
}

const perDrawRandomBytes: Uniform = () => {
  const b = randomBytes(8);
  return ((b.readUInt32BE(0) >>> 11) * 2 ** 32 + b.readUInt32BE(4)) / 2 ** 53;
};

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const secs = opts.quick ? 0.3 : 1.5;
  const batch = 1000;
  let sink = 0;
  const rate = (u: Uniform) =>
    opsPerSecond(() => {
      for (let i = 0; i < batch; i++) sink += u();
      return batch;
    }, secs).opsPerSec;
  const builtin = Math.random;
  const ns = {
    mathRandom: 1e9 / rate(builtin),
    randomBytesPerDraw: 1e9 / rate(perDrawRandomBytes),
    csprngUniform: 1e9 / rate(csprngUniform),
    chacha20NobleDrbg: 1e9 / rate(chachaDrbg()),
  };
  // how many draws one fragment packet (forward route + SURB route) takes
  const sim = new InProcessMixnet();
  let draws = 0;
  const counting: Uniform = () => (draws++, csprngUniform());
  const data = new Uint8Array(100);
  buildFragmentPacket({
    suite: nodeSuite,
    doc: sim.doc,
    gateway: sim.gateway.entry,
    home: sim.gateway.entry,
    mailboxId: new Uint8Array(32),
    wireId: new Uint8Array(16),
    recipient: 'bob@overlay.test',
    token: new Uint8Array(100),
    index: 0,
    count: 1,
    totalLength: data.length,
    data,
    uniform: counting,
    surbId: new Uint8Array(16),
  });
  const results = {
    nsPerDraw: ns,
    drawsPerFragmentPacket: draws,
    csprngNsPerFragmentPacket: ns.csprngUniform * draws,
  };
  if (!(sink > 0)) opts.log('(no draws?)'); // keeps the loops' results alive
  opts.log(
    `ns per uniform draw: built-in ${fmt(ns.mathRandom, 1)}, randomBytes(8) per draw ${fmt(ns.randomBytesPerDraw, 0)}, ` +
      `csprngUniform (4 KiB pool) ${fmt(ns.csprngUniform, 1)}, ChaCha20 DRBG (noble) ${fmt(ns.chacha20NobleDrbg, 1)}`,
  );
  opts.log(`a fragment packet takes ${draws} draws: ${fmt(ns.csprngUniform * draws, 0)} ns of csprngUniform per packet`);
  return { suite: 'random', machine: machineInfo(), results };
}
