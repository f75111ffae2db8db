import { LIONESS_KEY_LENGTH, NODE_ID_LENGTH, PAYLOAD_TAG_LENGTH, QUEUE_ID_LENGTH, SURB_ID_LENGTH, packetSizes, type Geometry } from './geometry.ts';
import { lionessDecrypt, lionessEncrypt } from './lioness.ts';
import { SphinxBuildError, buildHeader, isZeroPrefix, type CreatedPacket } from './packet.ts';
import { SURB_KEY_DOMAIN, type SphinxSuite } from './suite.ts';
import type { RouteHop } from './types.ts';

/**
 * Single-use reply blocks (docs/spec/sphinx.md §8). The creator builds a reply header to itself
 * (ending in Deliver(queueId) + SurbReply(surbId) at the hop that holds its mailbox), keeps the
 * per-hop payload keys, and hands out `surb` = first hop id || header || reply seed. The replier
 * (a gateway sending an ACK) encrypts its payload once under the seed's LIONESS keys and sends
 * the header + payload to the first hop. The creator undoes every hop's layer and the seed's.
 */
export const SURB_SEED_LENGTH = 32;

/** What the creator keeps (secret) to open the reply. */
export interface SurbKeys {
  readonly surbId: Uint8Array;
  readonly seed: Uint8Array;
  /** LIONESS keys of each hop of the reply route, in route order. */
  readonly hopPayloadKeys: readonly Uint8Array[];
}

export interface CreateSurbInput {
  readonly route: readonly RouteHop[];
  /** The mailbox at the route's last hop where the reply waits for its creator. */
  readonly queueId: Uint8Array;
  readonly surbId: Uint8Array;
  readonly ephemeral?: Uint8Array;
  readonly seed?: Uint8Array;
  /** The epoch of the route's Sphinx keys (default 0): its key phase goes in the header. */
  readonly keyEpoch?: number;
}

export interface CreatedSurb {
  readonly surb: Uint8Array;
  readonly keys: SurbKeys;
}

function replyKeys(suite: SphinxSuite, seed: Uint8Array): Uint8Array {
  return suite.kdf(SURB_KEY_DOMAIN, seed, LIONESS_KEY_LENGTH);
}

export function createSurb(suite: SphinxSuite, geom: Geometry, input: CreateSurbInput): CreatedSurb {
  if (input.surbId.length !== SURB_ID_LENGTH) throw new SphinxBuildError(`SURB id must be ${SURB_ID_LENGTH} bytes`);
  if (input.queueId.length !== QUEUE_ID_LENGTH) throw new SphinxBuildError(`queue id must be ${QUEUE_ID_LENGTH} bytes`);
  const seed = input.seed ?? suite.random(SURB_SEED_LENGTH);
  if (seed.length !== SURB_SEED_LENGTH) throw new SphinxBuildError(`SURB seed must be ${SURB_SEED_LENGTH} bytes`);
  const last = input.route[input.route.length - 1];
  const built = buildHeader(
    suite,
    geom,
    input.route,
    { action: 'deliver', queueId: input.queueId, surbId: input.surbId, delayMs: last?.delayMs ?? 0 },
    input.ephemeral,
    input.keyEpoch,
  );
  const sizes = packetSizes(geom);
  const surb = new Uint8Array(sizes.surb);
  surb.set(input.route[0]!.nodeId, 0);
  surb.set(built.header, NODE_ID_LENGTH);
  surb.set(seed, NODE_ID_LENGTH + sizes.header);
  return {
    surb,
    keys: {
      surbId: Uint8Array.from(input.surbId),
      seed: Uint8Array.from(seed),
      hopPayloadKeys: built.hopKeys.map((k) => Uint8Array.from(k.payloadKeys)),
    },
  };
}

export type SurbUseResult = ({ ok: true } & CreatedPacket) | { ok: false; reason: 'bad-length' | 'bad-payload-size' };

/** The replier's side: wraps `payload` (<= payloadSize bytes) with a SURB. Never throws. */
export function packetFromSurb(suite: SphinxSuite, geom: Geometry, surb: Uint8Array, payload: Uint8Array): SurbUseResult {
  const sizes = packetSizes(geom);
  if (surb.length !== sizes.surb) return { ok: false, reason: 'bad-length' };
  if (payload.length > geom.payloadSize) return { ok: false, reason: 'bad-payload-size' };
  const packet = new Uint8Array(sizes.packet);
  packet.set(surb.subarray(NODE_ID_LENGTH, NODE_ID_LENGTH + sizes.header), 0);
  const body = packet.subarray(sizes.header);
  body.set(payload, PAYLOAD_TAG_LENGTH);
  lionessEncrypt(suite, replyKeys(suite, surb.subarray(NODE_ID_LENGTH + sizes.header)), body);
  return { ok: true, firstHop: surb.slice(0, NODE_ID_LENGTH), packet };
}

export type OpenReplyResult = { ok: true; payload: Uint8Array } | { ok: false; reason: 'bad-length' | 'bad-payload' };

/** The creator's side: opens a reply delivered at the SURB route's last hop. Never throws. */
export function openSurbReply(suite: SphinxSuite, geom: Geometry, keys: SurbKeys, delivered: Uint8Array): OpenReplyResult {
  const sizes = packetSizes(geom);
  if (delivered.length !== sizes.payload) return { ok: false, reason: 'bad-length' };
  const body = Uint8Array.from(delivered);
  for (let i = keys.hopPayloadKeys.length - 1; i >= 0; i--) lionessEncrypt(suite, keys.hopPayloadKeys[i]!, body);
  lionessDecrypt(suite, replyKeys(suite, keys.seed), body);
  if (!isZeroPrefix(body, PAYLOAD_TAG_LENGTH)) return { ok: false, reason: 'bad-payload' };
  return { ok: true, payload: body.subarray(PAYLOAD_TAG_LENGTH) };
}

/** Durable form of SurbKeys: surbId(16) || seed(32) || n(1) || n × 128-byte LIONESS keys. */
export function encodeSurbKeys(k: SurbKeys): Uint8Array {
  const n = k.hopPayloadKeys.length;
  const out = new Uint8Array(SURB_ID_LENGTH + SURB_SEED_LENGTH + 1 + n * LIONESS_KEY_LENGTH);
  out.set(k.surbId, 0);
  out.set(k.seed, SURB_ID_LENGTH);
  out[SURB_ID_LENGTH + SURB_SEED_LENGTH] = n;
  k.hopPayloadKeys.forEach((hk, i) => out.set(hk, SURB_ID_LENGTH + SURB_SEED_LENGTH + 1 + i * LIONESS_KEY_LENGTH));
  return out;
}

export function decodeSurbKeys(b: Uint8Array): SurbKeys | null {
  const head = SURB_ID_LENGTH + SURB_SEED_LENGTH + 1;
  if (b.length < head) return null;
  const n = b[head - 1]!;
  if (n < 1 || b.length !== head + n * LIONESS_KEY_LENGTH) return null;
  const hop: Uint8Array[] = [];
  for (let i = 0; i < n; i++) hop.push(b.slice(head + i * LIONESS_KEY_LENGTH, head + (i + 1) * LIONESS_KEY_LENGTH));
  return { surbId: b.slice(0, SURB_ID_LENGTH), seed: b.slice(SURB_ID_LENGTH, head - 1), hopPayloadKeys: hop };
}
