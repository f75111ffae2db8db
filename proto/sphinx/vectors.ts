import { sha256 } from '@noble/hashes/sha2.js';
import { hex } from '../util/bytes.ts';
import { DEFAULT_GEOMETRY, packetSizes, type Geometry } from './geometry.ts';
import { lionessEncrypt } from './lioness.ts';
import { buildHeader, createPacket, prepareHopKey, processPacket } from './packet.ts';
import { createSurb, openSurbReply, packetFromSurb } from './surb.ts';
import type { SphinxSuite } from './suite.ts';
import type { RouteHop } from './types.ts';

/**
 * Test vectors (docs/spec/vectors/*.json): every input is derived from a label by SHA-256, so a
 * reimplementation can rebuild the inputs too, and every intermediate value is recorded.
 */
const enc = new TextEncoder();
export function fixedBytes(label: string, length = 32): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0, c = 0; i < length; c++) {
    const h = sha256(enc.encode(`postmix-vector|${label}|${c}`));
    out.set(h.subarray(0, Math.min(32, length - i)), i);
    i += 32;
  }
  return out;
}

export interface ForwardVector {
  name: string;
  geometry: Geometry;
  /** The epoch of the route's keys; its low 8 bits are the AD's key phase (byte 1 of every packet). */
  keyEpoch: number;
  ephemeral: string;
  payload: string;
  queueId: string;
  hops: {
    nodeId: string;
    secretKey: string;
    publicKey: string;
    delayMs: number;
    alpha: string;
    sharedSecret: string;
    headerKey: string;
    macKey: string;
    payloadKeys: string;
    blinding: string;
    replayTag: string;
    /** The packet as this hop receives it. */
    packetIn: string;
    result: string;
  }[];
  deliveredPayload: string;
}

export function forwardVector(suite: SphinxSuite, hopsCount: number, geom: Geometry = DEFAULT_GEOMETRY, keyEpoch = 0): ForwardVector {
  const name = `forward-${hopsCount}hop-${geom.payloadSize}${keyEpoch ? `-epoch${keyEpoch}` : ''}`;
  const secrets = Array.from({ length: hopsCount }, (_, i) => fixedBytes(`node-secret-${i}`));
  const route: RouteHop[] = secrets.map((sk, i) => ({
    nodeId: fixedBytes(`node-id-${i}`),
    publicKey: suite.publicKey(sk),
    delayMs: 100 * (i + 1) + i,
  }));
  const ephemeral = fixedBytes(`${name}-ephemeral`);
  const payload = fixedBytes(`${name}-payload`, Math.min(geom.payloadSize, 1000));
  const queueId = fixedBytes('queue-id');
  const built = buildHeader(suite, geom, route, { action: 'deliver', queueId, delayMs: route[hopsCount - 1]!.delayMs }, ephemeral, keyEpoch);
  let { packet } = createPacket(suite, geom, { route, terminal: { kind: 'deliver', queueId }, payload, ephemeral, keyEpoch });
  const hops: ForwardVector['hops'] = [];
  let delivered = '';
  for (let i = 0; i < hopsCount; i++) {
    const r = processPacket(geom, prepareHopKey(suite, secrets[i]!), packet);
    const k = built.hopKeys[i]!;
    hops.push({
      nodeId: hex(route[i]!.nodeId),
      secretKey: hex(secrets[i]!),
      publicKey: hex(route[i]!.publicKey),
      delayMs: route[i]!.delayMs,
      alpha: hex(built.alphas[i]!),
      sharedSecret: hex(built.sharedSecrets[i]!),
      headerKey: hex(k.headerKey),
      macKey: hex(k.macKey),
      payloadKeys: hex(k.payloadKeys),
      blinding: hex(k.blinding),
      replayTag: hex(k.replayTag),
      packetIn: hex(packet),
      result: r.ok ? r.kind : `error:${r.reason}`,
    });
    if (r.ok && r.kind === 'forward') packet = r.packet;
    else if (r.ok && r.kind === 'deliver') delivered = hex(r.payload);
  }
  return { name, geometry: geom, keyEpoch, ephemeral: hex(ephemeral), payload: hex(payload), queueId: hex(queueId), hops, deliveredPayload: delivered };
}

