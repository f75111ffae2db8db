/**
 * `npm run bench -- link`: the packet link over loopback (awaiting each write vs batched
 * writes), the delay queue at 100k entries, and the replay store (with the alternative it was
 * chosen over). Figures only, no assertions.
 */
import '../runtime/polyfill.ts';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DelayQueue } from '../proto/hop/delay-queue.ts';
import { LogReplayStore, ReplayStore } from '../runtime/hop/replay-store.ts';
import { PacketLink } from '../runtime/link/index.ts';
import { fmt, machineInfo, type BenchOptions, type BenchReport } from './harness.ts';

const FRAME = 2048;

function seed(n: number): Uint8Array {
  return new Uint8Array(32).fill(n);
}

async function linkThroughput(frames: number, batch: number): Promise<{ framesPerSec: number; frames: number; seconds: number }> {
  let got = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const rx = await PacketLink.create({
    identity: seed(201),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    packetSize: FRAME,
    isAllowedPeer: () => true,
    onFrame: () => {
      if (++got === frames) resolveDone();
    },
  });
  const tx = await PacketLink.create({
    identity: seed(202),
    listen: [],
    packetSize: FRAME,
    onFrame: () => {},
    isAllowedPeer: () => true,
    addressesOf: () => rx.multiaddrs(),
    maxBatchFrames: batch,
    maxQueuedFramesPerPeer: 8192,
  });
  try {
    const peer = rx.peerId;
    const frame = randomBytes(FRAME);
    // warm up: connection, stream, JIT
    tx.send(peer, frame);
    await tx.flushed(peer);
    while (got < 1) await new Promise((r) => setTimeout(r, 1));
    got = 0;
    const start = performance.now();
    for (let i = 0; i < frames; i++) {
      if (batch === 1) {
        tx.send(peer, frame);
        await tx.flushed(peer); // one write, awaited, per frame
      } else {
        while (!tx.send(peer, frame)) await tx.flushed(peer);
        if (tx.waiting(peer) >= 4096) await tx.flushed(peer);
      }
    }
    await done;
    const seconds = (performance.now() - start) / 1000;
    return { framesPerSec: frames / seconds, frames, seconds };
  } finally {
    await tx.stop(100);
    await rx.stop(100);
  }
}

function delayQueueRates(n: number): Record<string, number> {
  let clock = 0;
  let popped = 0;
  const q = new DelayQueue<Uint8Array>({ onDue: () => popped++, maxBytes: 1e12, now: () => clock, autoTimer: false });
  const pkt = new Uint8Array(16);
  const delays = Array.from({ length: n }, () => -Math.log(1 - Math.random()) * 50);
  let t = performance.now();
  for (let i = 0; i < n; i++) q.push(pkt, delays[i]!, FRAME);
  const insertPerSec = n / ((performance.now() - t) / 1000);
  // steady state at n entries: pop one, push one
  const steadyOps = n;
  t = performance.now();
  for (let i = 0; i < steadyOps; i++) {
    q.shift();
    q.push(pkt, delays[i]!, FRAME);
  }
  const steadyPairsPerSec = steadyOps / ((performance.now() - t) / 1000);
  clock = 1e9;
  t = performance.now();
  q.releaseDue();
  const popPerSec = n / ((performance.now() - t) / 1000);
  return { entries: n, insertPerSec, popPerSec, steadyPopPushPairsPerSec: steadyPairsPerSec, popped };
}

/**
 * Real timer: n packets with delay 50 ms + Exp(mean 50 ms) (the fixed 50 ms keeps the push
 * loop itself out of the figure); lateness of each release = the scheduler's added latency.
 */
async function delayQueueLateness(n: number): Promise<Record<string, number>> {
  const late: number[] = [];
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const q = new DelayQueue<Uint8Array>({
    onDue: (_p, lateMs) => {
      late.push(lateMs);
      if (late.length === n) done();
    },
    maxBytes: 1e12,
  });
  const packets = Array.from({ length: n }, () => new Uint8Array(FRAME));
  const delays = packets.map(() => 50 - Math.log(1 - Math.random()) * 50);
  for (let i = 0; i < n; i++) q.push(packets[i]!, delays[i]!, FRAME);
  await finished;
  late.sort((a, b) => a - b);
  const pct = (p: number): number => late[Math.min(late.length - 1, Math.floor(p * late.length))]!;
  return { packets: n, lateP50Ms: pct(0.5), lateP99Ms: pct(0.99), lateMaxMs: late[late.length - 1]! };
}

