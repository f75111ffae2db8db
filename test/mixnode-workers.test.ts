/**
 * A mix node that peels Sphinx on worker threads (`[crypto] workers = 2`), over real TCP/Noise/
 * yamux: layer 1 with two workers, layers 2 and 3 on the event loop, a sink gateway. Packets go
 * through intact; copies of one packet sent at the same moment on two connections (so that they
 * are peeled in different batches, on different workers) are forwarded exactly once, the other
 * copy counted as a replay; the pool's metrics; a shutdown decides every frame already taken.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PacketLink } from '../runtime/link/index.ts';
import { MAIL_QUEUE_ID } from '../proto/mailbox/index.ts';
import type { MixingParams } from '../proto/mixing/params.ts';
import { epochAt, epochStart, schedulePoint, type NodeEntry } from '../proto/pki/index.ts';
import { createPacket, DEFAULT_GEOMETRY as G, fastestSuite } from '../proto/sphinx/index.ts';
import { MixNode } from '../mixnode/daemon.ts';
import {
  testClientLink,
  dialAddresses,
  testNodeKeys,
  silentLogger,
  SinkGateway,
  startTestDirectory,
  testMixnodeConfig,
  until,
  type Clock,
  type TestDirectory,
  TEST_EPOCH,
} from './support/loopback.ts';

const EC = TEST_EPOCH;
const E = 100;
const MIXING: MixingParams = { lambdaP: 1, lambdaL: 0.5, lambdaD: 0.5, lambdaM: 0, lambdaG: 0, mu: 50 };
const tmp = mkdtempSync(join(tmpdir(), 'pm-mixw-'));
const clock: Clock = { t: schedulePoint(EC, E - 1, 0.1) };
let dir: TestDirectory;
const nodes: MixNode[] = [];
let sink: SinkGateway;
const clients: PacketLink[] = [];
let route: NodeEntry[] = [];

function makePacket(seq: number): Uint8Array {
  const hops = [...route, sink.document!.gateways[0]!];
  const payload = new Uint8Array(8);
  new DataView(payload.buffer).setUint32(0, seq);
  return createPacket(fastestSuite, G, {
    route: hops.map((n) => ({ nodeId: n.nodeId, publicKey: n.sphinxKey, delayMs: 0 })),
    keyEpoch: E,
    terminal: { kind: 'deliver', queueId: MAIL_QUEUE_ID },
    payload,
  }).packet;
}

const seqOf = (p: Uint8Array) => new DataView(p.buffer, p.byteOffset, 8).getUint32(0);
const arrivals = (seq: number) => sink.arrivals.filter((a) => seqOf(a.result.payload) === seq).length;

beforeAll(async () => {
  dir = await startTestDirectory({ dir: join(tmp, 'dir'), epoch: EC, mixing: MIXING, geometry: G, clock });
  for (let i = 0; i < 3; i++) {
    const dataDir = join(tmp, `mix${i}`);
    testNodeKeys(dataDir);
    nodes.push(
      await MixNode.start({
        config: testMixnodeConfig({ dataDir, directory: dir, epoch: EC, layerPreference: i + 1, workers: i === 0 ? 2 : 0 }),
        logger: silentLogger,
        now: () => clock.t,
        defaultMetrics: false,
      }),
    );
  }
  sink = new SinkGateway(G, () => epochAt(EC, clock.t));
  await sink.start();
  await sink.upload(dir.urls, E);
  expect(await dir.round(E)).toBe(3);
  clock.t = epochStart(EC, E) + 1;
  for (const n of nodes) await n.tick();
  const doc = nodes[0]!.hop.view.current!;
  sink.document = doc.body;
  route = nodes.map((n) => doc.body.layers.flat().find((x) => x.peerId === n.peerId.toString())!);
  for (let c = 0; c < 2; c++)
    clients.push(
      await testClientLink(G, (peer) => {
        const n = doc.body.layers.flat().find((x) => x.peerId === peer);
        return n && dialAddresses(n);
      }),
    );
});

afterAll(async () => {
  for (const c of clients) await c.stop(100);
  for (const n of nodes) await n.close(200);
  await sink?.stop();
  await dir?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('a mix node with [crypto] workers = 2', () => {
  it('runs a pool of two Sphinx worker threads on the suite of its event loop', () => {
    expect(nodes[0]!.hop.cryptoWorkers).toBe(2);
    expect(nodes[0]!.hop.poolStats?.workers).toBe(2);
    expect(nodes[0]!.hop.describe()).toMatchObject({ cryptoWorkers: 2, sphinxSuite: fastestSuite.name });
    expect(nodes[1]!.hop.cryptoWorkers).toBe(0);
    expect(nodes[1]!.hop.poolStats).toBeUndefined();
  });

  it('forwards 600 packets through three layers, each intact and once', async () => {
    const l1 = nodes[0]!.peerId;
    const before = sink.arrivals.length;
    for (let i = 0; i < 600; i++) {
      const p = makePacket(i);
      while (!clients[i % 2]!.send(l1, p)) await clients[i % 2]!.flushed(l1);
    }
    await until(() => sink.arrivals.length - before >= 600, '600 packets at the sink', 40_000);
    const seqs = sink.arrivals.slice(before).map((a) => seqOf(a.result.payload));
    expect(new Set(seqs).size).toBe(600);
    expect(seqs.every((s) => s < 600)).toBe(true);
    const s = nodes[0]!.hop.poolStats!;
    // peeled by the workers, or (a burst faster than they go) by the event loop
    expect(s.frames + s.inlineFrames).toBeGreaterThanOrEqual(600);
    expect(s.frames).toBeGreaterThan(0);
    expect(s.batches).toBeGreaterThan(0);
    expect(s.crashes).toBe(0);
    expect(nodes[0]!.hop.engine.counters.dropped.replay).toBe(0);
  });

  it('two copies of one packet sent at once on two connections: exactly one forwarded, one counted as a replay', async () => {
    const l1 = nodes[0]!.peerId;
    const n1 = nodes[0]!;
    const replay0 = n1.hop.engine.counters.dropped.replay;
    const rounds = 20;
    // each round: the copy on connection A, 40 fresh packets, the copy on connection B, sent in
    // one go, so that the two copies are in different batches, peeled at the same time by the
    // two workers
    const fill = 40;
    let seq = 10_000;
    const twins: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const twin = seq++;
      twins.push(twin);
      const p = makePacket(twin);
      clients[0]!.send(l1, p);
      for (let i = 0; i < fill; i++) clients[i % 2]!.send(l1, makePacket(seq++));
      clients[1]!.send(l1, p);
    }
    const total = rounds * (fill + 1);
    await until(() => n1.hop.engine.counters.dropped.replay - replay0 === rounds, `${rounds} replays counted`, 40_000);
    await until(() => sink.arrivals.filter((a) => seqOf(a.result.payload) >= 10_000).length >= total, 'all fresh packets at the sink', 40_000);
    await new Promise((r) => setTimeout(r, 300));
    for (const t of twins) expect(arrivals(t)).toBe(1);
    expect(n1.hop.engine.counters.dropped.replay - replay0).toBe(rounds);
    expect(n1.hop.poolStats!.queuedFrames).toBe(0);
  });

  it('exports the pool on /metrics, read at scrape time', async () => {
    const text = await nodes[0]!.hop.registry.metrics();
    expect(text).toMatch(/^postmix_mixnode_crypto_workers 2$/m);
    expect(text).toMatch(/^postmix_mixnode_crypto_batches_total [1-9]\d*$/m);
    expect(text).toMatch(/^postmix_mixnode_crypto_batch_frames_total [1-9]\d*$/m);
    expect(text).toMatch(/^postmix_mixnode_crypto_queue_frames 0$/m);
    expect(text).toMatch(/^postmix_mixnode_crypto_inline_frames_total \d+$/m);
    expect(text).toMatch(/^postmix_mixnode_crypto_worker_crashes_total 0$/m);
    expect(text).toMatch(/^postmix_mixnode_packets_dropped_total\{reason="worker-crash"\} 0$/m);
    const l2 = await nodes[1]!.hop.registry.metrics();
    expect(l2).toMatch(/^postmix_mixnode_crypto_workers 0$/m);
  });
});