export interface SurbVector {
  name: string;
  geometry: Geometry;
  ephemeral: string;
  seed: string;
  surbId: string;
  queueId: string;
  route: { nodeId: string; secretKey: string; delayMs: number }[];
  surb: string;
  replyPayload: string;
  replyPacket: string;
  /** The payload as the last hop delivers it (still encrypted for the creator). */
  delivered: string;
  opened: string;
}

export function surbVector(suite: SphinxSuite, geom: Geometry = DEFAULT_GEOMETRY): SurbVector {
  const n = 4;
  const secrets = Array.from({ length: n }, (_, i) => fixedBytes(`node-secret-${i}`));
  const route: RouteHop[] = secrets.map((sk, i) => ({ nodeId: fixedBytes(`node-id-${i}`), publicKey: suite.publicKey(sk), delayMs: 50 * i }));
  const ephemeral = fixedBytes('surb-ephemeral');
  const seed = fixedBytes('surb-seed');
  const surbId = fixedBytes('surb-id', 16);
  const queueId = fixedBytes('surb-queue');
  const { surb, keys } = createSurb(suite, geom, { route, queueId, surbId, ephemeral, seed });
  const replyPayload = fixedBytes('surb-reply', 64);
  const used = packetFromSurb(suite, geom, surb, replyPayload);
  if (!used.ok) throw new Error('vector SURB did not wrap');
  let packet = used.packet;
  let delivered: Uint8Array = new Uint8Array(0);
  for (let i = 0; i < n; i++) {
    const r = processPacket(geom, prepareHopKey(suite, secrets[i]!), packet);
    if (!r.ok) throw new Error(`vector SURB hop ${i}: ${r.reason}`);
    if (r.kind === 'forward') packet = r.packet;
    else if (r.kind === 'deliver') delivered = r.payload;
  }
  const opened = openSurbReply(suite, geom, keys, delivered);
  return {
    name: 'surb-4hop',
    geometry: geom,
    ephemeral: hex(ephemeral),
    seed: hex(seed),
    surbId: hex(surbId),
    queueId: hex(queueId),
    route: route.map((h, i) => ({ nodeId: hex(h.nodeId), secretKey: hex(secrets[i]!), delayMs: h.delayMs })),
    surb: hex(surb),
    replyPayload: hex(replyPayload),
    replyPacket: hex(used.packet),
    delivered: hex(delivered),
    opened: opened.ok ? hex(opened.payload.subarray(0, replyPayload.length)) : `error:${opened.reason}`,
  };
}

export interface LionessVector {
  key: string;
  plaintext: string;
  ciphertext: string;
}

export function lionessVector(suite: SphinxSuite): LionessVector {
  const key = fixedBytes('lioness-key', 128);
  const plaintext = fixedBytes('lioness-plaintext', 100);
  const block = Uint8Array.from(plaintext);
  lionessEncrypt(suite, key, block);
  return { key: hex(key), plaintext: hex(plaintext), ciphertext: hex(block) };
}

export interface AllVectors {
  lioness: LionessVector;
  forward: ForwardVector[];
  surb: SurbVector;
  sizes: ReturnType<typeof packetSizes>;
}

export function allVectors(suite: SphinxSuite): AllVectors {
  return {
    lioness: lionessVector(suite),
    forward: [forwardVector(suite, 1), forwardVector(suite, 3), forwardVector(suite, 5), forwardVector(suite, 3, DEFAULT_GEOMETRY, 1_447_008)],
    surb: surbVector(suite),
    sizes: packetSizes(DEFAULT_GEOMETRY),
  };
}
