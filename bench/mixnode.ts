/**
 * `npm run bench -- mixnode`: one mix node over loopback.
 *
 * 1. Throughput with zero delay: a real MixNode (layer 1; link, HopEngine, delay queue, replay
 *    store, metrics hooks) in this process, fed pre-built packets by a client link and
 *    forwarding to a counting peer registered as layer 2 (both in a child process, so their
 *    link work does not share the node's thread); packets forwarded per second, and the ratio
 *    to the bare Sphinx processing rate (processPacket alone, same key, same run). Both replay
 *    stores. Each measured run follows a warm-up of 3,000 other fresh packets through the same
 *    node and links: the figure is the node's steady state, not the JIT warm-up of a process's
 *    first packets (a node in service has run that once, at start; the bare loop is hot too,
 *    from the delay-queue figures before it).
 *    Then `scaling`: the same run with `[crypto] workers` = 0, 1 and 2 (Sphinx on worker
 *    threads; runtime/hop/unwrap-pool.ts): forwarded/s and process CPU per packet (all threads).
 * 2. Delay queue at 50k packets in flight (delays on, mean 50 ms for the timed stream; run first,
 *    in a process of its own, see delayQueueInChild): resident
 *    memory per queued packet (real processed packets held by the HopEngine) and the scheduler's
 *    added latency (how late packets leave after their due time) p50/p99.
 * Figures only, no assertions.
 */
import '../runtime/polyfill.ts';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { HopEngine } from '../proto/hop/engine.ts';
import type { ReplayTagStore } from '../runtime/hop/replay-store.ts';
import { PacketLink } from '../runtime/link/index.ts';
import { sampleExponential, type MixingParams } from '../proto/mixing/params.ts';
import {
  buildDescriptor,
  epochAt,
  epochStart,
  generateIdentity,
  generateSphinxKey,
  schedulePoint,
  type EpochConfig,
  type IdentityKey,
} from '../proto/pki/index.ts';
import { uploadDescriptor } from '../runtime/pki/client.ts';
import { createPacket, DEFAULT_GEOMETRY as G, fastestSuite, packetSizes, prepareHopKey, processPacket, type NodeId } from '../proto/sphinx/index.ts';
import { MixNode } from '../mixnode/daemon.ts';
import { dialAddresses, testNodeKeys, silentLogger, SinkGateway, startTestDirectory, testMixnodeConfig, type Clock } from '../test/support/loopback.ts';
import { fmt, machineInfo, type BenchOptions, type BenchReport } from './harness.ts';

const EC: EpochConfig = { origin: 1_700_000_000, length: 3600, grace: 300 };
const E = 10;
const MIXING: MixingParams = { lambdaP: 1, lambdaL: 1, lambdaD: 1, lambdaM: 0, lambdaG: 0, mu: 20 };
const PACKET = packetSizes(G).packet;

function gcFn(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return undefined;
  }
}

/** A mix in the document that only counts what reaches it (layer 2 / 3 stand-in). */
async function countingMix(
  dirUrls: readonly string[],
  layer: number,
): Promise<{ id: IdentityKey; link: PacketLink; count: () => number; upload: () => Promise<string[]> }> {
  const id = generateIdentity();
  let n = 0;
  const link = await PacketLink.create({
    identity: id.seed,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    packetSize: PACKET,
    onFrame: () => {
      n++;
    },
    isAllowedPeer: () => true,
  });
  const keys = [generateSphinxKey(E), generateSphinxKey(E + 1)];
  return {
    id,
    link,
    count: () => n,
    upload: async () =>
      (
        await uploadDescriptor(
          dirUrls,
          buildDescriptor({
            identity: id,
            peerId: link.peerId.toString(),
            addresses: link.multiaddrs().map((m) => m.toString().replace(/\/p2p\/[^/]+$/, '')),
            role: 'mix',
            layerPreference: layer,
            epoch: E,
            sphinxKeys: keys,
            publishedAt: 1_800_000_000,
          }),
        )
      ).map((r) => r.result),
  };
}

