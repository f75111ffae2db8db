import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DelayQueue } from './delay-queue.ts';

const queues: DelayQueue<unknown>[] = [];
afterEach(() => {
  for (const q of queues.splice(0)) q.close();
});

describe('DelayQueue', () => {
  it('releases exactly what is due, in (due time, arrival) order (property, manual clock)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ delay: fc.integer({ min: -5, max: 50 }), gap: fc.integer({ min: 0, max: 5 }), release: fc.boolean() }), { maxLength: 300 }),
        (ops) => {
          let clock = 0;
          const due: number[] = [];
          let batch: number[] = [];
          const q = new DelayQueue<number>({ onDue: (id) => batch.push(id), maxBytes: 1e9, now: () => clock, autoTimer: false });
          const check = (): void => {
            batch = [];
            const n = q.releaseDue();
            expect(n).toBe(batch.length);
            for (let i = 0; i < batch.length; i++) {
              const id = batch[i]!;
              expect(due[id]!).toBeLessThanOrEqual(clock);
              if (i > 0) {
                const prev = batch[i - 1]!;
                expect(due[prev]! < due[id]! || (due[prev] === due[id] && prev < id)).toBe(true);
              }
            }
            const next = q.peekDue();
            if (next !== undefined) expect(next).toBeGreaterThan(clock);
          };
          ops.forEach((op, id) => {
            clock += op.gap;
            due[id] = clock + Math.max(0, op.delay);
            expect(q.push(id, op.delay, 1)).toBe(true);
            if (op.release) check();
          });
          clock += 100;
          check();
          expect(q.size).toBe(0);
          expect(q.counters.released).toBe(ops.length);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('pops a large random batch in sorted order', () => {
    let clock = 0;
    const out: number[] = [];
    const q = new DelayQueue<number>({ onDue: (d) => out.push(d), maxBytes: 1e12, now: () => clock, autoTimer: false });
    const N = 100_000;
    for (let i = 0; i < N; i++) {
      const d = Math.floor(Math.random() * 1e6);
      q.push(d, d, 2048);
    }
    expect(q.size).toBe(N);
    expect(q.bytes).toBe(N * 2048);
    clock = 2e6;
    expect(q.releaseDue()).toBe(N);
    let inversions = 0;
    for (let i = 1; i < N; i++) if (out[i]! < out[i - 1]!) inversions++;
    expect(inversions).toBe(0);
    expect(q.bytes).toBe(0);
  });

  it('drops and counts past the byte bound without stalling', () => {
    let clock = 0;
    const out: number[] = [];
    const q = new DelayQueue<number>({ onDue: (i) => out.push(i), maxBytes: 10 * 2048, now: () => clock, autoTimer: false });
    let ok = 0;
    for (let i = 0; i < 25; i++) if (q.push(i, 10, 2048)) ok++;
    expect(ok).toBe(10);
    expect(q.counters.droppedFull).toBe(15);
    clock = 10;
    expect(q.releaseDue()).toBe(10);
    expect(q.push(99, 0, 2048)).toBe(true); // room again
    expect(out).toEqual([...Array(10).keys()]);
    const byCount = new DelayQueue<number>({ onDue: () => {}, maxBytes: 1e9, maxEntries: 3, now: () => clock, autoTimer: false });
    expect([1, 2, 3, 4].map((i) => byCount.push(i, 1, 1))).toEqual([true, true, true, false]);
  });

  it('with the real timer: releases never early, all within a generous bound, one timer', async () => {
    const released: Array<{ due: number; at: number }> = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const N = 2000;
    let firstNow: number | undefined;
    const q = new DelayQueue<number>({
      now: () => {
        const t = performance.now();
        firstNow ??= t;
        return t;
      },
      onDue: (item) => {
        released.push({ due: (item as unknown as { due: number }).due, at: performance.now() });
        if (released.length === N) done();
      },
      maxBytes: 1e9,
    });
    queues.push(q as DelayQueue<unknown>);
    const timers = vi.spyOn(globalThis, 'setTimeout');
    for (let i = 0; i < N; i++) {
      const delay = Math.random() * 200;
      const item = { due: 0 };
      firstNow = undefined;
      q.push(item as unknown as number, delay, 1);
      item.due = firstNow! + delay; // the due time the queue computed from its clock
    }
    // no timer per packet: only re-arms when a new earliest entry arrives (~ln N for random delays)
    expect(timers.mock.calls.length).toBeLessThan(N / 20);
    timers.mockRestore();
    await finished;
    for (let i = 0; i < N; i++) {
      const r = released[i]!;
      expect(r.at).toBeGreaterThanOrEqual(r.due - 0.01);
      if (i > 0) expect(r.due).toBeGreaterThanOrEqual(released[i - 1]!.due);
    }
    // generous correctness bound (not a latency claim): nothing is forgotten for seconds
    expect(Math.max(...released.map((r) => r.at - r.due))).toBeLessThan(2000);
  });

  it('re-arms for an earlier entry pushed after a later one', async () => {
    const order: string[] = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const q = new DelayQueue<string>({
      onDue: (s) => {
        order.push(s);
        if (order.length === 2) done();
      },
      maxBytes: 100,
    });
    queues.push(q as DelayQueue<unknown>);
    q.push('late', 300, 1);
    q.push('early', 5, 1);
    await finished;
    expect(order).toEqual(['early', 'late']);
  });

  it('close drops (and counts) what is queued and refuses pushes', () => {
    const q = new DelayQueue<number>({ onDue: () => {}, maxBytes: 100 });
    q.push(1, 1000, 1);
    q.push(2, 1000, 1);
    q.close();
    expect(q.counters.droppedCleared).toBe(2);
    expect(q.push(3, 0, 1)).toBe(false);
    expect(q.size).toBe(0);
  });
});
