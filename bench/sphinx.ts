/**
 * Sphinx benchmark: per-hop processing (the number a mix operator cares about), packet and
 * SURB creation, for 2 KiB and 32 KiB payloads, on the suite the roles run on (the fastest that
 * loads: libsodium) and, side by side, node:crypto and noble. In the same run, interleaved with
 * the hop rounds, two "floors": the bare primitive calls of one hop made directly on the native
 * libraries with no Sphinx logic around them (`native_floor_per_s`: libsodium X25519 and
 * ChaCha20, OpenSSL SHAKE256 and HMAC-SHA256, exactly the calls the libsodium suite makes), and
 * the same on node:crypto alone (`node_floor_per_s`), so each ratio shows what the packet code
 * itself costs over what its suite cannot avoid.
 */
import crypto from 'node:crypto';
import {
  AD,
  DEFAULT_GEOMETRY,
  KDF_DOMAIN,
  createPacket,
  createSurb,
  fastestSuiteSelection,
  nobleSuite,
  nodeSuite,
  packetSizes,
  prepareHopKey,
  processPacket,
  requireSodiumNative,
  type Geometry,
  type SodiumBinding,
  type SphinxSuite,
} from '../proto/sphinx/index.ts';
import { fmt, machineInfo, opsPerSecond, type BenchOptions, type BenchReport } from './harness.ts';

function nodes(suite: SphinxSuite, n: number) {
  return Array.from({ length: n }, () => {
    const sk = crypto.randomBytes(32);
    return { id: new Uint8Array(crypto.randomBytes(32)), sk: new Uint8Array(sk), pk: suite.publicKey(sk) };
  });
}

/** The bare per-hop work on node:crypto: what the node:crypto suite cannot avoid doing. */
function nodeFloorOps(geom: Geometry): () => number {
  const sizes = packetSizes(geom);
  const nodeKey = crypto.createPrivateKey({
    key: { kty: 'OKP', crv: 'X25519', d: crypto.randomBytes(32).toString('base64url'), x: Buffer.alloc(32, 9).toString('base64url') },
    format: 'jwk',
  });
  const alpha = crypto.generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' }).x as string;
  const beta = crypto.randomBytes(sizes.routingInfo + geom.perHopSize);
  const payload = crypto.randomBytes(sizes.payload - 32);
  const iv = Buffer.alloc(16);
  const placeholder = Buffer.alloc(32, 9).toString('base64url');
  return () => {
    const pub = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: alpha }, format: 'jwk' });
    const s = crypto.diffieHellman({ privateKey: nodeKey, publicKey: pub });
    const k = crypto.createHash('shake256', { outputLength: 256 }).update(s).digest();
    crypto.createHmac('sha256', k.subarray(32, 64)).update(beta).digest();
    crypto.createCipheriv('chacha20', k.subarray(0, 32), iv).update(beta);
    // LIONESS: two stream passes and two keyed hashes over the payload
    crypto.createCipheriv('chacha20', k.subarray(64, 96), iv).update(payload);
    crypto.createHmac('sha256', k.subarray(96, 128)).update(payload).digest();
    crypto.createCipheriv('chacha20', k.subarray(128, 160), iv).update(payload);
    crypto.createHmac('sha256', k.subarray(160, 192)).update(payload).digest();
    // blinding: import the blinding scalar, one more X25519
    const b = crypto.createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: k.subarray(192, 224).toString('base64url'), x: placeholder }, format: 'jwk' });
    crypto.diffieHellman({ privateKey: b, publicKey: pub });
    return 1;
  };
}

/**
 * The bare per-hop work on the native libraries, called directly: two X25519 scalar
 * multiplications (shared secret, blinding), the KDF, the header MAC, the header stream
 * (B + s bytes) and LIONESS on the payload (two ChaCha20 passes, two HMACs over R).
 */
function nativeFloorOps(geom: Geometry, sodium: SodiumBinding): () => number {
  const sizes = packetSizes(geom);
  const sk = new Uint8Array(crypto.randomBytes(32));
  const alpha = new Uint8Array(32);
  sodium.crypto_scalarmult_base(alpha, new Uint8Array(crypto.randomBytes(32)));
  const beta = new Uint8Array(crypto.randomBytes(sizes.routingInfo));
  const ext = new Uint8Array(sizes.routingInfo + geom.perHopSize);
  const R = new Uint8Array(crypto.randomBytes(sizes.payload - 32));
  const nonce = new Uint8Array(12);
  const s = new Uint8Array(32);
  const next = new Uint8Array(32);
  return () => {
    sodium.crypto_scalarmult(s, sk, alpha);
    const k = crypto.createHash('shake256', { outputLength: 256 }).update(KDF_DOMAIN).update(s).digest();
    crypto.createHmac('sha256', k.subarray(32, 64)).update(AD).update(beta).digest();
    sodium.crypto_stream_chacha20_ietf_xor(ext, ext, nonce, k.subarray(0, 32));
    crypto.createHmac('sha256', k.subarray(160, 192)).update(R).digest();
    sodium.crypto_stream_chacha20_ietf_xor(R, R, nonce, k.subarray(128, 160));
    crypto.createHmac('sha256', k.subarray(96, 128)).update(R).digest();
    sodium.crypto_stream_chacha20_ietf_xor(R, R, nonce, k.subarray(64, 96));
    sodium.crypto_scalarmult(next, k.subarray(192, 224), alpha);
    return 1;
  };
}

