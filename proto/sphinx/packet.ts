import { encodeCommands, decodeCommands, type HopCommands } from './commands.ts';
import { AD_LENGTH, GROUP_ELEMENT_LENGTH, MAC_LENGTH, PAYLOAD_TAG_LENGTH, SPHINX_VERSION, packetSizes, type Geometry } from './geometry.ts';
import { deriveHopKeys, type HopKeys } from './keys.ts';
import { lionessDecrypt, lionessEncrypt } from './lioness.ts';
import { PAD_DOMAIN, type PreparedScalar, type SphinxSuite } from './suite.ts';
import type { HopResult, NodeId, RouteHop, SphinxDropReason, Terminal } from './types.ts';
import { bytesEqual } from '../util/bytes.ts';

/**
 * The header's additional data (docs/spec/sphinx.md §5): version, key phase. Covered by every
 * hop's MAC. The key phase is the low 8 bits of the epoch whose Sphinx keys the header was built
 * under, so a hop picks its key without trying each (and tells a packet under a key it no
 * longer holds from a forged one).
 */
export function additionalData(keyEpoch: number): Uint8Array {
  return new Uint8Array([SPHINX_VERSION, keyPhase(keyEpoch)]);
}

/** The key phase of an epoch: what the AD carries. */
export function keyPhase(epoch: number): number {
  return epoch & 0xff;
}

/** The key phase a packet's AD names (its second byte). */
export function packetKeyPhase(packet: Uint8Array): number | undefined {
  return packet[1];
}

/** The AD of key phase 0 (epoch 0, and the vectors). */
export const AD = additionalData(0);

export class SphinxBuildError extends Error {
  override readonly name = 'SphinxBuildError';
}

/** What building a header leaves behind: the header and the per-hop secrets (for SURBs, vectors). */
export interface BuiltHeader {
  readonly header: Uint8Array;
  readonly hopKeys: readonly HopKeys[];
  /** Per-hop group element α_i (α_0 is in the header). */
  readonly alphas: readonly Uint8Array[];
  readonly sharedSecrets: readonly Uint8Array[];
}

function macOf(suite: SphinxSuite, key: Uint8Array, ad: Uint8Array, beta: Uint8Array): Uint8Array {
  return suite.hmac(key, ad, beta).subarray(0, MAC_LENGTH);
}

function mustDh(v: Uint8Array | null): Uint8Array {
  if (!v) throw new SphinxBuildError('route contains a low-order (invalid) X25519 public key');
  return v;
}

/**
 * Builds a Sphinx header for `route` whose last hop acts on `terminal` (docs/spec/sphinx.md §5).
 * `ephemeral` is the sender's 32-byte secret x; tests pass a fixed one, callers leave it random.
 * `keyEpoch` is the epoch of the route's Sphinx keys (its key phase goes in the AD).
 */
