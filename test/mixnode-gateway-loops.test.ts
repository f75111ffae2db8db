/**
 * Mix loop cover through the real gateway daemon: three MixNodes (one per layer) with loops on,
 * a Gateway, three in-process authorities, the clock injected. Every mix's loop passes the
 * gateway and continues into layer 1 (docs/mixnode.md, loop cover), so the loops come back only
 * because the gateway forwards to the legal next hop of its document.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { epochStart, schedulePoint } from '../proto/pki/index.ts';
import { DEFAULT_GEOMETRY as G } from '../proto/sphinx/index.ts';
import { Gateway } from '../gateway/daemon.ts';
import { MixNode } from '../mixnode/daemon.ts';
import {
  testNodeKeys,
  silentLogger,
  startTestDirectory,
  testGatewayConfig,
  testMixnodeConfig,
  until,
  type Clock,
  type TestDirectory,
  LOOP_MIXING,
  TEST_EPOCH,
} from './support/loopback.ts';

const EC = TEST_EPOCH;
const E = 300;
const MIXING = LOOP_MIXING;

const tmp = mkdtempSync(join(tmpdir(), 'pm-mixgw-'));
const clock: Clock = { t: schedulePoint(EC, E - 1, 0.1) };
let dir: TestDirectory;
const nodes: MixNode[] = [];
let gw: Gateway;

beforeAll(async () => {
  dir = await startTestDirectory({ dir: join(tmp, 'dir'), epoch: EC, mixing: MIXING, geometry: G, clock });
  const gwDir = join(tmp, 'gw');
  testNodeKeys(gwDir);
  // the first tick uploads the descriptors for E and E + 1
  gw = await Gateway.start({
    config: testGatewayConfig({ dataDir: gwDir, directory: dir, epoch: EC }),
    logger: silentLogger,
    now: () => clock.t,
    defaultMetrics: false,
  });
  for (let i = 0; i < 3; i++) {
    const dataDir = join(tmp, `mix${i}`);
    testNodeKeys(dataDir);
    const cfg = testMixnodeConfig({ dataDir, directory: dir, epoch: EC, layerPreference: i + 1, loops: true, loopTimeoutS: 2 });
    nodes.push(await MixNode.start({ config: cfg, logger: silentLogger, now: () => clock.t, defaultMetrics: false }));
  }
  expect(await dir.round(E)).toBe(3);
  clock.t = epochStart(EC, E) + 1;
  await gw.tick();
  for (const n of nodes) await n.tick();
});

afterAll(async () => {
  for (const n of nodes) await n.close(200);
  await gw?.close(200);
  await dir?.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('mix loops through the gateway daemon', () => {
  it('come back at every layer: the gateway forwards them to layer 1', async () => {
    const doc = nodes[0]!.hop.view.current!.body;
    expect(doc.gateways.map((g) => g.peerId)).toEqual([gw.hop.link.peerId.toString()]);
    expect(nodes.map((n) => n.hop.view.layer)).toEqual([1, 2, 3]);
    expect(gw.hop.view.nextHopCount).toBe(1);
    await until(() => nodes.every((n) => n.loops!.stats.returned >= 10), 'loops back at every node');
    for (const n of nodes) {
      expect(n.loops!.ratio).toBeGreaterThan(0.8);
      const m = await n.metrics.registry.getSingleMetricAsString('postmix_mixnode_loop_success_ratio');
      expect(Number(m.trim().split('\n').at(-1)!.split(' ').at(-1))).toBeGreaterThan(0.8);
    }
    const returned = nodes.reduce((s, n) => s + n.loops!.stats.returned, 0);
    expect(gw.hop.engine.counters.forwarded).toBeGreaterThanOrEqual(returned);
    expect(gw.hop.engine.counters.dropped['unknown-next-hop']).toBe(0);
    expect(gw.hop.engine.counters.delivered).toBe(0); // a mix loop never ends at the gateway
    const text = await gw.metrics.registry.metrics();
    expect(text).toMatch(/postmix_gateway_packets_forwarded_total [1-9]/);
    expect(text).toMatch(/postmix_gateway_packets_dropped_total\{reason="unknown-next-hop"\} 0/);
    expect(text).toMatch(/postmix_gateway_packets_dropped_total\{reason="link-refused"\} 0/);
  });
});
