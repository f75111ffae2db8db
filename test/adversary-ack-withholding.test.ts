/**
 * Adversary: the recipient's gateway, which may withhold ACKs, together with a passive observer
 * of the clients' links (docs/threat-model.md, "The recipient's gateway"). It wants to know which
 * client writes to bob@overlay.test. It stores bob's fragments but never ACKs them, and watches
 * every client's packets: which layer-1 mix each one goes to, and when bob's fragments come back.
 *
 * Before issue 11 a missing ACK blamed every mix of the fragment's routes and the client then
 * avoided them, so the sender's first hops changed while everyone else's stayed uniform: a
 * confirmation channel. Now route health learns only from the client's own loops, and the test
 * checks that the sender's first hops stay as uniform as a bystander's. What the gateway still
 * learns is measured too: the resent fragments arrive, and their spacing follows the randomised
 * exponential backoff (proto/mixing/retransmit.ts), not a fixed timeout.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeSuite } from '../proto/sphinx/index.ts';
import { ClientCore } from '../client/core.ts';
import { InProcessMixnet, seededUniform } from './support/in-process-mixnet.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

interface Watched {
  readonly core: ClientCore;
  readonly mailbox: Uint8Array;
  /** layer-1 mix of every packet the client sent, with its send time: what the observer sees */
  readonly firstHops: { at: number; hop: string }[];
}

function client(sim: InProcessMixnet, name: string, seed: number, clock: () => number): Watched {
  const dir = mkdtempSync(join(tmpdir(), `postmix-adv-ack-${name}-`));
  dirs.push(dir);
  const mailbox = new Uint8Array(32).fill(seed);
  const firstHops: { at: number; hop: string }[] = [];
  const sink = {
    send: (h: Uint8Array, p: Uint8Array) => {
      firstHops.push({ at: clock(), hop: hex(h) });
      sim.send(h, p);
    },
  };
  const core = new ClientCore({
    outboxPath: join(dir, 'outbox.sqlite'),
    suite: nodeSuite,
    network: sim.network(mailbox, sink),
    policy: { overlayOnly: true, overlayOnlyRecipients: [] },
    strip: {},
    smarthost: null,
    bounceMaildir: join(dir, 'Maildir'),
    maxAttempts: 5,
    cover: true,
    uniform: seededUniform(seed),
  });
  return { core, mailbox, firstHops };
}

/** Pearson's chi-square of the layer-1 choices against uniform (2 degrees of freedom for 3 mixes). */
function chiSquare(hops: readonly string[], layer1: readonly string[]): number {
  const e = hops.length / layer1.length;
  return layer1.reduce((a, n) => a + (hops.filter((h) => h === n).length - e) ** 2 / e, 0);
}

describe('an ACK-withholding recipient gateway', () => {
  it("cannot find the sender by withholding ACKs: the sender's first hops stay as uniform as a bystander's; resends follow the jittered backoff", () => {
    const sim = new InProcessMixnet({ perLayer: 3, domains: ['overlay.test'], mixing: { lambdaP: 3, lambdaL: 2, lambdaD: 1, lambdaM: 0, lambdaG: 0, mu: 10 } });
    let now = 0;
    const clock = () => now;
    sim.clock = clock;
    sim.withholdAcksTo.add('bob@overlay.test');
    const sender = client(sim, 'sender', 11, clock);
    const bystander = client(sim, 'bystander', 12, clock);
    sender.core.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    bystander.core.wallet.importBundle(sim.bundle('carol@overlay.test', 1));
    const body = () => new Uint8Array(Buffer.concat([Buffer.from('Subject: x\r\n\r\n'), randomBytes(20_000)]));
    const toBob = sender.core.accept('a@sender.test', ['bob@overlay.test'], body(), 0);
    bystander.core.accept('c@sender.test', ['carol@overlay.test'], body(), 0);

    const end = 240_000;
    for (now = 0; now <= end; now += 50) {
      for (const c of [sender, bystander]) {
        c.core.tick(now);
        for (const item of sim.fetch(c.mailbox)) c.core.onMailboxItem(item, now);
      }
    }

    // bob's fragments were stored and resent, never ACKed
    expect(sender.core.outbox.recipient(toBob, 'bob@overlay.test')!.state).not.toBe('delivered');
    expect(sender.core.stats.resent).toBeGreaterThan(20);
    expect(sender.core.stats.loopsReturned).toBeGreaterThan(100);

    // 1. first hops: the observer compares the clients over the time bob's ACKs were missing
    const layer1 = sim.doc.layers[0]!.map((n) => hex(n.nodeId));
    const during = (w: Watched) => w.firstHops.filter((p) => p.at >= 10_000 && p.at <= end).map((p) => p.hop);
    const s = during(sender);
    const b = during(bystander);
    expect(s.length).toBeGreaterThan(400);
    expect(b.length).toBeGreaterThan(400);
    // chi-square with 2 degrees of freedom exceeds 13.8 with probability 0.001 under uniform choice
    expect(chiSquare(b, layer1)).toBeLessThan(13.8);
    expect(chiSquare(s, layer1)).toBeLessThan(13.8);
    for (const n of layer1) expect(s.filter((h) => h === n).length / s.length).toBeGreaterThan(0.25);
    expect(sender.core.sender.health.suspects()).toEqual([]);

    // 2. what the gateway still sees: each withheld fragment comes back, up to max_attempts
    // times, at gaps that double and are spread over [T/2, 3T/2) rather than one fixed timeout
    const byFragment = new Map<string, number[]>();
    for (const a of sim.arrivals.filter((x) => x.recipient === 'bob@overlay.test')) {
      const k = `${a.messageId}/${a.index}`;
      byFragment.set(k, [...(byFragment.get(k) ?? []), a.at]);
    }
    const firstGaps = [...byFragment.values()].filter((t) => t.length >= 2).map((t) => t[1]! - t[0]!);
    expect(firstGaps.length).toBeGreaterThan(10);
    const mean = firstGaps.reduce((x, y) => x + y, 0) / firstGaps.length;
    const sd = Math.sqrt(firstGaps.reduce((x, y) => x + (y - mean) ** 2, 0) / firstGaps.length);
    // T_1 = 3 × 8 hops / μ + 5 s = 7.4 s; uniform on [3.7 s, 11.1 s) has sd 2.1 s (CV 0.29); a fixed
    // timeout would leave only the payload stream's slot wait (sd ~0.3 s at λ_P = 3/s)
    expect(sd / mean).toBeGreaterThan(0.15);
    expect(Math.min(...firstGaps)).toBeGreaterThanOrEqual(3_700);
    expect(Math.max(...firstGaps)).toBeLessThan(11_100 + 2_000);
    sender.core.close();
    bystander.core.close();
  });
});