export function buildHeader(
  suite: SphinxSuite,
  geom: Geometry,
  route: readonly RouteHop[],
  terminal: HopCommands,
  ephemeral?: Uint8Array,
  keyEpoch = 0,
): BuiltHeader {
  const ad = additionalData(keyEpoch);
  const n = route.length;
  if (n < 1 || n > geom.maxHops) throw new SphinxBuildError(`route must have 1..${geom.maxHops} hops, got ${n}`);
  const s = geom.perHopSize;
  const B = geom.maxHops * s;
  const x = ephemeral ?? suite.random(32);
  if (x.length !== 32) throw new SphinxBuildError('ephemeral secret must be 32 bytes');

  // α_0 = x·G; s_i = b_{i-1}·…·b_0·x·Y_i; α_{i+1} = b_i·α_i (each step one X25519 call)
  const xs = suite.prepareScalar(x);
  const alphas: Uint8Array[] = [suite.publicKey(x)];
  const blinds: PreparedScalar[] = [];
  const secrets: Uint8Array[] = [];
  const keys: HopKeys[] = [];
  for (let i = 0; i < n; i++) {
    const hop = route[i]!;
    if (hop.publicKey.length !== GROUP_ELEMENT_LENGTH) throw new SphinxBuildError(`hop ${i}: public key must be 32 bytes`);
    let v = mustDh(suite.dh(xs, suite.preparePoint(hop.publicKey)));
    for (let j = 0; j < i; j++) v = mustDh(suite.dh(blinds[j]!, suite.preparePoint(v)));
    secrets.push(v);
    const k = deriveHopKeys(suite, v);
    keys.push(k);
    if (i < n - 1) {
      const b = suite.prepareScalar(k.blinding);
      blinds.push(b);
      alphas.push(mustDh(suite.dh(b, suite.preparePoint(alphas[i]!))));
    }
  }

  // Filler: what hops 0..n-2 append (and then shift in) as they strip their slots; it makes the
  // last hop's routing information decrypt correctly and look the same length as everyone's.
  let filler = new Uint8Array(0);
  const ks = new Uint8Array(B + s);
  for (let i = 0; i < n - 1; i++) {
    suite.stream(keys[i]!.headerKey, ks);
    const f = new Uint8Array(filler.length + s);
    f.set(filler);
    const off = B + s - f.length;
    for (let j = 0; j < f.length; j++) f[j]! ^= ks[off + j]!;
    filler = f;
  }

  // Last hop: its commands, then padding where a longer route's slots would be, encrypted; then
  // the filler. The padding is a stream keyed by the sender's secret x: the last hop decrypts it,
  // and zeros there would tell it (maxHops - n), i.e. the route length. Keyed by x (which no hop
  // knows), not by the last hop's secret, so the hop cannot recompute and recognise it.
  const lastLen = (geom.maxHops - n + 1) * s;
  const last = new Uint8Array(lastLen);
  encodeCommands(terminal, last.subarray(0, s));
  if (lastLen > s) suite.stream(suite.kdf(PAD_DOMAIN, x, 32), last.subarray(s));
  suite.xorStream(keys[n - 1]!.headerKey, last);
  let beta = new Uint8Array(B);
  beta.set(last, 0);
  beta.set(filler, lastLen);
  let gamma = macOf(suite, keys[n - 1]!.macKey, ad, beta);

  for (let i = n - 2; i >= 0; i--) {
    const nb = new Uint8Array(B);
    encodeCommands({ action: 'next', next: route[i + 1]!.nodeId, mac: gamma, delayMs: route[i]!.delayMs }, nb.subarray(0, s));
    nb.set(beta.subarray(0, B - s), s);
    suite.xorStream(keys[i]!.headerKey, nb);
    beta = nb;
    gamma = macOf(suite, keys[i]!.macKey, ad, beta);
  }

  const header = new Uint8Array(AD_LENGTH + GROUP_ELEMENT_LENGTH + B + MAC_LENGTH);
  header.set(ad, 0);
  header.set(alphas[0]!, AD_LENGTH);
  header.set(beta, AD_LENGTH + GROUP_ELEMENT_LENGTH);
  header.set(gamma, AD_LENGTH + GROUP_ELEMENT_LENGTH + B);
  return { header, hopKeys: keys, alphas, sharedSecrets: secrets };
}

function terminalCommands(t: Terminal, delayMs: number): HopCommands {
  return t.kind === 'deliver' ? { action: 'deliver', queueId: t.queueId, delayMs } : { action: 'drop', delayMs };
}

export interface CreatePacketInput {
  readonly route: readonly RouteHop[];
  readonly terminal: Terminal;
  /** At most geometry.payloadSize bytes; right-padded with zeros (the layer above frames its data). */
  readonly payload: Uint8Array;
  readonly ephemeral?: Uint8Array;
  /** The epoch of the route's Sphinx keys (default 0): its key phase goes in the header. */
  readonly keyEpoch?: number;
}

export interface CreatedPacket {
  readonly firstHop: NodeId;
  readonly packet: Uint8Array;
}

/** Builds a forward packet (docs/spec/sphinx.md §6). */
export function createPacket(suite: SphinxSuite, geom: Geometry, input: CreatePacketInput): CreatedPacket {
  const { route, payload } = input;
  if (payload.length > geom.payloadSize) throw new SphinxBuildError(`payload is ${payload.length} bytes; the geometry allows ${geom.payloadSize}`);
  const last = route[route.length - 1];
  const built = buildHeader(suite, geom, route, terminalCommands(input.terminal, last?.delayMs ?? 0), input.ephemeral, input.keyEpoch);
  const sizes = packetSizes(geom);
  const packet = new Uint8Array(sizes.packet);
  packet.set(built.header, 0);
  const body = packet.subarray(sizes.header);
  body.set(payload, PAYLOAD_TAG_LENGTH);
  for (let i = route.length - 1; i >= 0; i--) lionessEncrypt(suite, built.hopKeys[i]!.payloadKeys, body);
  return { firstHop: route[0]!.nodeId, packet };
}

/** A hop's Sphinx key for one epoch, prepared once for the suite. */
export interface HopPrivateKey {
  readonly suite: SphinxSuite;
  readonly prepared: PreparedScalar;
}