/**
 * Each primitive of a hop on each library that has it, µs per call, best of interleaved rounds:
 * the measurements behind the libsodium suite's choice of library per primitive.
 */
/** sodium-native, with the one function beyond the suite's that the comparison calls */
type SodiumForBench = SodiumBinding & { crypto_hash_sha256(out: Uint8Array, m: Uint8Array): void };

function primitiveChoices(sodium: SodiumForBench, rounds: number, seconds: number): Record<string, Record<string, number>> {
  const k32 = new Uint8Array(crypto.randomBytes(32));
  const pub = new Uint8Array(32);
  sodium.crypto_scalarmult_base(pub, new Uint8Array(crypto.randomBytes(32)));
  const out = new Uint8Array(32);
  const nonce = new Uint8Array(12);
  const iv = Buffer.alloc(16);
  const header = new Uint8Array(384);
  const body = new Uint8Array(crypto.randomBytes(2032));
  const placeholder = Buffer.alloc(32, 9).toString('base64url');
  const nodeKey = crypto.createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: Buffer.from(k32).toString('base64url'), x: placeholder }, format: 'jwk' });
  const x = Buffer.from(pub).toString('base64url');
  const nodePub = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
  const table: Record<string, Record<string, () => unknown>> = {
    'X25519 (a hop does 2)': {
      libsodium_scalarmult: () => sodium.crypto_scalarmult(out, k32, pub),
      node_import_point_and_dh: () =>
        crypto.diffieHellman({ privateKey: nodeKey, publicKey: crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' }) }),
      node_dh_keys_already_imported: () => crypto.diffieHellman({ privateKey: nodeKey, publicKey: nodePub }),
      node_import_scalar: () =>
        crypto.createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: Buffer.from(k32).toString('base64url'), x: placeholder }, format: 'jwk' }),
    },
    'ChaCha20 384 B (header)': {
      libsodium: () => sodium.crypto_stream_chacha20_ietf_xor(header, header, nonce, k32),
      node: () => crypto.createCipheriv('chacha20', k32, iv).update(header),
    },
    'ChaCha20 2032 B (LIONESS, x2)': {
      libsodium: () => sodium.crypto_stream_chacha20_ietf_xor(body, body, nonce, k32),
      node: () => crypto.createCipheriv('chacha20', k32, iv).update(body),
    },
    'HMAC-SHA256 2032 B (LIONESS, x2)': {
      // sodium-native binds no HMAC-SHA256; its plain SHA-256 is a lower bound for one built on it
      node: () => crypto.createHmac('sha256', k32).update(body).digest(),
      libsodium_sha256_alone: () => sodium.crypto_hash_sha256(out, body),
    },
    'SHAKE256 53 B -> 256 B (KDF)': {
      node: () => crypto.createHash('shake256', { outputLength: 256 }).update(KDF_DOMAIN).update(k32).digest(),
      noble: () => nobleSuite.kdf(KDF_DOMAIN, k32, 256),
    },
  };
  const res: Record<string, Record<string, number>> = {};
  for (const [prim, fns] of Object.entries(table)) {
    const best: Record<string, number> = {};
    for (let r = 0; r < rounds; r++)
      for (const [lib, fn] of Object.entries(fns)) {
        const us = 1e6 / opsPerSecond(() => (fn(), 1), seconds / rounds).opsPerSec;
        best[lib] = Math.min(best[lib] ?? Infinity, Math.round(us * 100) / 100);
      }
    res[prim] = best;
  }
  return res;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const secs = opts.quick ? 0.3 : 2;
  const results: Record<string, unknown> = {};
  const { suite, fallbackReason } = fastestSuiteSelection();
  const sodium = fallbackReason ? undefined : requireSodiumNative();
  if (fallbackReason) opts.log(`native suite unavailable: ${fallbackReason}`);
  for (const payloadSize of [2048, 32 * 1024]) {
    const geom: Geometry = { ...DEFAULT_GEOMETRY, payloadSize };
    const label = payloadSize === 2048 ? '2KiB' : '32KiB';
    const ns = nodes(suite, 4);
    const route = ns.map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 10 }));
    const queueId = new Uint8Array(32);
    const payload = crypto.randomBytes(payloadSize);
    const pool = Array.from({ length: 32 }, () => createPacket(suite, geom, { route, terminal: { kind: 'deliver', queueId }, payload }).packet);
    let i = 0;
    const hopOn = (s: SphinxSuite) => {
      const key = prepareHopKey(s, ns[0]!.sk);
      return () => {
        const r = processPacket(geom, key, pool[i++ & 31]!);
        if (!r.ok) throw new Error(`bench packet dropped: ${r.reason}`);
        return 1;
      };
    };
    // Interleave short rounds of the hop and the floors so that load from other processes on
    // the machine hits all alike; report the best rate of each and the median of the per-round
    // ratios (a ratio of two figures measured seconds apart on a shared machine means little).
    const fns = {
      hop: hopOn(suite),
      nativeFloor: sodium ? nativeFloorOps(geom, sodium) : undefined,
      nodeHop: hopOn(nodeSuite),
      nodeFloor: nodeFloorOps(geom),
    };
    const rounds = opts.quick ? 3 : 30;
    const best = { hop: 0, nativeFloor: 0, nodeHop: 0, nodeFloor: 0 };
    const nativeRatios: number[] = [];
    const nodeRatios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const rate: Record<keyof typeof best, number> = { hop: 0, nativeFloor: 0, nodeHop: 0, nodeFloor: 0 };
      for (const k of Object.keys(best) as (keyof typeof best)[]) {
        const fn = fns[k];
        if (!fn) continue;
        rate[k] = opsPerSecond(fn, (secs / rounds) * 1.25).opsPerSec;
        best[k] = Math.max(best[k], rate[k]);
      }
      if (sodium) nativeRatios.push(rate.hop / rate.nativeFloor);
      nodeRatios.push(rate.nodeHop / rate.nodeFloor);
    }
    const createOn = (s: SphinxSuite) =>
      opsPerSecond(() => {
        createPacket(s, geom, { route, terminal: { kind: 'deliver', queueId }, payload });
        return 1;
      }, secs / 2).opsPerSec;
    const create = createOn(suite);
    const nodeCreate = createOn(nodeSuite);
    const surb = opsPerSecond(() => {
      createSurb(suite, geom, { route, queueId, surbId: new Uint8Array(16) });
      return 1;
    }, secs / 2);
    // pure-JS suite, the portable reference (short: it is ~50x slower)
    const noble = opsPerSecond(hopOn(nobleSuite), Math.min(secs, 1));
    const r = {
      packet_bytes: packetSizes(geom).packet,
      hop_suite: suite.name,
      hop_process_per_s: Math.round(best.hop),
      hop_process_us: 1e6 / best.hop,
      native_floor_per_s: sodium ? Math.round(best.nativeFloor) : null,
      native_floor_us: sodium ? 1e6 / best.nativeFloor : null,
      hop_vs_native_floor: sodium ? median(nativeRatios) : null,
      hop_vs_native_floor_rounds: nativeRatios.map(round3),
      node_hop_process_per_s: Math.round(best.nodeHop),
      node_floor_per_s: Math.round(best.nodeFloor),
      node_hop_vs_node_floor: median(nodeRatios),
      node_hop_vs_node_floor_rounds: nodeRatios.map(round3),
      hop_vs_node_hop: best.hop / best.nodeHop,
      create_4hop_per_s: Math.round(create),
      node_create_4hop_per_s: Math.round(nodeCreate),
      surb_create_4hop_per_s: Math.round(surb.opsPerSec),
      noble_hop_process_per_s: Math.round(noble.opsPerSec),
      hop_vs_noble: best.hop / noble.opsPerSec,
    };
    results[label] = r;
    opts.log(
      `${label.padEnd(6)} hop (${r.hop_suite}) ${fmt(r.hop_process_per_s)}/s (${fmt(r.hop_process_us, 1)} µs) | native floor ${sodium ? `${fmt(best.nativeFloor)}/s, hop/floor ${fmt(r.hop_vs_native_floor! * 100, 1)}%` : 'n/a'} | ` +
        `node:crypto hop ${fmt(r.node_hop_process_per_s)}/s, floor ${fmt(r.node_floor_per_s)}/s, ${fmt(r.node_hop_vs_node_floor * 100, 1)}% | ` +
        `create(4 hops) ${fmt(r.create_4hop_per_s)}/s (node:crypto ${fmt(r.node_create_4hop_per_s)}/s) | SURB ${fmt(r.surb_create_4hop_per_s)}/s | noble hop ${fmt(r.noble_hop_process_per_s)}/s ` +
        `(ratios: median of ${rounds} interleaved rounds)`,
    );
  }
  if (sodium) {
    const prims = primitiveChoices(sodium as SodiumForBench, opts.quick ? 2 : 6, opts.quick ? 0.2 : 1);
    results.primitives_us = prims;
    for (const [prim, libs] of Object.entries(prims))
      opts.log(
        `  ${prim.padEnd(34)} ${Object.entries(libs)
          .map(([lib, us]) => `${lib} ${fmt(us, 2)} µs`)
          .join(' | ')}`,
      );
  }
  return { suite: 'sphinx', machine: machineInfo(), results };
}
