import { describe, expect, it } from 'vitest';
import { DEFAULT_GEOMETRY as G, createPacket, nodeSuite, prepareHopKey, processPacket, type HopDeliver } from '../sphinx/index.ts';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HopEngine, type EpochHopKey, type ReplayTagStore } from './engine.ts';
import { LogReplayStore, ReplayStore } from '../../runtime/hop/replay-store.ts';

function node(i: number) {
  const sk = new Uint8Array(32).fill(i + 1);
  return { id: new Uint8Array(32).fill(0x10 + i), sk, pk: nodeSuite.publicKey(sk) };
}

function setup(
  opts: {
    keys?: () => EpochHopKey[];
    maxQueuedBytes?: number;
    known?: boolean;
    deliverAtOnce?: boolean;
    replay?: ReplayTagStore;
    /** called as each packet is handed to the link, before it is recorded in `sent` */
    onForward?: () => void;
  } = {},
) {
  let now = 0;
  const a = node(0);
  const sent: { next: string; packet: Uint8Array; at: number }[] = [];
  const delivered: HopDeliver[] = [];
  const replay = opts.replay ?? new ReplayStore(':memory:');
  const engine = new HopEngine<string>({
    geometry: G,
    replay,
    keys: opts.keys ?? (() => [{ epoch: 7, key: prepareHopKey(nodeSuite, a.sk) }]),
    resolveNext: (id) => (opts.known === false ? undefined : Buffer.from(id).toString('hex')),
    forward: (next, packet) => {
      opts.onForward?.();
      sent.push({ next, packet, at: now });
    },
    deliver: (r) => delivered.push(r),
    maxQueuedBytes: opts.maxQueuedBytes ?? 10_000_000,
    ...(opts.deliverAtOnce ? { deliverAtOnce: () => true } : {}),
    now: () => now,
    autoTimer: false,
  });
  return {
    engine,
    a,
    sent,
    delivered,
    replay,
    tick: (ms: number) => {
      now += ms;
      engine.releaseDue(now);
    },
  };
}