export function prepareHopKey(suite: SphinxSuite, secret: Uint8Array): HopPrivateKey {
  if (secret.length !== 32) throw new RangeError('X25519 secret must be 32 bytes');
  return { suite, prepared: suite.prepareScalar(secret) };
}

export interface ProcessOptions {
  /**
   * Called with the replay tag once the MAC is valid; returns true when the tag was seen
   * before (the caller's durable store), and the packet is then dropped as 'replay'.
   */
  readonly isReplay?: (tag: Uint8Array) => boolean;
}

function fail(reason: SphinxDropReason): HopResult {
  return { ok: false, reason };
}

function isZeroPrefix(b: Uint8Array, n: number): boolean {
  let d = 0;
  for (let i = 0; i < n; i++) d |= b[i]!;
  return d === 0;
}

/**
 * Processes one Sphinx layer at a hop (docs/spec/sphinx.md §7). Never throws for any input
 * bytes: every malformed or forged packet comes back as a typed drop reason.
 */
export function processPacket(geom: Geometry, key: HopPrivateKey, packet: Uint8Array, opts: ProcessOptions = {}): HopResult {
  const suite = key.suite;
  const sizes = packetSizes(geom);
  if (!(packet instanceof Uint8Array) || packet.length !== sizes.packet) return fail('bad-length');
  // any key phase: choosing the key by it is the caller's (proto/hop/engine.ts); the MAC covers it
  if (packet[0] !== SPHINX_VERSION) return fail('bad-version');
  const ad = packet.subarray(0, AD_LENGTH);
  const s = geom.perHopSize;
  const B = sizes.routingInfo;
  const aOff = AD_LENGTH;
  const bOff = aOff + GROUP_ELEMENT_LENGTH;
  const gOff = bOff + B;
  const alpha = packet.subarray(aOff, bOff);
  const beta = packet.subarray(bOff, gOff);
  const gamma = packet.subarray(gOff, gOff + MAC_LENGTH);

  // X25519 ignores the top bit of a u-coordinate (RFC 7748 §5), so without this check a flipped
  // top bit of α would give the same secret: a second encoding of the same packet
  if ((alpha[GROUP_ELEMENT_LENGTH - 1]! & 0x80) !== 0) return fail('bad-group-element');
  let point: ReturnType<SphinxSuite['preparePoint']>;
  let secret: Uint8Array | null;
  try {
    point = suite.preparePoint(alpha);
    secret = suite.dh(key.prepared, point);
  } catch {
    return fail('bad-group-element');
  }
  if (!secret) return fail('bad-group-element');
  const k = deriveHopKeys(suite, secret);
  if (!bytesEqual(macOf(suite, k.macKey, ad, beta), gamma)) return fail('bad-mac');
  const replayTag = k.replayTag.slice();
  if (opts.isReplay?.(replayTag)) return fail('replay');

  const ext = new Uint8Array(B + s);
  ext.set(beta, 0);
  suite.xorStream(k.headerKey, ext);
  const cmds = decodeCommands(ext.subarray(0, s));
  if (!cmds) return fail('bad-commands');

  switch (cmds.action) {
    case 'next': {
      const nextAlpha = suite.dh(suite.prepareScalar(k.blinding), point);
      if (!nextAlpha) return fail('bad-group-element');
      const out = new Uint8Array(sizes.packet);
      out.set(ad, 0);
      out.set(nextAlpha, aOff);
      out.set(ext.subarray(s, s + B), bOff);
      out.set(cmds.mac, gOff);
      const body = out.subarray(sizes.header);
      body.set(packet.subarray(sizes.header));
      lionessDecrypt(suite, k.payloadKeys, body);
      return { ok: true, kind: 'forward', next: cmds.next, delayMs: cmds.delayMs, packet: out, replayTag };
    }
    case 'deliver': {
      const body = packet.slice(sizes.header);
      lionessDecrypt(suite, k.payloadKeys, body);
      if (cmds.surbId) {
        // a SURB reply stays encrypted for its creator; only the creator can check it
        return { ok: true, kind: 'deliver', queueId: cmds.queueId, surbId: cmds.surbId, payload: body, delayMs: cmds.delayMs, replayTag };
      }
      if (!isZeroPrefix(body, PAYLOAD_TAG_LENGTH)) return fail('bad-payload');
      return {
        ok: true,
        kind: 'deliver',
        queueId: cmds.queueId,
        payload: body.subarray(PAYLOAD_TAG_LENGTH),
        delayMs: cmds.delayMs,
        replayTag,
      };
    }
    case 'drop':
      return { ok: true, kind: 'drop', delayMs: cmds.delayMs, replayTag };
  }
}

export { isZeroPrefix };
