/**
 * Adversary: a passive observer of the client's link, after the client was away (issue 11
 * point 8, second half). The client's machine sleeps (or its process stalls) for a minute. The
 * observer records how many packets leave at each instant. On the old code the scheduler's
 * `step(now)` then emitted every stream event it had missed, at once: a burst of
 * ≈ 60 s × (λ_P + λ_L + λ_D) packets that no Poisson stream produces, telling when the client
 * slept and for how long (and that a wake-up, not mail, caused the traffic). Now every overdue
 * stream restarts from the wake-up: after the silence the link looks like the streams starting
 * afresh, which is what a memoryless stream is expected to look like.
 *
 * The real ClientCore and Sender, with cover and a message queued, on the in-process mixnet
 * (real Sphinx) and a fake clock; the client's scheduler is stepped every 10 ms as the daemon's
 * timer would, except during the gap.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeSuite } from '../proto/sphinx/index.ts';
import { ClientCore } from '../client/core.ts';
import { InProcessMixnet, seededUniform } from './support/in-process-mixnet.ts';

const dir = mkdtempSync(join(tmpdir(), 'postmix-adv-gap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MAILBOX = new Uint8Array(32).fill(0x42);
const RATE = 2 + 0.5 + 0.5; // λ_P + λ_L + λ_D, packets per second

describe('a passive observer of the client link, after the client slept', () => {
  it('sees no burst when the client wakes: no more packets in the first second than its streams send in any second', () => {
    const sim = new InProcessMixnet({ mixing: { lambdaP: 2, lambdaL: 0.5, lambdaD: 0.5, lambdaM: 0, lambdaG: 0, mu: 10 } });
    const c = new ClientCore({
      outboxPath: join(dir, 'outbox.sqlite'),
      suite: nodeSuite,
      network: sim.network(MAILBOX),
      policy: { overlayOnly: true, overlayOnlyRecipients: [] },
      strip: {},
      smarthost: null,
      bounceMaildir: join(dir, 'Maildir'),
      cover: true,
      uniform: seededUniform(31),
    });
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    c.accept('a@sender.test', ['bob@overlay.test'], new Uint8Array(Buffer.concat([Buffer.from('Subject: x\r\n\r\n'), randomBytes(400_000)])), 0);

    // what the observer records: packets leaving per instant (ms)
    const sentAt = new Map<number, number>();
    const tick = (t: number) => {
      const n = c.tick(t);
      if (n > 0) sentAt.set(t, n);
      for (const item of sim.fetch(MAILBOX)) c.onMailboxItem(item, t);
    };
    const SLEEP_FROM = 30_000;
    const WAKE = 90_000; // a minute away
    for (let t = 0; t < SLEEP_FROM; t += 10) tick(t);
    for (let t = WAKE; t < WAKE + 30_000; t += 10) tick(t);
    c.close();

    const inWindow = (a: number, b: number) => [...sentAt].filter(([t]) => t >= a && t < b).reduce((s, [, n]) => s + n, 0);
    const busiestSecondAwake = Math.max(...Array.from({ length: 29 }, (_, i) => inWindow(i * 1000, i * 1000 + 1000)));
    const atWake = sentAt.get(WAKE) ?? 0;
    const firstSecond = inWindow(WAKE, WAKE + 1000);
    const after = inWindow(WAKE, WAKE + 30_000);

    // the old scheduler sent ≈ 60 × RATE = 180 packets at the wake-up instant
    expect(atWake).toBeLessThanOrEqual(1);
    expect(firstSecond).toBeLessThanOrEqual(busiestSecondAwake);
    // and no catch-up later: the 30 s after the wake-up carry the streams' rate, as the 30 s before did
    expect(Math.abs(after - RATE * 30)).toBeLessThan(5 * Math.sqrt(RATE * 30));
    expect(Math.abs(inWindow(0, SLEEP_FROM) - RATE * 30)).toBeLessThan(5 * Math.sqrt(RATE * 30));
    expect(c.stats.gaps).toBe(1);
  }, 60_000);
});