function replayRates(quick: boolean): Record<string, number> {
  const dir = mkdtempSync(join(tmpdir(), 'postmix-bench-replay-'));
  const out: Record<string, number> = {};
  try {
    const n = quick ? 20_000 : 100_000;
    const tags = Array.from({ length: n }, () => randomBytes(32));
    {
      const s = new ReplayStore(join(dir, 'a.db'));
      let t = performance.now();
      for (const tag of tags) s.seenOrAdd(1, tag);
      out.sqliteSeenOrAddPerSec = n / ((performance.now() - t) / 1000);
      // replays (all present)
      t = performance.now();
      for (const tag of tags) s.seenOrAdd(1, tag);
      out.sqliteReplayCheckPerSec = n / ((performance.now() - t) / 1000);
      t = performance.now();
      for (let i = 0; i < n; i += 32) s.seenOrAddMany(2, tags.slice(i, i + 32));
      out.sqliteBatched32PerSec = n / ((performance.now() - t) / 1000);
      s.close();
    }
    {
      const m = quick ? 500 : 2000;
      const s = new ReplayStore(join(dir, 'f.db'), { synchronous: 'full' });
      const t = performance.now();
      for (let i = 0; i < m; i++) s.seenOrAdd(1, tags[i]!);
      out.sqliteFsyncEachPerSec = m / ((performance.now() - t) / 1000);
      s.close();
    }
    {
      // the alternative: in-memory set + append-only log (LogReplayStore)
      // durable per call as the SQLite figures are: a flush (one write(2)) after each call; a
      // HopEngine flushes once per departure, so under load its writes carry many tags each
      const s = new LogReplayStore(join(dir, 'log'));
      let t = performance.now();
      for (const tag of tags) {
        s.seenOrAdd(1, tag);
        s.flush();
      }
      out.logSeenOrAddPerSec = n / ((performance.now() - t) / 1000);
      t = performance.now();
      for (let i = 0; i < n; i += 32) {
        s.seenOrAddMany(2, tags.slice(i, i + 32));
        s.flush();
      }
      out.logBatched32PerSec = n / ((performance.now() - t) / 1000);
      s.close();
      t = performance.now();
      const reopened = new LogReplayStore(join(dir, 'log'));
      out.logReopenMsPer100kTags = ((performance.now() - t) / (2 * n)) * 100_000;
      reopened.close();
    }
    out.tags = n;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const frames = opts.quick ? 5_000 : 40_000;
  const results: Record<string, unknown> = {};

  const each = await linkThroughput(frames, 1);
  const batched = await linkThroughput(frames, 32);
  results.link = { frameBytes: FRAME, awaitEachWrite: each, batched32: batched, speedup: batched.framesPerSec / each.framesPerSec };
  opts.log(`link, ${FRAME} B frames over loopback (${frames} frames):`);
  opts.log(`  awaiting each write   ${fmt(each.framesPerSec)} frames/s`);
  opts.log(`  batched (<=32/write)  ${fmt(batched.framesPerSec)} frames/s   (x${fmt(batched.framesPerSec / each.framesPerSec, 2)})`);

  const dq = delayQueueRates(100_000);
  results.delayQueue = dq;
  opts.log(
    `delay queue at 100k entries: insert ${fmt(dq.insertPerSec!)}/s, pop ${fmt(dq.popPerSec!)}/s, steady pop+push ${fmt(dq.steadyPopPushPairsPerSec!)} pairs/s`,
  );
  const lat = await delayQueueLateness(opts.quick ? 10_000 : 50_000);
  results.delayQueueTimer = lat;
  opts.log(
    `delay queue timer, ${lat.packets} packets, 50 ms + Exp(50 ms): lateness p50 ${fmt(lat.lateP50Ms!, 2)} ms, p99 ${fmt(lat.lateP99Ms!, 2)} ms, max ${fmt(lat.lateMaxMs!, 2)} ms`,
  );

  const rp = replayRates(opts.quick);
  results.replay = rp;
  opts.log(`replay store (${rp.tags} tags):`);
  opts.log(`  SQLite WAL, seenOrAdd (commit each)   ${fmt(rp.sqliteSeenOrAddPerSec!)}/s  (replay hits ${fmt(rp.sqliteReplayCheckPerSec!)}/s)`);
  opts.log(`  SQLite WAL, seenOrAddMany (32/txn)    ${fmt(rp.sqliteBatched32PerSec!)}/s`);
  opts.log(`  SQLite WAL, synchronous=FULL          ${fmt(rp.sqliteFsyncEachPerSec!)}/s`);
  opts.log(`  LogReplayStore (Set + append log)      ${fmt(rp.logSeenOrAddPerSec!)}/s, batched 32: ${fmt(rp.logBatched32PerSec!)}/s`);
  opts.log(`    reopen (reads the logs back) ${fmt(rp.logReopenMsPer100kTags!)} ms per 100k tags`);

  return { suite: 'link', machine: machineInfo(), results };
}
