import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { keyPhase, nodeSuite, packetKeyPhase, packetSizes } from '../proto/sphinx/index.ts';
import { ClientCore, type Network } from './core.ts';
import { chooseRoute, nextPoisson, Sender, type PacketSink } from './sender.ts';
import { ackTimeoutBaseMs } from '../proto/mixing/retransmit.ts';
import { InProcessMixnet, seededUniform } from '../test/support/in-process-mixnet.ts';
import { forgedBundle } from '../test/support/tokens.ts';
import { Outbox } from './outbox.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'postmix-sender-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const MAILBOX = new Uint8Array(32).fill(0x42);

function core(
  sim: InProcessMixnet,
  dir: string,
  o: { cover?: boolean; maxAttempts?: number; seed?: number; overlayOnly?: boolean; network?: Network; sink?: PacketSink } = {},
) {
  return new ClientCore({
    outboxPath: join(dir, 'outbox.sqlite'),
    suite: nodeSuite,
    network: o.network ?? sim.network(MAILBOX, o.sink),
    policy: { overlayOnly: o.overlayOnly ?? true, overlayOnlyRecipients: [] },
    strip: {},
    smarthost: null,
    bounceMaildir: join(dir, 'Maildir'),
    maxAttempts: o.maxAttempts ?? 5,
    cover: o.cover ?? false,
    uniform: seededUniform(o.seed ?? 1),
  });
}

/** Advances a fake clock from `from` to `to` in `step` ms, delivering mailbox items after each tick. */
function run(c: ClientCore, sim: InProcessMixnet, from: number, to: number, step = 50, until?: () => boolean): number {
  let t = from;
  for (; t <= to; t += step) {
    c.tick(t);
    for (const item of sim.fetch(MAILBOX)) c.onMailboxItem(item, t);
    if (until?.()) break;
  }
  return t;
}

function message(size: number): Uint8Array {
  const head = Buffer.from('From: a@sender.test\r\nTo: bob@overlay.test\r\nSubject: x\r\nContent-Type: application/pgp-encrypted\r\n\r\n');
  return new Uint8Array(Buffer.concat([head, randomBytes(size)]));
}

describe('route choice and timeouts', () => {
  it('one node per layer in layer order, then the gateway; delays drawn per hop', () => {
    const sim = new InProcessMixnet({ layers: 3, perLayer: 3 });
    const u = seededUniform(7);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const r = chooseRoute(sim.doc, sim.gateway.entry, u);
      expect(r).toHaveLength(4);
      r.slice(0, 3).forEach((h, l) => expect(sim.layers[l]!.some((n) => Buffer.from(n.entry.nodeId).equals(Buffer.from(h.nodeId)))).toBe(true));
      expect(Buffer.from(r[3]!.nodeId).equals(Buffer.from(sim.gateway.entry.nodeId))).toBe(true);
      seen.add(Buffer.from(r[0]!.nodeId).toString('hex'));
    }
    expect(seen.size).toBe(3);
  });

  it('the ACK timeout follows the Erlang mean of both routes plus a margin', () => {
    expect(ackTimeoutBaseMs(4, 4, 10, { factor: 1, marginMs: 0, maxMs: 1e9 })).toBe(800);
    expect(ackTimeoutBaseMs(4, 4, 10, { factor: 3, marginMs: 5000, maxMs: 1e9 })).toBe(7400);
  });
});

