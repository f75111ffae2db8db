/**
 * InlineFrames (runtime/hop/hop-node.ts), the `[crypto] workers = 0` processor: the frames of
 * one event-loop run are peeled as they come and decided together, with one replay append for
 * the run, written before any of them can leave.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HopEngine, type ReplayTagStore } from '../../proto/hop/engine.ts';
import { DEFAULT_GEOMETRY as G, createPacket, nodeSuite, prepareHopKey } from '../../proto/sphinx/index.ts';
import { InlineFrames } from './hop-node.ts';
import { LogReplayStore } from './replay-store.ts';

const hop = (i: number) => {
  const sk = new Uint8Array(32).fill(i + 1);
  return { id: new Uint8Array(32).fill(0x10 + i), sk, pk: nodeSuite.publicKey(sk) };
};
const A = hop(0);
const B = hop(1);
const EPOCH = 7;
const packet = (delayMs = 0) =>
  createPacket(nodeSuite, G, {
    route: [
      { nodeId: A.id, publicKey: A.pk, delayMs },
      { nodeId: B.id, publicKey: B.pk, delayMs: 0 },
    ],
    terminal: { kind: 'drop' },
    payload: new Uint8Array(1),
    keyEpoch: EPOCH,
  }).packet;
const turn = () => new Promise((r) => setImmediate(r));

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pm-inline-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The log store, counting its calls; `log()` reads the tags on disk. */
function countingStore(path: string) {
  const store = new LogReplayStore(path);
  const calls = { one: 0, many: [] as number[] };
  const counted: ReplayTagStore = {
    seenOrAdd: (e, t) => (calls.one++, store.seenOrAdd(e, t)),
    seenOrAddMany: (e, t) => (calls.many.push(t.length), store.seenOrAddMany(e, t)),
    has: (e, t) => store.has(e, t),
    count: (e) => store.count(e),
    epochs: () => store.epochs(),
    dropEpoch: (e) => store.dropEpoch(e),
    dropEpochsBefore: (e) => store.dropEpochsBefore(e),
    close: () => store.close(),
  };
  const log = () => {
    try {
      return readFileSync(join(path, `tags-${EPOCH}.log`));
    } catch {
      return Buffer.alloc(0);
    }
  };
  return { store: counted, calls, log };
}

function setup(replay: ReplayTagStore, onForward?: (packet: Uint8Array) => void) {
  const sent: Uint8Array[] = [];
  const engine = new HopEngine<string>({
    geometry: G,
    replay,
    keys: () => [{ epoch: EPOCH, key: prepareHopKey(nodeSuite, A.sk) }],
    resolveNext: () => 'b',
    forward: (_n, p) => {
      onForward?.(p);
      sent.push(p);
    },
    deliver: () => {},
    maxQueuedBytes: 10_000_000,
  });
  const failures: number[] = [];
  const inline = new InlineFrames<string>(
    () => engine,
    (frames) => failures.push(frames),
  );
  return { engine, inline, sent, failures };
}