/**
 * The load generator + counting layer-2 peer, in a child process so that their link work does
 * not share the mix node's thread. Protocol on stdin/stdout, one JSON line each way:
 *   child → {peerId, addrs}                       (its L2 link is listening)
 *   parent → {file, count, target: [multiaddr]}   (pre-built packets, PACKET bytes each)
 *   child → {forwarded, seconds, cpuUs}           (frames that reached L2 after the warm-up; its CPU)
 */
const CHILD = `
await import(${JSON.stringify(new URL('../runtime/polyfill.ts', import.meta.url).href)});
const { PacketLink, parseMultiaddr } = await import(${JSON.stringify(new URL('../runtime/link/index.ts', import.meta.url).href)});
const { readFileSync } = await import('node:fs');
const { randomBytes } = await import('node:crypto');
const { createInterface } = await import('node:readline');
const SIZE = Number(process.env.PM_PACKET);
let got = 0;
const l2 = await PacketLink.create({ identity: Buffer.from(process.env.PM_L2_SEED, 'hex'), listen: ['/ip4/127.0.0.1/tcp/0'], packetSize: SIZE, onFrame: () => { got++; }, isAllowedPeer: () => true });
process.stdout.write(JSON.stringify({ peerId: l2.peerId.toString(), addrs: l2.multiaddrs().map((m) => m.toString().replace(/\\/p2p\\/[^/]+$/, '')) }) + '\\n');
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const job = JSON.parse(line);
  const buf = readFileSync(job.file);
  const packets = [];
  for (let i = 0; i < job.count; i++) packets.push(buf.subarray(i * SIZE, (i + 1) * SIZE));
  const target = job.target.map((a) => parseMultiaddr(a));
  const client = await PacketLink.create({ identity: randomBytes(32), listen: [], packetSize: SIZE, onFrame: () => {}, isAllowedPeer: () => true, addressesOf: () => target, maxQueuedFramesPerPeer: 100000 });
  const { peerIdFromString } = await import('@libp2p/peer-id');
  const peer = peerIdFromString(job.peer);
  const warm = 200;
  for (let i = 0; i < warm; i++) client.send(peer, packets[i]);
  while (got < warm) await new Promise((r) => setTimeout(r, 2));
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let i = warm; i < packets.length; i++) {
    while (!client.send(peer, packets[i])) await client.flushed(peer);
    if (client.waiting(peer) >= 2048) await client.flushed(peer);
  }
  const deadline = Date.now() + 120000;
  while (got < packets.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  process.stdout.write(JSON.stringify({ forwarded: got - warm, seconds, cpuUs: cpu.user + cpu.system }) + '\\n');
  got = 0;
  await client.stop(100);
}
await l2.stop(100);
`;

interface Child {
  next(): Promise<Record<string, unknown>>;
  send(o: unknown): void;
  close(): void;
}

/**
 * A Node process running `code` as an ES module under tsx (so it can import this tree's .ts),
 * from the repo root, its stdin and stdout piped to us, its stderr ours.
 */
function spawnModule(code: string, env: NodeJS.ProcessEnv = process.env) {
  return spawn(process.execPath, ['--import', 'tsx/esm', '--input-type=module', '-e', code], {
    cwd: new URL('..', import.meta.url).pathname,
    env,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}

function startChild(l2Seed: Uint8Array): Child {
  const cp = spawnModule(CHILD, { ...process.env, PM_L2_SEED: Buffer.from(l2Seed).toString('hex'), PM_PACKET: String(PACKET) });
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  let buf = '';
  cp.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(l);
      else lines.push(l);
    }
  });
  return {
    next: () =>
      new Promise((r) => {
        const l = lines.shift();
        if (l !== undefined) r(JSON.parse(l) as Record<string, unknown>);
        else waiters.push((x) => r(JSON.parse(x) as Record<string, unknown>));
      }),
    send: (o) => cp.stdin.write(JSON.stringify(o) + '\n'),
    close: () => {
      cp.stdin.end();
    },
  };
}