describe('overlay sending through a simulated mixnet (real Sphinx)', () => {
  it('fragments a message, every fragment with token + SURB, and the gateway reassembles it byte-identical', () => {
    const sim = new InProcessMixnet();
    const dir = tmp();
    const c = core(sim, dir);
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 2));
    const raw = message(10_000);
    const id = c.accept('a@sender.test', ['Bob@overlay.test'], raw, 0);
    const r = c.outbox.recipient(id, 'bob@overlay.test')!;
    expect(r.path).toBe('overlay');
    expect(r.token!.length).toBe(100);
    expect(r.surbLength).toBe(packetSizes(sim.doc.geometry).surb);
    expect(r.fragmentCount).toBe(Math.ceil(raw.length / (2048 - 37 - 16 - 100 - r.surbLength)));
    run(c, sim, 0, 60_000, 50, () => c.outbox.message(id)!.state === 'done');
    expect(c.outbox.message(id)!.state).toBe('done');
    expect(sim.delivered).toHaveLength(1);
    expect(Buffer.from(sim.delivered[0]!.bytes).equals(Buffer.from(raw))).toBe(true);
    expect(c.stats.real).toBe(r.fragmentCount);
    expect(c.stats.resent).toBe(0);
    expect(c.stats.acks).toBe(r.fragmentCount);
    // every delivery route: 3 mixes then the gateway (forward) and 3 mixes then the gateway (ACK)
    expect(sim.routesSeen.every((p) => p.length === 4)).toBe(true);
    expect(c.wallet.count('bob@overlay.test')).toBe(1);
    c.close();
  });

  it('a mix that drops everything makes the client resend on other routes, and the message still arrives', () => {
    const sim = new InProcessMixnet({ perLayer: 2 });
    const bad = Buffer.from(sim.layers[0]![0]!.entry.nodeId).toString('hex');
    sim.blackholes.add(bad);
    const dir = tmp();
    // half the forward and half the reply routes cross the black hole: each send gets through with
    // p = 1/4, so whether the backoff lets every fragment through in 600 s depends on the seed
    // (seed 3 did at μ = 10/s; at the default μ = 5/s seeds 5 and 6 of 1–7 do)
    const c = core(sim, dir, { maxAttempts: 10, seed: 5 });
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    const raw = message(6_000);
    const id = c.accept('a@sender.test', ['bob@overlay.test'], raw, 0);
    run(c, sim, 0, 600_000, 100, () => c.outbox.message(id)!.state === 'done');
    expect(c.outbox.message(id)!.state).toBe('done');
    expect(Buffer.from(sim.delivered[0]!.bytes).equals(Buffer.from(raw))).toBe(true);
    expect(c.stats.resent).toBeGreaterThan(0);
    expect(sim.drops).toBeGreaterThan(0);
    // resends went through the other layer-1 mix as well
    expect(new Set(sim.firstHops).size).toBe(2);
    c.close();
  });

  it('bounces (DSN in the Maildir) after the attempt limit when nothing comes back', () => {
    const sim = new InProcessMixnet({ perLayer: 1 });
    sim.blackholes.add(Buffer.from(sim.gateway.entry.nodeId).toString('hex'));
    const dir = tmp();
    const c = core(sim, dir, { maxAttempts: 3 });
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    const id = c.accept('a@sender.test', ['bob@overlay.test'], message(100), 0);
    run(c, sim, 0, 300_000, 200, () => c.outbox.message(id)!.state === 'done');
    const r = c.outbox.recipient(id, 'bob@overlay.test')!;
    expect(r.state).toBe('bounced');
    expect(r.error).toMatch(/no ACK .* after 3 attempts/);
    expect(sim.packetsIn).toBe(3);
    const files = readdirSync(join(dir, 'Maildir', 'new'));
    expect(files).toHaveLength(1);
    const dsn = readFileSync(join(dir, 'Maildir', 'new', files[0]!), 'utf8');
    expect(dsn).toMatch(/multipart\/report; report-type=delivery-status/);
    expect(dsn).toMatch(/Final-Recipient: rfc822; bob@overlay.test/);
    expect(dsn).toMatch(/Action: failed/);
    expect(dsn).toMatch(/Subject: x/); // the original headers are quoted
    c.close();
  });

  it('a final refusal ACK (TokenRefused) bounces at once, without resending', () => {
    const sim = new InProcessMixnet();
    const dir = tmp();
    const c = core(sim, dir);
    // a token in the right format, for the right gateway, that its issuer never computed
    sim.user('bob@overlay.test');
    c.wallet.importBundle(forgedBundle('bob@overlay.test', 1, 1, sim.issuer.publicKey));
    const id = c.accept('a@sender.test', ['bob@overlay.test'], message(5_000), 0);
    run(c, sim, 0, 60_000, 50, () => c.outbox.message(id)!.state === 'done');
    const r = c.outbox.recipient(id, 'bob@overlay.test')!;
    expect(r.state).toBe('bounced');
    expect(r.error).toMatch(/refused the message: TokenRefused/);
    expect(c.stats.resent).toBe(0);
    expect(readdirSync(join(dir, 'Maildir', 'new'))).toHaveLength(1);
    c.close();
  });

  it('killed mid-send and restarted: finishes the message, ACKs of packets sent before the crash still count, nothing sent twice', () => {
    const sim = new InProcessMixnet();
    sim.autoDeliver = false; // packets sit "in the network" while the client is down
    const dir = tmp();
    let c = core(sim, dir);
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    const raw = message(8_000);
    const id = c.accept('a@sender.test', ['bob@overlay.test'], raw, 0);
    const n = c.outbox.recipient(id, 'bob@overlay.test')!.fragmentCount;
    run(c, sim, 0, 1_000, 50);
    const sentBefore = sim.packetsIn;
    expect(sentBefore).toBeGreaterThan(0);
    expect(sentBefore).toBeLessThan(n);
    c.close(); // crash: no clean shutdown step exists that matters; the outbox is durable at every step
    sim.flush(); // the network delivers meanwhile; ACKs wait in the mailbox
    sim.autoDeliver = true;
    c = core(sim, dir, { seed: 2 });
    run(c, sim, 1_000, 60_000, 50, () => c.outbox.message(id)?.state === 'done');
    expect(c.outbox.message(id)!.state).toBe('done');
    expect(Buffer.from(sim.delivered[0]!.bytes).equals(Buffer.from(raw))).toBe(true);
    expect(sim.packetsIn).toBe(n); // every fragment exactly once
    c.close();
  });
});

