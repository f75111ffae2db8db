/**
 * The hop node on its own (no authorities: documents are installed directly), in a role defined
 * here: what both the mix and the gateway now get from it, one behaviour for both.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAIL_QUEUE_ID } from '../../proto/mailbox/index.ts';
import { DEFAULT_MIXING } from '../../proto/mixing/params.ts';
import { epochAt, epochStart, generateIdentity, type DocumentBody, type NodeEntry, type VerifiedDocument } from '../../proto/pki/index.ts';
import { createPacket, DEFAULT_GEOMETRY, nodeSuite, packetSizes, type Geometry, type HopDeliver } from '../../proto/sphinx/index.ts';
import { silentLogger, TEST_EPOCH, until } from '../../test/support/loopback.ts';
import { GatewayConfigSchema, resolveGatewayConfig } from '../../gateway/config.ts';
import { PacketLink } from '../link/link.ts';
import { KeyStore } from '../pki/key-store.ts';
import { HopNode, type DeliveryContext } from './hop-node.ts';

const EC = TEST_EPOCH;
const E = 500;
const NOW = epochStart(EC, E) + 10;
const tmp = mkdtempSync(join(tmpdir(), 'pm-hopnode-'));
const stops: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const s of stops.reverse()) await s();
  rmSync(tmp, { recursive: true, force: true });
});

function config(name: string) {
  const dataDir = join(tmp, name);
  KeyStore.create(join(dataDir, 'keys'), { force: false, epochs: [] });
  const file = GatewayConfigSchema.parse({
    gateway: { data_dir: dataDir, listen: '/ip4/127.0.0.1/tcp/0', domains: ['hop.example'], log_level: 'silent', tick_ms: 60_000, shutdown_grace_ms: 500 },
    metrics: { enabled: false },
    directory: {
      threshold: 1,
      epoch_length: EC.length,
      epoch_origin: EC.origin,
      grace: EC.grace,
      timeout_ms: 200,
      authorities: [{ url: 'http://127.0.0.1:9', public_key: Buffer.from(generateIdentity().publicKey).toString('base64') }],
    },
  });
  return resolveGatewayConfig(file, '(test)', dataDir);
}

async function node(name: string, role: { clients: boolean }) {
  const delivered: { r: HopDeliver; at: DeliveryContext }[] = [];
  const hop = new HopNode({
    config: config(name),
    logger: silentLogger,
    metricsPrefix: 'postmix_test',
    defaultMetrics: false,
    now: () => NOW,
    role: {
      descriptor: () => ({ role: 'gateway' }),
      acceptsClients: () => role.clients,
      deliver: (r, at) => delivered.push({ r, at }),
    },
  });
  await hop.listen();
  stops.push(() => hop.close(100));
  hop.keys.ensure([E]);
  const entry: NodeEntry = {
    nodeId: hop.identity.nodeId,
    identityKey: hop.identity.publicKey,
    peerId: hop.peerId.toString(),
    addresses: hop.addresses(),
    sphinxKey: hop.keyStore.sphinxKey(E)!.publicKey,
    sphinxKeysAhead: [],
    layer: 0,
  };
  return { hop, delivered, entry };
}

function doc(geometry: Geometry, gateways: NodeEntry[], layer1: NodeEntry[] = []): VerifiedDocument {
  const body: DocumentBody = {
    version: 1,
    epoch: E,
    validAfter: epochStart(EC, E),
    freshUntil: epochStart(EC, E + 1),
    validUntil: epochStart(EC, E + 1),
    epochLength: EC.length,
    grace: EC.grace,
    geometry,
    mixing: DEFAULT_MIXING,
    layers: [layer1],
    gateways,
    authorities: [],
    threshold: 1,
    previousDigest: new Uint8Array(32),
  };
  return { body, bytes: new Uint8Array(0), bodyBytes: new Uint8Array(0), digest: new Uint8Array(32).fill(geometry.payloadSize & 0xff), signers: [] };
}

async function sender(packetSize: number, to: HopNode): Promise<PacketLink> {
  const l = await PacketLink.create({
    identity: generateIdentity().seed,
    listen: [],
    packetSize,
    onFrame: () => {},
    isAllowedPeer: () => true,
    addressesOf: () => to.link.multiaddrs(),
  });
  stops.push(() => l.stop(100));
  return l;
}

describe('hop node', () => {
  it('is ready only with a document for the current epoch; a new geometry keeps the old engine until it has released what it holds', async () => {
    const { hop, delivered, entry } = await node('geometry', { clients: true });
    expect(hop.readiness()).toEqual({ ready: false, listening: true, document: false, epoch: epochAt(EC, NOW) });
    const G1 = DEFAULT_GEOMETRY;
    const G2: Geometry = { ...DEFAULT_GEOMETRY, payloadSize: 1024 };
    hop.installDocument(doc(G1, [entry]));
    expect(hop.readiness().ready).toBe(true);
    expect(hop.link.currentPacketSize).toBe(packetSizes(G1).packet);
    // a final-hop packet under G1, held for 600 ms
    const s1 = await sender(packetSizes(G1).packet, hop);
    const p1 = createPacket(nodeSuite, G1, {
      route: [{ nodeId: entry.nodeId, publicKey: entry.sphinxKey, delayMs: 600 }],
      keyEpoch: E,
      terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID },
      payload: new Uint8Array([1, 2, 3]),
    });
    s1.send(hop.peerId, p1.packet);
    await until(() => hop.held.packets === 1, 'the packet held');
    // the document changes geometry while it waits
    hop.installDocument(doc(G2, [entry]));
    expect(hop.geometry).toEqual(G2);
    expect(hop.link.currentPacketSize).toBe(packetSizes(G2).packet);
    expect(hop.held.packets).toBe(1); // still held, by the retired engine
    await until(() => delivered.length === 1, 'the held packet delivered after its delay');
    expect(delivered[0]!.at.geometry).toEqual(G1);
    expect(delivered[0]!.at.epoch).toBe(E);
    expect(Buffer.from(delivered[0]!.r.payload.subarray(0, 3))).toEqual(Buffer.from([1, 2, 3]));
    // packets of the new size go to the new engine; the counters add up over both
    const s2 = await sender(packetSizes(G2).packet, hop);
    const p2 = createPacket(nodeSuite, G2, {
      route: [{ nodeId: entry.nodeId, publicKey: entry.sphinxKey, delayMs: 0 }],
      keyEpoch: E,
      terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID },
      payload: new Uint8Array([4]),
    });
    s2.send(hop.peerId, p2.packet);
    await until(() => delivered.length === 2, 'a packet under the new geometry');
    expect(delivered[1]!.at.geometry).toEqual(G2);
    expect(hop.counters.delivered).toBe(2);
    expect(hop.counters.received).toBe(2);
  });

  it('closes connections to peers that leave the document (also for a role that takes clients)', async () => {
    const { hop, entry } = await node('gate', { clients: true });
    const mix = await PacketLink.create({
      identity: generateIdentity().seed,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      packetSize: packetSizes(DEFAULT_GEOMETRY).packet,
      onFrame: () => {},
      isAllowedPeer: () => true,
    });
    stops.push(() => mix.stop(100));
    const mixEntry: NodeEntry = {
      ...entry,
      nodeId: new Uint8Array(32).fill(9),
      peerId: mix.peerId.toString(),
      addresses: mix.multiaddrs().map(String),
      layer: 1,
    };
    hop.installDocument(doc(DEFAULT_GEOMETRY, [entry], [mixEntry]));
    expect(hop.link.send(mix.peerId, new Uint8Array(packetSizes(DEFAULT_GEOMETRY).packet))).toBe(true);
    await until(() => mix.counters.framesIn === 1, 'a frame to the listed mix');
    expect(hop.link.connections(mix.peerId)).toHaveLength(1);
    // the next document no longer lists it: the hop closes its connection
    hop.installDocument({ ...doc(DEFAULT_GEOMETRY, [entry]), digest: new Uint8Array(32).fill(0xee) });
    await until(() => hop.link.connections(mix.peerId).length === 0, 'the connection closed');
  });
});