describe('InlineFrames', () => {
  it('decides a run with one append, before any packet of it leaves; a copy inside the run is a replay', async () => {
    const c = countingStore(join(dir, 'replay'));
    const logAtForward: number[] = [];
    const s = setup(c.store, () => logAtForward.push(c.log().length));
    const ps = Array.from({ length: 5 }, () => packet());
    // one run: five packets and a copy of the second, as one socket read would bring them
    for (const p of [...ps, ps[1]!]) s.inline.process(p);
    expect(s.inline.pending).toBe(6);
    expect(c.log().length).toBe(0); // peeled, nothing decided or written yet
    await Promise.resolve(); // the run's end
    expect(s.inline.pending).toBe(0);
    expect(c.calls).toEqual({ one: 0, many: [6] });
    expect(c.log().length).toBe(5 * 32);
    expect(s.engine.counters.dropped.replay).toBe(1);
    expect(s.engine.counters.received).toBe(6);
    await turn();
    await new Promise((r) => setTimeout(r, 5));
    expect(s.sent.length).toBe(5);
    // every packet left after the append of its run had returned
    expect(logAtForward).toEqual([160, 160, 160, 160, 160]);
    // a copy in a later run meets the tag in the store
    s.inline.process(ps[3]!);
    await Promise.resolve();
    expect(s.engine.counters.dropped.replay).toBe(2);
    expect(c.calls.many).toEqual([6, 1]);
    c.store.close();
  });

  it('drops frames of the wrong size or without a key at once, and bounds a run at maxBatch', async () => {
    const c = countingStore(join(dir, 'replay'));
    const s = setup(c.store);
    const inline = new InlineFrames<string>(
      () => s.engine,
      () => {},
      4,
    );
    inline.process(new Uint8Array(10));
    expect(s.engine.counters.dropped['bad-length']).toBe(1);
    for (let i = 0; i < 6; i++) inline.process(packet());
    expect(c.calls.many).toEqual([4]); // decided once four were waiting
    await Promise.resolve();
    expect(c.calls.many).toEqual([4, 2]);
    expect(s.engine.counters.received).toBe(7);
    c.store.close();
  });

  it('a failed append drops the run (counted by the caller) and forwards none of it', async () => {
    const c = countingStore(join(dir, 'replay'));
    const failing: ReplayTagStore = {
      ...c.store,
      seenOrAddMany: () => {
        throw new Error('EIO');
      },
    };
    const s = setup(failing);
    for (let i = 0; i < 3; i++) s.inline.process(packet());
    await Promise.resolve();
    expect(s.failures).toEqual([3]);
    await new Promise((r) => setTimeout(r, 5));
    expect(s.sent.length).toBe(0);
    expect(s.engine.held.packets).toBe(0);
    c.store.close();
  });

  describe('crash (SIGKILL)', () => {
    const mod = (path: string) => JSON.stringify(fileURLToPath(new URL(path, import.meta.url)));
    /** A process that takes `frames` in one run and is killed `when`; returns what it forwarded. */
    function crash(frames: Uint8Array[], when: 'before-append' | 'after-append'): number {
      writeFileSync(join(dir, 'frames.bin'), Buffer.concat(frames));
      const script = join(dir, 'crash.mts');
      writeFileSync(
        script,
        `import { readFileSync, appendFileSync } from 'node:fs';
import { InlineFrames } from ${mod('./hop-node.ts')};
import { HopEngine } from ${mod('../../proto/hop/engine.ts')};
import { LogReplayStore } from ${mod('./replay-store.ts')};
import { DEFAULT_GEOMETRY as G, nodeSuite, prepareHopKey, packetSizes } from ${mod('../../proto/sphinx/index.ts')};
const replay = new LogReplayStore(${JSON.stringify(join(dir, 'replay'))});
const engine = new HopEngine({ geometry: G, replay, keys: () => [{ epoch: ${EPOCH}, key: prepareHopKey(nodeSuite, new Uint8Array(32).fill(1)) }],
  resolveNext: () => 'b', forward: () => appendFileSync(${JSON.stringify(join(dir, 'sent'))}, 'x'), deliver: () => {}, maxQueuedBytes: 1e7 });
const inline = new InlineFrames(() => engine, () => process.exit(4));
const buf = readFileSync(${JSON.stringify(join(dir, 'frames.bin'))});
const P = packetSizes(G).packet;
for (let i = 0; i < buf.length; i += P) inline.process(buf.subarray(i, i + P));
${when === 'before-append' ? '' : 'await Promise.resolve();'}
process.kill(process.pid, 'SIGKILL');
`,
      );
      const r = spawnSync(process.execPath, ['--import', 'tsx', script], { timeout: 30_000, encoding: 'utf8' });
      expect(r.signal, r.stderr).toBe('SIGKILL');
      try {
        return readFileSync(join(dir, 'sent')).length;
      } catch {
        return 0;
      }
    }

    it('between the append and the forward: the tags are kept, the copies are refused after the restart', async () => {
      const ps = [packet(), packet()];
      expect(crash(ps, 'after-append')).toBe(0);
      const c = countingStore(join(dir, 'replay'));
      expect(c.log().length).toBe(64);
      const s = setup(c.store);
      for (const p of ps) s.inline.process(p);
      await Promise.resolve();
      expect(s.engine.counters.dropped.replay).toBe(2);
      c.store.close();
    });

    it('between the peel and the append: no tag was written and nothing left, so the one copy after the restart passes', async () => {
      const ps = [packet(), packet()];
      expect(crash(ps, 'before-append')).toBe(0);
      const c = countingStore(join(dir, 'replay'));
      expect(c.log().length).toBe(0);
      const s = setup(c.store);
      for (const p of [...ps, ...ps]) s.inline.process(p);
      await Promise.resolve();
      // each packet passes once, its second copy is a replay
      expect(s.engine.counters.dropped.replay).toBe(2);
      await new Promise((r) => setTimeout(r, 5));
      expect(s.sent.length).toBe(2);
      c.store.close();
    });
  });
});