describe('packets built ahead of their slot', () => {
  it('the next real packet is built and its outbox row committed before its slot; at the slot it is only handed over', () => {
    const sim = new InProcessMixnet();
    // rows the outbox's connection changed so far (SQLite's total_changes()), read as each packet reaches the link
    let changes = () => 0;
    const atSend: number[] = [];
    const c = core(sim, tmp(), { sink: { send: (h, p) => (atSend.push(changes()), sim.send(h, p)) } });
    changes = () => (c.outbox.db.prepare('SELECT total_changes() AS n').get() as { n: number }).n;
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    const id = c.accept('a@sender.test', ['bob@overlay.test'], message(100), 0);
    c.tick(0); // schedules the streams and builds the fragment's packet for the first payload slot
    expect(sim.packetsIn).toBe(0);
    const [p] = c.outbox.prepared();
    expect(p).toMatchObject({ messageId: id, address: 'bob@overlay.test', index: 0 });
    expect(c.outbox.surb(p!.surbId)).toBeDefined(); // the SURB's keys are on disk before the packet leaves
    expect(c.outbox.fragments(id, 'bob@overlay.test')[0]).toMatchObject({ state: 'pending', attempts: 0 });
    // at the slot nothing is written to the outbox before the packet is on the link; after it, the in-flight record
    const before = changes();
    c.tick(c.sender.nextEventAt());
    expect(atSend).toEqual([before]);
    expect(c.outbox.prepared()).toEqual([]);
    expect(c.outbox.fragments(id, 'bob@overlay.test')[0]).toMatchObject({ state: 'inflight', attempts: 1 });
    expect(c.stats.builtInSlot).toBe(0);
    c.close();
  });

  it('prepared but not sent when the client stops: built again after the restart and sent once', () => {
    const sim = new InProcessMixnet();
    const dir = tmp();
    let c = core(sim, dir);
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    const raw = message(100);
    const id = c.accept('a@sender.test', ['bob@overlay.test'], raw, 0);
    c.tick(0);
    expect(c.outbox.prepared()).toHaveLength(1);
    c.close(); // stops before the slot
    c = core(sim, dir, { seed: 2 });
    // the restart cannot know whether it left: the fragment is due again, its old SURB kept
    expect(c.outbox.prepared()).toEqual([]);
    expect(c.outbox.fragments(id, 'bob@overlay.test')[0]).toMatchObject({ state: 'pending', attempts: 0 });
    run(c, sim, 0, 60_000, 50, () => c.outbox.message(id)!.state === 'done');
    expect(c.outbox.message(id)!.state).toBe('done');
    expect(sim.packetsIn).toBe(1);
    expect(sim.delivered).toHaveLength(1);
    expect(Buffer.from(sim.delivered[0]!.bytes).equals(Buffer.from(raw))).toBe(true);
    c.close();
  });

  it("sent, then the client died before recording it in flight: sent once more after the restart, delivered once, the first copy's ACK counts", () => {
    const sim = new InProcessMixnet();
    sim.autoDeliver = false;
    const dir = tmp();
    const sink: PacketSink = {
      send: (h, p) => {
        sim.send(h, p);
        throw new Error('killed right after the write'); // before the step records it
      },
    };
    let c = core(sim, dir, { sink });
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    const raw = message(100);
    const id = c.accept('a@sender.test', ['bob@overlay.test'], raw, 0);
    let t = 0;
    for (; sim.packetsIn === 0 && t < 60_000; t += 50) {
      try {
        c.tick(t);
      } catch (e) {
        expect(String(e)).toMatch(/killed right after the write/);
      }
    }
    expect(sim.packetsIn).toBe(1);
    expect(c.outbox.fragments(id, 'bob@overlay.test')[0]).toMatchObject({ state: 'pending', attempts: 0 });
    expect(c.outbox.prepared()).toHaveLength(1);
    c.close();
    c = core(sim, dir, { seed: 2 });
    for (; sim.packetsIn < 2 && t < 120_000; t += 50) c.tick(t); // the copy goes again before any ACK is read
    expect(sim.packetsIn).toBe(2);
    sim.flush(); // both copies reach the gateway: the first is Stored, the second Duplicate
    expect(sim.delivered).toHaveLength(1);
    expect(Buffer.from(sim.delivered[0]!.bytes).equals(Buffer.from(raw))).toBe(true);
    const [first, second] = sim.fetch(MAILBOX);
    // the first copy's ACK opens with the SURB keys prepared before the crash, and completes the message
    c.onMailboxItem(first!, t);
    expect(c.stats.acks).toBe(1);
    expect(c.outbox.message(id)!.state).toBe('done');
    c.onMailboxItem(second!, t); // the Duplicate for the copy sent again: its fragment is done, its SURB forgotten
    expect(c.stats.acks + c.stats.badReplies).toBe(2);
    c.close();
  });

  it('a real packet built under keys whose epoch is over before its slot does not leave: built again under the new epoch', () => {
    const sim = new InProcessMixnet();
    const net = sim.network(MAILBOX);
    const c = core(sim, tmp(), { network: net });
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    const id = c.accept('a@sender.test', ['bob@overlay.test'], message(100), 0);
    const sent: Uint8Array[] = [];
    const send = sim.send.bind(sim);
    sim.send = (h, p) => (sent.push(p), send(h, p));
    c.tick(0);
    const [old] = c.outbox.prepared();
    expect(old).toBeDefined();
    // the epoch turns (the same nodes under the next epoch's keys) before the payload slot
    net.doc = { ...sim.doc, epoch: sim.doc.epoch + 1 };
    run(c, sim, 50, 60_000, 50, () => c.outbox.message(id)!.state === 'done');
    expect(c.outbox.message(id)!.state).toBe('done');
    expect(sent).toHaveLength(1);
    expect(packetKeyPhase(sent[0]!)).toBe(keyPhase(sim.doc.epoch + 1));
    expect(c.stats.unprepared).toBe(1);
    expect(c.outbox.surb(old!.surbId)).toBeUndefined(); // its SURB never left: forgotten
    c.close();
  });

  it('cover too is built ahead: with cover on, no packet is built inside its slot', () => {
    const sim = new InProcessMixnet({ mixing: { lambdaP: 4, lambdaL: 1, lambdaD: 1, lambdaM: 0, lambdaG: 0, mu: 10 } });
    const c = core(sim, tmp(), { cover: true, seed: 4 });
    c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    c.accept('a@sender.test', ['bob@overlay.test'], message(20_000), 0);
    // stepped at each event, as the daemon's timer wakes
    c.tick(0);
    for (let i = 0; i < 300; i++) {
      const t = c.sender.nextEventAt();
      c.tick(t);
      for (const item of sim.fetch(MAILBOX)) c.onMailboxItem(item, t);
    }
    expect(c.stats.real).toBeGreaterThan(5);
    expect(c.stats.decoy + c.stats.drop + c.stats.loop).toBeGreaterThan(100);
    expect(c.stats.builtInSlot).toBe(0);
    c.close();
  });
});