describe('HopEngine', () => {
  const b = node(1);

  it('holds a packet for its header delay, then forwards it to the resolved next hop', () => {
    const s = setup();
    const route = [s.a, b].map((n, i) => ({ nodeId: n.id, publicKey: n.pk, delayMs: i === 0 ? 250 : 0 }));
    const { packet } = createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(1), keyEpoch: 7 });
    s.engine.handle(packet);
    expect(s.engine.held.packets).toBe(1);
    s.tick(249);
    expect(s.sent.length).toBe(0);
    s.tick(1);
    expect(s.sent.length).toBe(1);
    expect(s.sent[0]!.next).toBe(Buffer.from(b.id).toString('hex'));
    expect(s.sent[0]!.packet.length).toBe(packet.length);
    expect(s.engine.counters.forwarded).toBe(1);
  });

  it("emit: a packet of the node's own leaves through the same delay queue, then its callback runs", () => {
    const s = setup();
    let then = 0;
    expect(s.engine.emit('peer-x', new Uint8Array(5), 40, () => then++)).toBe(true);
    expect(s.engine.emit(undefined, undefined, 60, () => then++)).toBe(true); // only the callback is held
    expect(s.engine.held.packets).toBe(2);
    s.tick(39);
    expect([s.sent.length, then]).toEqual([0, 0]);
    s.tick(1);
    expect(s.sent.map((x) => [x.next, x.at])).toEqual([['peer-x', 40]]);
    expect([then, s.engine.counters.forwarded]).toEqual([1, 1]);
    s.tick(20);
    expect([then, s.sent.length]).toEqual([2, 1]);
  });

  it('deliverAtOnce: a final-hop packet the role answers later is delivered at arrival, whatever its header delay', () => {
    const s = setup({ deliverAtOnce: true });
    const route = [{ nodeId: s.a.id, publicKey: s.a.pk, delayMs: 5000 }];
    const { packet } = createPacket(nodeSuite, G, {
      route,
      terminal: { kind: 'deliver', queueId: new Uint8Array(32) },
      payload: new Uint8Array(1),
      keyEpoch: 7,
    });
    s.engine.handle(packet);
    expect([s.delivered.length, s.engine.held.packets, s.engine.counters.delivered]).toEqual([1, 0, 1]);
  });

  it("a processed packet leaves only once its replay tag is on disk (the log store's pending tags)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'postmix-engine-replay-'));
    try {
      const store = new LogReplayStore(dir);
      const s = setup({ replay: store });
      const file = join(dir, 'tags-7.log');
      const onDisk = () => statSync(file, { throwIfNoEntry: false })?.size ?? 0;
      const route = [s.a, b].map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 10 }));
      const mk = () => createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(1), keyEpoch: 7 }).packet;
      const packets = [mk(), mk(), mk()];
      for (const p of packets) s.engine.handle(p);
      expect([store.count(7), onDisk()]).toEqual([3, 0]); // taken, not written yet
      s.engine.handle(packets[1]!); // and exact before the write
      expect(s.engine.counters.dropped.replay).toBe(1);
      // what the file holds at the moment each packet is handed to the link, on a second engine
      // over the same store
      const seenAtSend: number[] = [];
      const t = setup({ replay: store, onForward: () => seenAtSend.push(onDisk()) });
      t.engine.handle(mk());
      expect(onDisk()).toBe(0);
      t.tick(10);
      // one write for the four tags, before the first packet left
      expect(seenAtSend).toEqual([4 * 32]);
      expect(readFileSync(file).length).toBe(4 * 32);
      s.tick(10);
      expect(s.sent.length).toBe(3);
      expect(onDisk()).toBe(4 * 32);
      store.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a packet whose tag cannot be written does not leave: dropped as replay-store-failed; own packets still leave', () => {
    class FailingFlush extends ReplayStore {
      failing = true;
      override flush(): void {
        if (this.failing) throw new Error('ENOSPC: no space left on device');
      }
    }
    const store = new FailingFlush(':memory:');
    const s = setup({ replay: store });
    const route = [s.a, b].map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 10 }));
    s.engine.handle(createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(1), keyEpoch: 7 }).packet);
    s.engine.emit('peer-x', new Uint8Array(5), 10);
    s.tick(10);
    expect(s.sent.map((x) => x.next)).toEqual(['peer-x']);
    expect([s.engine.counters.dropped['replay-store-failed'], s.engine.counters.forwarded]).toEqual([1, 1]);
    // a final hop taken at once is refused the same way, and taken once the store writes again
    const d = setup({ replay: store, deliverAtOnce: true });
    const fin = () =>
      createPacket(nodeSuite, G, {
        route: [{ nodeId: d.a.id, publicKey: d.a.pk, delayMs: 0 }],
        terminal: { kind: 'deliver', queueId: new Uint8Array(32) },
        payload: new Uint8Array(1),
        keyEpoch: 7,
      }).packet;
    d.engine.handle(fin());
    expect([d.delivered.length, d.engine.counters.dropped['replay-store-failed']]).toEqual([0, 1]);
    store.failing = false;
    d.engine.handle(fin());
    expect(d.delivered.length).toBe(1);
  });

  it('drops a replay, an unknown next hop, garbage and a full queue, counting each', () => {
    const s = setup();
    const route = [s.a, b].map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 10 }));
    const mk = () => createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(1), keyEpoch: 7 }).packet;
    const p = mk();
    s.engine.handle(p);
    s.engine.handle(p);
    expect(s.engine.counters.dropped.replay).toBe(1);
    s.engine.handle(new Uint8Array(10));
    expect(s.engine.counters.dropped['bad-length']).toBe(1);
    const junk = mk();
    junk[100]! ^= 1;
    s.engine.handle(junk);
    expect(s.engine.counters.dropped['bad-mac']).toBe(1);
    expect(s.replay.count(7)).toBe(1); // forged packets never enter the replay set

    const u = setup({ known: false });
    u.engine.handle(mk());
    expect(u.engine.counters.dropped['unknown-next-hop']).toBe(1);

    const f = setup({ maxQueuedBytes: p.length * 2 });
    for (let i = 0; i < 3; i++) f.engine.handle(mk());
    expect(f.engine.counters.dropped['queue-full']).toBe(1);
    expect(f.engine.held.packets).toBe(2);
  });

  it("accepts the previous epoch's key during the grace window, with its own replay set", () => {
    const old = node(5);
    const s = setup({
      keys: () => [
        { epoch: 8, key: prepareHopKey(nodeSuite, node(0).sk) },
        { epoch: 7, key: prepareHopKey(nodeSuite, old.sk) },
      ],
    });
    const route = [old, b].map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 0 }));
    const { packet } = createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(1), keyEpoch: 7 });
    // the key phase is under the MAC: claiming the current epoch's key does not get it tried
    const claimed = packet.slice();
    claimed[1] = 8;
    s.engine.handle(claimed);
    expect(s.engine.counters.dropped['bad-mac']).toBe(1);
    s.engine.handle(packet);
    s.tick(0);
    expect(s.sent.length).toBe(1);
    expect(s.replay.count(7)).toBe(1);
    expect(s.replay.count(8)).toBe(0);
  });

  it('counts a packet under a key it no longer (or does not yet) hold as expired-key, a forged one as bad-mac', () => {
    const s = setup(); // holds epoch 7's key only
    const route = [s.a, b].map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 0 }));
    for (const keyEpoch of [5, 6, 8])
      s.engine.handle(createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(1), keyEpoch }).packet);
    expect(s.engine.counters.dropped['expired-key']).toBe(3);
    expect(s.engine.counters.dropped['bad-mac']).toBe(0);
    // the right phase under another node's key: a forgery as far as this hop can tell
    const other = [node(3), b].map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 0 }));
    s.engine.handle(createPacket(nodeSuite, G, { route: other, terminal: { kind: 'drop' }, payload: new Uint8Array(1), keyEpoch: 7 }).packet);
    expect(s.engine.counters.dropped['bad-mac']).toBe(1);
    expect(s.engine.counters.dropped['expired-key']).toBe(3);
    expect(s.replay.count(7)).toBe(0);
  });

  it('delivers at the final hop and ends drop cover quietly', () => {
    const s = setup();
    const q = new Uint8Array(32).fill(9);
    const d = createPacket(nodeSuite, G, {
      route: [{ nodeId: s.a.id, publicKey: s.a.pk, delayMs: 5 }],
      terminal: { kind: 'deliver', queueId: q },
      payload: new Uint8Array([1, 2, 3]),
      keyEpoch: 7,
    });
    s.engine.handle(d.packet);
    s.tick(5);
    expect(s.delivered.length).toBe(1);
    expect(s.delivered[0]!.queueId).toEqual(q);
    expect(s.delivered[0]!.payload.subarray(0, 3)).toEqual(new Uint8Array([1, 2, 3]));
    const c = createPacket(nodeSuite, G, {
      route: [{ nodeId: s.a.id, publicKey: s.a.pk, delayMs: 5 }],
      terminal: { kind: 'drop' },
      payload: new Uint8Array(0),
      keyEpoch: 7,
    });
    s.engine.handle(c.packet);
    expect(s.engine.counters.coverEnded).toBe(1);
  });

  it('drops final-hop packets admitDeliver refuses at once, without queueing them', () => {
    const a = node(0);
    const delivered: HopDeliver[] = [];
    const mine = new Uint8Array(32).fill(1);
    const engine = new HopEngine<string>({
      geometry: G,
      replay: new ReplayStore(':memory:'),
      keys: () => [{ epoch: 1, key: prepareHopKey(nodeSuite, a.sk) }],
      resolveNext: () => undefined,
      forward: () => {},
      deliver: (r) => delivered.push(r),
      admitDeliver: (r) => r.queueId[0] === 1,
      maxQueuedBytes: 1_000_000,
      autoTimer: false,
      now: () => 0,
    });
    const mk = (q: Uint8Array) =>
      createPacket(nodeSuite, G, {
        route: [{ nodeId: a.id, publicKey: a.pk, delayMs: 0 }],
        terminal: { kind: 'deliver', queueId: q },
        payload: new Uint8Array(1),
        keyEpoch: 1,
      }).packet;
    engine.handle(mk(new Uint8Array(32).fill(2)));
    expect(engine.counters.dropped['not-deliverable']).toBe(1);
    expect(engine.held.packets).toBe(0);
    engine.handle(mk(mine));
    engine.releaseDue(0);
    expect(delivered).toHaveLength(1);
  });

  it('split pipeline (precheck, a layer peeled elsewhere, admit): one replay check-and-insert per tag, exactly as handle', () => {
    const s = setup();
    const route = [s.a, b].map((n) => ({ nodeId: n.id, publicKey: n.pk, delayMs: 0 }));
    const p1 = createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(1), keyEpoch: 7 }).packet;
    const p2 = createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(2), keyEpoch: 7 }).packet;
    // peeled "in two workers" at once: no replay check yet, both copies come back as forwards
    const peel = (frame: Uint8Array) => {
      const k = s.engine.precheck(frame)!;
      let tag: Uint8Array | undefined;
      const result = processPacket(G, k.key, frame, { isReplay: (t) => ((tag = t), false) });
      return { epoch: k.epoch, result, tag, t0: 0 };
    };
    const a1 = peel(p1);
    const a2 = peel(p1);
    const fresh = peel(p2);
    expect(a1.result.ok && a2.result.ok).toBe(true);
    // two copies in one batch: the first is taken, the second is a replay
    s.engine.admit([a1, fresh, a2]);
    // a third copy in a later batch: a replay too
    s.engine.admit([peel(p1)]);
    s.tick(1);
    expect(s.sent.length).toBe(2);
    expect(s.engine.counters.dropped.replay).toBe(2);
    expect(s.engine.counters.received).toBe(4);
    // what handle makes of a fourth copy: the same store, the same answer
    s.engine.handle(p1);
    expect(s.engine.counters.dropped.replay).toBe(3);
    // a frame without a key the hop holds is decided at precheck, counted once
    const old = createPacket(nodeSuite, G, { route, terminal: { kind: 'drop' }, payload: new Uint8Array(1), keyEpoch: 3 }).packet;
    expect(s.engine.precheck(old)).toBeUndefined();
    expect(s.engine.counters.dropped['expired-key']).toBe(1);
    expect(s.engine.counters.received).toBe(6);
  });

  it('admit records the tag of a packet refused after its MAC, so that a copy of it is a replay, as in handle', () => {
    const s = setup();
    const tag = new Uint8Array(32).fill(5);
    s.engine.admit([{ epoch: 7, result: { ok: false, reason: 'bad-commands' }, tag, t0: 0 }]);
    s.engine.admit([{ epoch: 7, result: { ok: false, reason: 'bad-commands' }, tag, t0: 0 }]);
    expect(s.engine.counters.dropped['bad-commands']).toBe(1);
    expect(s.engine.counters.dropped.replay).toBe(1);
    expect(s.replay.has(7, tag)).toBe(true);
    // a key that expired while the frame was away: expired-key, and no replay set made for it
    s.engine.admit([{ epoch: 6, result: { ok: false, reason: 'bad-commands' }, tag, t0: 0 }]);
    expect(s.engine.counters.dropped['expired-key']).toBe(1);
    expect(s.replay.epochs()).toEqual([7]);
  });
});
