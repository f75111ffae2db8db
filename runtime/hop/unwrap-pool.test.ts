/**
 * The Sphinx worker pool on its own: batches peeled on worker threads give the engine the same
 * decisions as the event loop; workers run the event loop's suite or the pool does not start; a
 * worker that crashes is replaced and its batch run again once (nothing lost, nothing doubled),
 * and a batch that takes down two workers is dropped and counted.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HopEngine, type EpochHopKey } from '../../proto/hop/engine.ts';
import { DEFAULT_GEOMETRY as G, createPacket, fastestSuite, prepareHopKey } from '../../proto/sphinx/index.ts';
import { ReplayStore } from './replay-store.ts';
import { PooledFrames, UnwrapPool } from './unwrap-pool.ts';

const sk = fastestSuite.random(32);
const me = { nodeId: new Uint8Array(32).fill(1), publicKey: fastestSuite.publicKey(sk) };
const next = { nodeId: new Uint8Array(32).fill(2), publicKey: fastestSuite.publicKey(fastestSuite.random(32)) };
const KEY: EpochHopKey = { epoch: 7, key: prepareHopKey(fastestSuite, sk), secret: sk };

function packet(i: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, i);
  return createPacket(fastestSuite, G, {
    route: [
      { ...me, delayMs: 0 },
      { ...next, delayMs: 0 },
    ],
    terminal: { kind: 'drop' },
    payload,
    keyEpoch: 7,
  }).packet;
}

function engine() {
  const sent: Uint8Array[] = [];
  const e = new HopEngine<string>({
    geometry: G,
    replay: new ReplayStore(':memory:'),
    keys: () => [KEY],
    resolveNext: () => 'next',
    forward: (_n, p) => sent.push(p),
    deliver: () => {},
    maxQueuedBytes: 1 << 28,
  });
  return { e, sent };
}

let pool: UnwrapPool | undefined;
afterEach(async () => {
  await pool?.close();
  pool = undefined;
});

async function until(ok: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('UnwrapPool', () => {
  it('peels batches on two workers; the engine forwards each packet once and drops the copies as replays', async () => {
    pool = await UnwrapPool.start({ workers: 2, suite: fastestSuite.name });
    expect(pool.stats.workers).toBe(2);
    const { e, sent } = engine();
    const frames = new PooledFrames(
      pool,
      () => e,
      () => {},
      8,
    );
    const packets = Array.from({ length: 100 }, (_, i) => packet(i));
    // every packet twice, the copies far apart so that they land in different batches (and
    // workers); a turn of the event loop every 16 frames, as a link gives them
    const stream = [...packets, ...packets];
    for (let i = 0; i < stream.length; i++) {
      frames.process(stream[i]!);
      if (i % 16 === 15) await new Promise((r) => setImmediate(r));
    }
    await frames.drain();
    await until(() => sent.length === 100, '100 forwarded');
    expect(e.counters.dropped.replay).toBe(100);
    expect(e.counters.received).toBe(200);
    expect(pool.stats.batches).toBeGreaterThan(1);
    // what the workers did not take (they were behind) the event loop peeled: none lost
    expect(pool.stats.frames + frames.inline).toBe(200);
    expect(frames.queuedFrames).toBe(0);
  });

  it('refuses to start when a worker cannot run the suite of the event loop', async () => {
    await expect(UnwrapPool.start({ workers: 1, suite: 'no-such-suite' })).rejects.toThrow(/no-such-suite/);
  });

  /** One worker that dies on its next `times` batches; `lost()` counts the frames the pool dropped. */
  async function crashingPool(times: number) {
    const crashes = new SharedArrayBuffer(4);
    const p = await UnwrapPool.start({ workers: 1, suite: fastestSuite.name, testCrashes: crashes });
    pool = p;
    const { e, sent } = engine();
    let lostFrames = 0;
    const frames = new PooledFrames(
      p,
      () => e,
      (n) => (lostFrames += n),
      16,
    );
    Atomics.store(new Int32Array(crashes), 0, times);
    return { p, e, sent, frames, lost: () => lostFrames };
  }

  it('replaces a crashed worker and runs its batch again: nothing lost, nothing twice', async () => {
    const { p, e, sent, frames, lost } = await crashingPool(1);
    const ids = p.threadIds;
    for (let i = 0; i < 40; i++) frames.process(packet(i));
    await frames.drain();
    await until(() => sent.length === 40, '40 forwarded');
    expect(lost()).toBe(0);
    expect(p.stats.crashes).toBe(1);
    expect(p.stats.rerunBatches).toBeGreaterThanOrEqual(1);
    expect(p.stats.workers).toBe(1);
    expect(p.threadIds).not.toEqual(ids);
    expect(e.counters.dropped.replay).toBe(0);
  });

  it('drops (and counts) a batch that takes down two workers, and goes on', async () => {
    const { p, sent, frames, lost } = await crashingPool(2);
    frames.process(packet(1));
    await frames.drain();
    expect(lost()).toBe(1);
    expect(p.stats.crashes).toBe(2);
    expect(p.stats.lostFrames).toBe(1);
    await until(() => p.stats.workers === 1, 'worker replaced');
    frames.process(packet(2));
    await frames.drain();
    await until(() => sent.length === 1, 'the next packet forwarded');
  });
});