describe('Loopix streams (seeded RNG, fake clock)', () => {
  it('payload, loop and drop streams have the document rates; real packets replace decoys; every payload tick and loop brings one reply back', () => {
    const sim = new InProcessMixnet({ mixing: { lambdaP: 4, lambdaL: 1, lambdaD: 0.5, lambdaM: 0, lambdaG: 0, mu: 10 } });
    const dir = tmp();
    const c = core(sim, dir, { cover: true, seed: 99, overlayOnly: false });
    const T = 100_000; // ms of simulated time
    run(c, sim, 0, T, 1000);
    const s = c.stats;
    const within = (got: number, want: number) => expect(Math.abs(got - want)).toBeLessThan(5 * Math.sqrt(want));
    // idle: the payload stream is all decoys, each answered by the gateway through its SURB
    expect(s.real).toBe(0);
    within(s.decoy, 4 * (T / 1000));
    within(s.drop, 0.5 * (T / 1000));
    within(s.loop, 1 * (T / 1000));
    expect(s.loopsReturned).toBe(s.loop);
    expect(s.decoysReturned).toBe(s.decoy);
    expect(s.badReplies).toBe(0);
    // now with mail queued: the total rate stays the same, decoys give way to real packets
    const sim2 = new InProcessMixnet({ mixing: { lambdaP: 4, lambdaL: 1, lambdaD: 0.5, lambdaM: 0, lambdaG: 0, mu: 10 } });
    const c2 = core(sim2, tmp(), { cover: true, seed: 99 });
    c2.wallet.importBundle(sim2.bundle('bob@overlay.test', 1));
    c2.accept('a@sender.test', ['bob@overlay.test'], message(200_000), 0);
    run(c2, sim2, 0, 20_000, 100);
    const s2 = c2.stats;
    expect(s2.real).toBeGreaterThan(0);
    within(s2.real + s2.decoy, 4 * 20);
    within(s2.drop, 0.5 * 20);
    within(s2.real, 4 * 20);
    // one reply per payload tick, real or not (ACKs and decoys' answers), and one per loop
    expect(s2.acks + s2.decoysReturned).toBe(s2.real + s2.decoy);
    expect(s2.loopsReturned).toBe(s2.loop);
    c.close();
    c2.close();
  });

  it('route health learns from loops only: a black-hole mix is suspected after lost loops and then avoided', () => {
    const sim = new InProcessMixnet({ perLayer: 2, mixing: { lambdaP: 1, lambdaL: 4, lambdaD: 0, lambdaM: 0, lambdaG: 0, mu: 10 } });
    const bad = Buffer.from(sim.layers[1]![0]!.entry.nodeId).toString('hex');
    sim.blackholes.add(bad);
    const c = core(sim, tmp(), { cover: true, seed: 7 });
    run(c, sim, 0, 15_000, 100);
    expect(c.stats.loopsLost).toBeGreaterThan(0);
    expect(c.stats.loopsReturned).toBeGreaterThan(0);
    expect(c.sender.health.suspects()).toContain(bad);
    // from then on (within the hold-down) routes leave it out: the loops come back
    const lostBefore = c.stats.loopsLost;
    const backBefore = c.stats.loopsReturned;
    run(c, sim, 15_100, 55_000, 100);
    expect(c.stats.loopsLost - lostBefore).toBeLessThanOrEqual(2);
    expect(c.stats.loopsReturned - backBefore).toBeGreaterThan(100);
    c.close();
  });

  it('inter-arrival times of the payload stream are exponential with mean 1/λ', () => {
    const u = seededUniform(5);
    const gaps: number[] = [];
    let t = 0;
    for (let i = 0; i < 20_000; i++) {
      const n = nextPoisson(t, 2, u);
      gaps.push(n - t);
      t = n;
    }
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    expect(Math.abs(mean - 500)).toBeLessThan(15);
    // P(gap > mean) = e^-1 for an exponential
    const above = gaps.filter((g) => g > 500).length / gaps.length;
    expect(Math.abs(above - Math.exp(-1))).toBeLessThan(0.02);
    expect(nextPoisson(0, 0, u)).toBe(Infinity);
  });

  it('sends nothing without a document', () => {
    const ob = new Outbox(':memory:');
    const sent: Uint8Array[] = [];
    const s = new Sender({
      outbox: ob,
      suite: nodeSuite,
      sink: { send: (_h, p) => sent.push(p) },
      document: () => null,
      home: () => null,
      mailboxId: MAILBOX,
      uniform: seededUniform(1),
      random: (n) => new Uint8Array(randomBytes(n)),
    });
    expect(s.step(1e9)).toBe(0);
    expect(s.nextEventAt()).toBe(Infinity);
    ob.close();
  });
});