async function throughput(opts: BenchOptions, tmp: string): Promise<Record<string, unknown>> {
  const clock: Clock = { t: schedulePoint(EC, E - 1, 0.1) };
  const dir = await startTestDirectory({ dir: join(tmp, 'dir'), epoch: EC, mixing: MIXING, geometry: G, clock });
  const dataDir = join(tmp, 'l1');
  testNodeKeys(dataDir);
  // the replay-store runs peel on the event loop (workers = 0), as every figure before the pool
  // did, so ratioToBare stays one thread against one thread; `scaling` varies the workers
  const start = (store: 'log' | 'sqlite', port?: number, workers = 0) =>
    MixNode.start({
      config: testMixnodeConfig({ dataDir, directory: dir, epoch: EC, layerPreference: 1, replay: store, listenPort: port, workers }),
      logger: silentLogger,
      now: () => clock.t,
      defaultMetrics: false,
    });
  let node = await start('log');
  const l2id = generateIdentity();
  const child = startChild(l2id.seed);
  const l2info = (await child.next()) as { peerId: string; addrs: string[] };
  const l3 = await countingMix(dir.urls, 3);
  await uploadDescriptor(
    dir.urls,
    buildDescriptor({
      identity: l2id,
      peerId: l2info.peerId,
      addresses: l2info.addrs,
      role: 'mix',
      layerPreference: 2,
      epoch: E,
      sphinxKeys: [generateSphinxKey(E), generateSphinxKey(E + 1)],
      publishedAt: 1_800_000_000,
    }),
  );
  await l3.upload();
  const gw = new SinkGateway(G, () => epochAt(EC, clock.t));
  await gw.start();
  await gw.upload(dir.urls, E);
  await dir.round(E);
  clock.t = epochStart(EC, E) + 1;
  await node.tick();
  const doc = node.hop.view.current!.body;
  const me = doc.layers[0]![0]!;
  const next = doc.layers[1]!.find((x) => x.peerId === l2info.peerId)!;
  const port = Number(node.hop.addresses()[0]!.split('/').pop());

  const N = opts.quick ? 3000 : 12000;
  opts.log(`building ${fmt(N)} two-hop packets (L1 → L2, zero delay)…`);
  // one fresh packet through this node to the next, dropped there (no replay between rounds)
  const twoHop = () =>
    createPacket(fastestSuite, G, {
      route: [
        { nodeId: me.nodeId, publicKey: me.sphinxKey, delayMs: 0 },
        { nodeId: next.nodeId, publicKey: next.sphinxKey, delayMs: 0 },
      ],
      keyEpoch: E,
      terminal: { kind: 'drop' },
      payload: new Uint8Array(16),
    }).packet;
  const packets = Array.from({ length: N }, twoHop);

  // bare Sphinx processing rate, same key, same packets; measured before each node run (the
  // machine is shared, so the figure drifts; each ratio uses the one measured next to it)
  const key = node.hop.keys.keys()[0]!.key;
  const bare = (): number => {
    const bareN = Math.min(N, 3000);
    const t0 = performance.now();
    for (let i = 0; i < bareN; i++) processPacket(G, key, packets[i]!, { isReplay: () => false });
    const r = bareN / ((performance.now() - t0) / 1000);
    opts.log(`bare Sphinx processing: ${fmt(r)} packets/s`);
    return r;
  };
  let bareRate = bare();

  const file = join(tmp, 'packets.bin');
  writeFileSync(file, Buffer.concat(packets));
  // warm-up packets for each `scaling` run, other than the measured ones (which must be fresh to
  // the replay store): a node started with new worker threads peels its first thousands of
  // packets on code V8 has not optimised yet, while the event loop's copy is hot from the runs
  // before; without this the first workers figures carry their JIT warm-up
  // The same holds for the first (`log`) run: it is the node's first, and without the warm-up it
  // measured ~15% under the workers = 0 run of the same bench (4,060 against 4,800/s).
  const WARM = opts.quick ? 600 : 3000;
  const warmFile = join(tmp, 'warm.bin');
  writeFileSync(warmFile, Buffer.concat(Array.from({ length: WARM }, twoHop)));
  const warmUp = async () => {
    child.send({ file: warmFile, count: WARM, target: dialAddresses(me), peer: me.peerId });
    await child.next();
  };
  // the child sends from the file; the node's heap keeps only what the bare loop needs (a real
  // node does not hold its senders' 29 MB of packets, and V8's marking cost grows with the heap)
  packets.length = Math.min(N, 3000);
  const out: Record<string, unknown> = { packets: N };
  /** One run: the child sends the N packets, the node forwards them to the child's L2. */
  const measure = async () => {
    let gcMs = 0;
    const gcObs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) gcMs += e.duration;
    });
    gcObs.observe({ entryTypes: ['gc'] });
    const elu0 = performance.eventLoopUtilization();
    // the whole process: the event loop, the Sphinx worker threads, GC helpers, libuv
    const cpu0 = process.cpuUsage();
    const recv0 = node.hop.engine.counters.received;
    const dropped0 = { ...node.hop.engine.counters.dropped };
    child.send({ file, count: N, target: dialAddresses(me), peer: me.peerId });
    const r = (await child.next()) as { forwarded: number; seconds: number; cpuUs: number };
    const cpu = process.cpuUsage(cpu0);
    // how busy the node's thread was: near 1 means the node itself is the bottleneck, lower
    // means it waited for input (the load generator or the shared cores held it back)
    const elu = performance.eventLoopUtilization(elu0).utilization;
    gcObs.disconnect();
    const dropped = Object.fromEntries(
      Object.entries(node.hop.engine.counters.dropped)
        .map(([k, v]) => [k, v - dropped0[k as keyof typeof dropped0]] as const)
        .filter(([, v]) => v > 0),
    );
    return {
      rate: r.forwarded / r.seconds,
      forwarded: r.forwarded,
      elu,
      gcUsPerPacket: (gcMs * 1000) / r.forwarded,
      cpuUsPerPacket: (cpu.user + cpu.system) / (node.hop.engine.counters.received - recv0),
      // the sender and the counting L2 peer (Noise, yamux, framing both ways), on the same cores
      generatorCpuUsPerPacket: r.cpuUs / r.forwarded,
      dropped,
    };
  };
  for (const store of ['log', 'sqlite'] as const) {
    if (store === 'sqlite') {
      await node.close(100);
      rmSync(join(dataDir, 'replay'), { recursive: true, force: true });
      node = await start('sqlite', port);
      await node.tick();
    }
    // the warm-up packets are fresh to this store too (new in both runs)
    await warmUp();
    if (store === 'sqlite') bareRate = bare();
    out[`bareSphinxPerSec_${store}`] = Math.round(bareRate);
    const m = await measure();
    out[`nodeEventLoopUtilization_${store}`] = Number(m.elu.toFixed(3));
    out[`nodeGcUsPerPacket_${store}`] = Math.round(m.gcUsPerPacket);
    out[`nodeCpuUsPerPacket_${store}`] = Math.round(m.cpuUsPerPacket);
    out[`cpuBoundRatioToBare_${store}`] = Number((1e6 / m.cpuUsPerPacket / bareRate).toFixed(3));
    opts.log(
      `  node CPU ${fmt(m.cpuUsPerPacket)} µs/packet (bare Sphinx ${fmt(1e6 / bareRate)} µs): CPU-bound rate ${fmt(1e6 / m.cpuUsPerPacket)}/s = ${fmt(1e8 / m.cpuUsPerPacket / bareRate, 1)}% of bare`,
    );
    out[`forwardedPerSec_${store}`] = Math.round(m.rate);
    out[`ratioToBare_${store}`] = Number((m.rate / bareRate).toFixed(3));
    out[`dropped_${store}`] = m.dropped;
    opts.log(
      `mix node (replay store ${store}): ${fmt(m.rate)} packets/s forwarded over loopback = ${fmt((100 * m.rate) / bareRate, 1)}% of bare Sphinx; node event loop busy ${fmt(100 * m.elu, 1)}%, GC pauses ${fmt(m.gcUsPerPacket, 1)} µs/packet`,
    );
  }
  // [crypto] workers = 0, 1, 2: the same packets, the same links, replay store `log` (emptied
  // before each run, so the packets are fresh to it)
  const scaling: Record<string, unknown>[] = [];
  for (const workers of [0, 1, 2]) {
    await node.close(100);
    rmSync(join(dataDir, 'replay'), { recursive: true, force: true });
    node = await start('log', port, workers);
    await node.tick();
    await warmUp();
    const p0 = node.hop.poolStats;
    const m = await measure();
    const p1 = node.hop.poolStats;
    // over the measured run only
    const pool = p0 && p1 ? { frames: p1.frames - p0.frames, batches: p1.batches - p0.batches, inlineFrames: p1.inlineFrames - p0.inlineFrames } : undefined;
    scaling.push({
      workers,
      forwardedPerSec: Math.round(m.rate),
      nodeCpuUsPerPacket: Math.round(m.cpuUsPerPacket),
      nodeEventLoopUtilization: Number(m.elu.toFixed(3)),
      loadGeneratorCpuUsPerPacket: Math.round(m.generatorCpuUsPerPacket),
      ...(pool ? { meanBatch: Number((pool.frames / Math.max(1, pool.batches)).toFixed(1)), inlineFrames: pool.inlineFrames } : {}),
      dropped: m.dropped,
    });
    opts.log(
      `mix node, [crypto] workers = ${workers}: ${fmt(m.rate)} packets/s forwarded, node CPU ${fmt(m.cpuUsPerPacket)} µs/packet (load generator ${fmt(m.generatorCpuUsPerPacket)}), event loop busy ${fmt(100 * m.elu, 1)}%` +
        (pool ? `, mean batch ${fmt(pool.frames / Math.max(1, pool.batches), 1)}, ${fmt(pool.inlineFrames)} frames peeled on the event loop` : ''),
    );
  }
  const w0 = scaling[0]!.forwardedPerSec as number;
  out.scaling = scaling;
  out.scalingRatio2To0 = Number(((scaling[2]!.forwardedPerSec as number) / w0).toFixed(3));
  opts.log(`workers = 2 / workers = 0: ${fmt(out.scalingRatio2To0 as number, 2)}x (target ≥ 1.4x)`);
  child.close();
  await node.close(100);
  await l3.link.stop(100);
  await gw.stop();
  await dir.close();
  return out;
}

