/**
 * Mix nodes across an epoch boundary and with loop cover on: three MixNodes + a sink gateway +
 * three in-process authorities, the clock injected (moved, never slept on). Loops come back,
 * then stop coming back when the gateway stops forwarding (ratio falls, a warning is logged);
 * the next document is fetched ahead, keys switch at the boundary, the previous key works
 * during the grace window, then its replay set and key file are deleted. Metrics endpoint.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PacketLink } from '../runtime/link/index.ts';
import { MAIL_QUEUE_ID } from '../proto/mailbox/index.ts';
import { epochAt, epochStart, schedulePoint, SCHEDULE, sphinxKeyFile, type DocumentBody } from '../proto/pki/index.ts';
import { createPacket, DEFAULT_GEOMETRY as G, nodeSuite } from '../proto/sphinx/index.ts';
import { MixNode } from '../mixnode/daemon.ts';
import {
  testClientLink,
  dialAddresses,
  testNodeKeys,
  SinkGateway,
  startTestDirectory,
  testMixnodeConfig,
  until,
  type Clock,
  type TestDirectory,
  LOOP_MIXING,
  TEST_EPOCH,
} from './support/loopback.ts';

const EC = TEST_EPOCH;
const E = 200;
const MIXING = LOOP_MIXING;

const tmp = mkdtempSync(join(tmpdir(), 'pm-mixe-'));
const clock: Clock = { t: schedulePoint(EC, E - 1, 0.1) };
let dir: TestDirectory;
const nodes: MixNode[] = [];
const logs: string[] = [];
let sink: SinkGateway;
let client: PacketLink;

function packetVia(doc: DocumentBody, seq: number): Uint8Array {
  const hops = [...doc.layers.map((l) => l[0]!), doc.gateways[0]!];
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, seq);
  return createPacket(nodeSuite, G, {
    route: hops.map((n) => ({ nodeId: n.nodeId, publicKey: n.sphinxKey, delayMs: 1 })),
    keyEpoch: doc.epoch,
    terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID },
    payload,
  }).packet;
}

const arrived = (seq: number) => sink.arrivals.some((a) => new DataView(a.result.payload.buffer, a.result.payload.byteOffset, 4).getUint32(0) === seq);

beforeAll(async () => {
  dir = await startTestDirectory({ dir: join(tmp, 'dir'), epoch: EC, mixing: MIXING, geometry: G, clock });
  for (let i = 0; i < 3; i++) {
    const dataDir = join(tmp, `mix${i}`);
    testNodeKeys(dataDir);
    const sinkStream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        logs.push(chunk.toString());
        cb();
      },
    });
    const cfg = testMixnodeConfig({ dataDir, directory: dir, epoch: EC, layerPreference: i + 1, loops: true, loopTimeoutS: 1, metrics: i === 0 });
    nodes.push(await MixNode.start({ config: cfg, logger: pino({ level: 'info' }, sinkStream), now: () => clock.t, defaultMetrics: false }));
  }
  sink = new SinkGateway(G, () => epochAt(EC, clock.t));
  await sink.start();
  await sink.upload(dir.urls, E);
  await sink.upload(dir.urls, E + 1);
  expect(await dir.round(E)).toBe(3);
  clock.t = epochStart(EC, E) + 1;
  for (const n of nodes) await n.tick();
  sink.document = nodes[0]!.hop.view.current!.body;
  client = await testClientLink(G, (peer) => {
    const n = nodes[0]!.hop.view.current?.body.layers[0]!.find((x) => x.peerId === peer);
    return n && dialAddresses(n);
  });
});

afterAll(async () => {
  await client?.stop(100);
  for (const n of nodes) await n.close(200);
  await sink?.stop();
  await dir?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('mix node loop cover', () => {
  it('sends loops through the later layers and a gateway back to itself, and notices when they stop', async () => {
    await until(() => nodes.every((n) => n.loops!.stats.returned >= 10), 'loops back at every node');
    for (const n of nodes) {
      expect(n.loops!.ratio).toBeGreaterThan(0.8);
      // a returning loop is delivered at its own node, never at another
      expect(n.hop.engine.counters.delivered).toBe(n.loops!.stats.returned + n.loops!.stats.unknown);
      expect(n.hop.engine.counters.dropped['not-deliverable']).toBe(0);
    }
    // the gateway stops forwarding into layer 1: every loop passes through it, so all stop
    const doc = sink.document!;
    sink.document = { ...doc, layers: doc.layers.map(() => []) };
    const lost0 = nodes.map((n) => n.loops!.stats.lost);
    await until(() => nodes.every((n) => n.loops!.ratio < 0.5), 'ratio falls', 30_000);
    nodes.forEach((n, i) => expect(n.loops!.stats.lost).toBeGreaterThan(lost0[i]!));
    expect(logs.some((l) => l.includes('loops are not coming back'))).toBe(true);
    sink.document = doc;

    // metrics endpoint (loopback) shows the ratio and per-reason drops
    const res = await fetch(`http://127.0.0.1:${nodes[0]!.hop.metricsPort}/metrics`);
    const text = await res.text();
    expect(text).toMatch(/postmix_mixnode_loop_success_ratio \d/);
    expect(text).toMatch(/postmix_mixnode_packets_dropped_total\{reason="replay"\} 0/);
    expect(text).toMatch(/postmix_mixnode_packets_forwarded_total [1-9]/);
    expect(text).toMatch(/postmix_mixnode_processing_seconds_bucket/);
    expect(text).toMatch(/postmix_mixnode_queue_bytes \d/);
    expect(text).toMatch(/postmix_mixnode_link_frames_total\{direction="in"\} [1-9]/);
  });
});

describe('mix node epochs', () => {
  it('fetches the next document ahead, switches keys at the boundary, honours the grace window, then forgets the old epoch', async () => {
    const oldDoc = nodes[0]!.hop.view.current!.body;
    // the authorities make the document for E + 1 during E; nodes fetch it from the collect point
    expect(await dir.round(E + 1)).toBe(3);
    clock.t = schedulePoint(EC, E, SCHEDULE.collect) + 1;
    for (const n of nodes) await n.tick();
    for (const n of nodes) expect(n.hop.view.has(E + 1)).toBe(true);
    expect(nodes[0]!.hop.keys.keys().map((k) => k.epoch)).toEqual([E]);

    // boundary: the key for E + 1 comes first, E's stays for the grace window
    clock.t = epochStart(EC, E + 1) + 1;
    expect(nodes[0]!.hop.keys.keys().map((k) => k.epoch)).toEqual([E + 1, E]);
    for (const n of nodes) await n.tick();
    const newDoc = nodes[0]!.hop.view.current!.body;
    expect(newDoc.epoch).toBe(E + 1);
    sink.document = newDoc;
    client.send(nodes[0]!.peerId, packetVia(newDoc, 1));
    client.send(nodes[0]!.peerId, packetVia(oldDoc, 2)); // built by a sender still on E's document
    await until(() => arrived(1) && arrived(2), 'packets under both keys');
    expect(nodes[0]!.hop.replay.epochs()).toEqual([E, E + 1]);

    // grace over: E's replay set and key file go, its packets no longer decrypt
    clock.t = epochStart(EC, E + 1) + EC.grace + 1;
    for (const n of nodes) await n.tick();
    expect(nodes[0]!.hop.keys.keys().map((k) => k.epoch)).toEqual([E + 1]);
    for (const n of nodes) {
      expect(n.hop.replay.epochs()).not.toContain(E);
      expect(existsSync(join(n.config.keysDir, sphinxKeyFile(E)))).toBe(false);
      expect(existsSync(join(n.config.keysDir, sphinxKeyFile(E + 1)))).toBe(true);
    }
    const dropped0 = { ...nodes[0]!.hop.engine.counters.dropped };
    client.send(nodes[0]!.peerId, packetVia(oldDoc, 3));
    // counted as a packet under an expired key, not as a forgery
    await until(() => nodes[0]!.hop.engine.counters.dropped['expired-key'] > dropped0['expired-key'], 'old-key packet refused');
    expect(nodes[0]!.hop.engine.counters.dropped['bad-mac']).toBe(dropped0['bad-mac']);
    expect(arrived(3)).toBe(false);
    const m = await fetch(`http://127.0.0.1:${nodes[0]!.hop.metricsPort}/metrics`).then((r) => r.text());
    expect(m).toMatch(/postmix_mixnode_packets_dropped_total\{reason="expired-key"\} 1/);
  });
});