/**
 * The delay-queue section in a process of its own, so that each section starts from a fresh
 * process state: its resident-memory delta is not blurred by the links, and the throughput
 * runs do not inherit its heap. Measured here with both in one process, the 50k packets it
 * queues and drops left V8 with heap limits that started a full collection every ~200 ms in
 * the throughput runs that followed (27-40 in four runs, against 5 without it), for ~7% less
 * throughput than the same runs in a process that had not held them.
 */
async function delayQueueInChild(opts: BenchOptions): Promise<Record<string, unknown>> {
  const code = `
const m = await import(${JSON.stringify(import.meta.url)});
const r = await m.delayQueue({ json: true, quick: ${opts.quick}, log: (l) => process.stderr.write(l + '\\n') });
process.stdout.write(JSON.stringify(r));
`;
  const cp = spawnModule(code);
  cp.stdin.end();
  let out = '';
  cp.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const status = await new Promise<number | null>((r) => cp.on('close', r));
  if (status !== 0) throw new Error(`the delay-queue section's process exited with ${status}`);
  return JSON.parse(out) as Record<string, unknown>;
}

/** Memory per queued packet and scheduler lateness, with the HopEngine and real processed packets. */
export async function delayQueue(opts: BenchOptions): Promise<Record<string, unknown>> {
  const gc = gcFn();
  const sk = generateSphinxKey(1);
  const me = { nodeId: new Uint8Array(32).fill(1) as NodeId, publicKey: sk.publicKey };
  const nextId = new Uint8Array(32).fill(2);
  const nextPk = generateSphinxKey(1).publicKey;
  const build = (delayMs: number) =>
    createPacket(fastestSuite, G, {
      route: [
        { ...me, delayMs },
        { nodeId: nextId, publicKey: nextPk, delayMs: 0 },
      ],
      keyEpoch: 1,
      terminal: { kind: 'drop' },
      payload: new Uint8Array(2048),
    }).packet;
  // no replay checks here: the same input is processed many times into distinct queued outputs
  const noReplay: ReplayTagStore = {
    seenOrAdd: () => false,
    seenOrAddMany: (_e, t) => t.map(() => false),
    has: () => false,
    count: () => 0,
    epochs: () => [],
    dropEpoch() {},
    dropEpochsBefore: () => [],
    flush() {},
    close() {},
  };
  const late: number[] = [];
  let measuring = false;
  const engine = new HopEngine<string>({
    geometry: G,
    replay: noReplay,
    keys: () => [{ epoch: 1, key: prepareHopKey(fastestSuite, sk.secretKey) }],
    resolveNext: () => 'next',
    forward: () => {},
    deliver: () => {},
    maxQueuedBytes: 1 << 30,
    observeLateness: (ms) => {
      if (measuring) late.push(ms);
    },
  });
  const IN_FLIGHT = opts.quick ? 10_000 : 50_000;
  const longPacket = build(600_000); // held for the whole measurement
  gc?.();
  gc?.();
  const m0 = process.memoryUsage();
  for (let i = 0; i < IN_FLIGHT; i++) engine.handle(longPacket);
  gc?.();
  gc?.();
  const m1 = process.memoryUsage();
  const perPacket = (m1.rss - m0.rss) / engine.held.packets;
  const logical = (m1.heapUsed + m1.external - m0.heapUsed - m0.external) / engine.held.packets;
  opts.log(
    `${fmt(engine.held.packets)} packets queued: resident memory ${fmt(perPacket)} B per queued packet ` +
      `(V8 heap + external ${fmt(logical)} B; packet ${PACKET} B, payload ${G.payloadSize} B)`,
  );

  // a stream with Exp(μ = 20/s) delays (mean 50 ms) on top of the queued packets
  let u = 42;
  const uniform = () => (u = (u * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const variants = Array.from({ length: 256 }, () => build(Math.round(sampleExponential(20, uniform) * 1000)));
  const rate = 500; // packets/s offered
  const seconds = opts.quick ? 2 : 5;
  measuring = true;
  const end = performance.now() + seconds * 1000;
  let k = 0;
  while (performance.now() < end) {
    for (let i = 0; i < rate / 200; i++) engine.handle(variants[k++ % variants.length]!);
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 600));
  measuring = false;
  late.sort((a, b) => a - b);
  const q = (p: number) => late[Math.min(late.length - 1, Math.floor(p * late.length))] ?? NaN;
  opts.log(
    `scheduler added latency over ${fmt(late.length)} releases (${fmt(engine.held.packets)} held): p50 ${fmt(q(0.5), 2)} ms, p99 ${fmt(q(0.99), 2)} ms, max ${fmt(q(1), 2)} ms`,
  );
  engine.close();
  return {
    inFlight: IN_FLIGHT,
    rssPerQueuedPacketBytes: Math.round(perPacket),
    heapPlusExternalPerQueuedPacketBytes: Math.round(logical),
    gcAvailable: gc !== undefined,
    latenessSamples: late.length,
    latenessP50Ms: Number(q(0.5).toFixed(3)),
    latenessP99Ms: Number(q(0.99).toFixed(3)),
    latenessMaxMs: Number(q(1).toFixed(3)),
  };
}

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const tmp = mkdtempSync(join(tmpdir(), 'pm-bench-mix-'));
  // the machine may be shared: the 1/5/15-minute load averages before and after go with the figures
  const load0 = loadavg();
  try {
    // the memory figure first, in a fresh process of its own
    const dq = await delayQueueInChild(opts);
    const tp = await throughput(opts, tmp);
    const { scaling, scalingRatio2To0, ...throughputFields } = tp;
    return {
      suite: 'mixnode',
      machine: machineInfo(),
      results: { throughput: throughputFields, scaling, scalingRatio2To0, delayQueue: dq, loadAverage: { start: load0, end: loadavg() } },
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
