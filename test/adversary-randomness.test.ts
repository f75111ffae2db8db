/**
 * Adversary: a malicious first-layer mix that also watches the client's uplink (a global
 * passive observer holding one mix, inside the threat model). It must not predict the client's
 * other routes, delays or send times (docs/threat-model.md, "A malicious mix").
 *
 * What it sees of each packet the client sends: which layer-1 mix it goes to (the link), and for
 * the packets that come to its own mix, the delay and next hop in the Sphinx header it unwraps.
 * Each of those is a function of one uniform draw of the client's generator, so each gives the
 * top bits of one output. Against V8's Math.random (xorshift128+, GF(2)-linear:
 * test/support/v8-math-random.ts) a few dozen packets give the whole state, and with it every
 * later draw: the next packets' full forward routes, every hop's delay, the SURB reply routes
 * that lead to the client's home gateway, and the next send times. Against the client's CSPRNG
 * the same equations have no solution.
 *
 * The last test is the one that failed on the code before issue 11: the client daemon, as
 * `postmix client run` wires it, drew its routes from Math.random.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { decodePayload } from '../proto/fragment/index.ts';
import { samplePerHopDelayMs, type Uniform } from '../proto/mixing/params.ts';
import { nodeSuite, packetFromSurb, processPacket, type HopPrivateKey } from '../proto/sphinx/index.ts';
import { csprngUniform } from '../proto/util/random.ts';
import { ClientConfigSchema } from '../client/config.ts';
import { runClient } from '../client/daemon.ts';
import { Outbox } from '../client/outbox.ts';
import { Sender, planOverlay } from '../client/sender.ts';
import { InProcessMixnet } from './support/in-process-mixnet.ts';
import { commonTopBits, explains, recoverMathRandom, type KnownBit, type Predictor } from './support/v8-math-random.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'postmix-adv-rng-'));
  dirs.push(d);
  return d;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const MU = 10;
const LAMBDA_P = 50;
const LAYERS = 3;
const PER_LAYER = 2;
/**
 * The draws behind one packet, in the order client/sender.ts makes them: the payload event's
 * Poisson gap (drawn at the previous event, or at the start, and ending at this packet's slot),
 * then, built ahead of that slot, the packet's SURB reply route (pick + delay per layer, the
 * home gateway's delay), its forward route (the same) and its resend wait. The attacker knows
 * the code, so it knows this layout.
 */
const DRAWS_PER_EVENT = 1 + 2 * (2 * LAYERS + 1) + 1;
const FWD = 1 + (2 * LAYERS + 1); // index of the forward route's first draw (pick in layer 1)

interface Hop {
  node: string;
  delayMs: number;
}
interface Traced {
  firstHop: string;
  forward: Hop[];
  reply: Hop[];
}

/** Ground truth, for judging the attacker's predictions: every hop of the packet and of its SURB. */
function trace(sim: InProcessMixnet, firstHop: Uint8Array, packet: Uint8Array): Traced {
  const keyOf = (id: string): HopPrivateKey => sim.nodes.get(id)!.key;
  const walk = (start: string, p: Uint8Array): { hops: Hop[]; payload: Uint8Array | null } => {
    const hops: Hop[] = [];
    let at = start;
    for (;;) {
      const r = processPacket(sim.doc.geometry, keyOf(at), p);
      if (!r.ok) throw new Error(`trace: ${r.reason}`);
      hops.push({ node: at, delayMs: r.delayMs });
      if (r.kind !== 'forward') return { hops, payload: r.kind === 'deliver' ? r.payload : null };
      at = hex(r.next);
      p = r.packet;
    }
  };
  const fwd = walk(hex(firstHop), packet);
  const d = decodePayload(fwd.payload!);
  if (!d.ok || d.kind !== 'fragment') throw new Error('trace: not a fragment');
  const reply = packetFromSurb(nodeSuite, sim.doc.geometry, d.fragment.surb, new Uint8Array(0));
  if (!reply.ok) throw new Error('trace: bad SURB');
  return { firstHop: hex(firstHop), forward: fwd.hops, reply: walk(hex(reply.firstHop), reply.packet).hops };
}

/** A client sending one long message on a fake clock, recording what leaves its uplink. */
interface Sent {
  readonly firstHop: Uint8Array;
  readonly packet: Uint8Array;
  /** when it left, ms (the fake clock), as the observer sees it: to the millisecond */
  readonly at: number;
}

function sendLongMessage(uniform: Uniform, fragments: number): { sim: InProcessMixnet; sent: Sent[] } {
  const sim = new InProcessMixnet({
    layers: LAYERS,
    perLayer: PER_LAYER,
    mixing: { lambdaP: LAMBDA_P, lambdaL: 0, lambdaD: 0, lambdaM: 0, lambdaG: 0, mu: MU },
  });
  const outbox = new Outbox(join(tmp(), 'outbox.sqlite'));
  const sent: Sent[] = [];
  let now = 0;
  const sender = new Sender({
    outbox,
    suite: nodeSuite,
    sink: { send: (firstHop, packet) => sent.push({ firstHop, packet, at: Math.ceil(now) }) },
    document: () => sim.doc,
    home: () => sim.gateway.entry,
    mailboxId: new Uint8Array(32).fill(7),
    uniform,
    random: (n) => new Uint8Array(randomBytes(n)),
    cover: false,
  });
  const token = new Uint8Array(100);
  const raw = new Uint8Array(Buffer.alloc(fragments * 1500, 'x'));
  const plan = planOverlay(raw, 'bob@overlay.test', token, sim.doc.geometry);
  expect(plan.fragmentCount).toBeGreaterThanOrEqual(fragments);
  outbox.accept({
    mailFrom: 'a@sender.test',
    raw,
    now: 0,
    recipients: [{ address: 'bob@overlay.test', path: 'overlay', reason: 'test', domain: 'overlay.test', token, ...plan }],
  });
  // the stream's events, each sending the next fragment; synchronous, so no other code draws in
  // between; stepped at each event as the daemon's timer wakes (a step at 0 builds the first)
  sender.step(0);
  for (now = sender.nextEventAt(); sent.length < fragments && now < 60_000; now = sender.nextEventAt()) sender.step(now);
  expect(sent.length).toBeGreaterThanOrEqual(fragments);
  outbox.close();
  return { sim, sent };
}

/**
 * What the adversary learns from packet number `e` (and the previous one's send time): bits of
 * the draws behind it. Send times are seen to the millisecond.
 */
function observe(sim: InProcessMixnet, mine: string, e: number, p: Sent, prev: Sent | undefined): KnownBit[] {
  const base = e * DRAWS_PER_EVENT;
  const bits: KnownBit[] = [];
  const add = (call: number, lo: number, hi: number) =>
    // widened by a hair so that rounding in the client's arithmetic can never make a bit wrong
    commonTopBits(Math.max(0, lo - 1e-12), Math.min(1, hi + 1e-12)).forEach((value, bit) => bits.push({ call, bit, value }));
  // the gap from the previous send (the first: from the start, 0) is Exp(λ_P) from the first draw; each send time is known to within 1 ms
  {
    const g = p.at - (prev?.at ?? 0);
    const uOfGap = (ms: number) => 1 - Math.exp((-Math.max(0, ms) / 1000) * LAMBDA_P);
    add(base, uOfGap(g - 1), uOfGap(g + 1));
  }
  const layer1 = sim.doc.layers[0]!.map((n) => hex(n.nodeId));
  const i = layer1.indexOf(hex(p.firstHop));
  add(base + FWD, i / PER_LAYER, (i + 1) / PER_LAYER); // seen on the client's link
  if (hex(p.firstHop) !== mine) return bits;
  // unwrapped at the adversary's own mix: its delay and its next hop
  const r = processPacket(sim.doc.geometry, sim.nodes.get(mine)!.key, p.packet);
  if (!r.ok || r.kind !== 'forward') throw new Error('the mix could not unwrap its packet');
  const d = r.delayMs;
  const uOf = (ms: number) => 1 - Math.exp((-Math.max(0, ms) / 1000) * MU);
  add(base + FWD + 1, d === 0 ? 0 : uOf(d - 0.5), uOf(d + 0.5));
  const j = sim.doc.layers[1]!.map((n) => hex(n.nodeId)).indexOf(hex(r.next));
  add(base + FWD + 2, j / PER_LAYER, (j + 1) / PER_LAYER);
  return bits;
}

/** The attacker's forecast of packet `e`, from a recovered generator and the public route rules. */
function forecast(sim: InProcessMixnet, pred: Predictor, e: number): Traced {
  const base = e * DRAWS_PER_EVENT;
  const route = (first: number, last: string): Hop[] => {
    const hops: Hop[] = [];
    for (let l = 0; l < LAYERS; l++) {
      const layer = sim.doc.layers[l]!;
      const node = layer[Math.min(layer.length - 1, Math.floor(pred(first + 2 * l) * layer.length))]!;
      hops.push({ node: hex(node.nodeId), delayMs: samplePerHopDelayMs(MU, () => pred(first + 2 * l + 1)) });
    }
    hops.push({ node: last, delayMs: samplePerHopDelayMs(MU, () => pred(first + 2 * LAYERS)) });
    return hops;
  };
  const gw = hex(sim.gateway.entry.nodeId);
  const forward = route(base + FWD, gw);
  return { firstHop: forward[0]!.node, forward, reply: route(base + 1, gw) };
}

/** A forecast or a trace as a list of fields: first hop, then each hop's node and delay, forward and reply. */
function flat(t: Traced): string[] {
  return [t.firstHop, ...t.forward.flatMap((h) => [h.node, String(h.delayMs)]), ...t.reply.flatMap((h) => [h.node, String(h.delayMs)])];
}

/** Runs the attack on the first `learn` packets, checks candidates on the next `check`, forecasts the rest. */
function attack(sim: InProcessMixnet, sent: Sent[], learn: number, check: number) {
  const mine = hex(sim.doc.layers[0]![0]!.nodeId);
  const known = sent.slice(0, learn).flatMap((p, e) => observe(sim, mine, e, p, sent[e - 1]));
  const later = sent.slice(learn, learn + check).flatMap((p, k) => observe(sim, mine, learn + k, p, sent[learn + k - 1]));
  const candidates = recoverMathRandom(known);
  const survivors = candidates.filter((c) => explains(c, later));
  return { known: known.length, candidates: candidates.length, survivors };
}

describe('a first-layer mix against the client generator', () => {
  it("the attacker's model is this engine's Math.random: four outputs predict the next thousand", () => {
    const xs = Array.from({ length: 1000 }, () => Math.random());
    const known = xs.slice(0, 4).flatMap((x, call) => commonTopBits(x, x + 2 ** -52).map((value, bit) => ({ call, bit, value })));
    const later = xs.slice(4, 140).flatMap((x, k) => commonTopBits(x, x + 2 ** -52).map((value, bit) => ({ call: 4 + k, bit, value })));
    const ok = recoverMathRandom(known).filter((p) => explains(p, later));
    expect(ok).toHaveLength(1);
    expect(xs.every((x, i) => ok[0]!(i) === x)).toBe(true);
  });

  it('with Math.random (the old default), 80 packets give the state: the next 20 packets are forecast hop by hop, reply routes included', () => {
    const total = 120;
    const { sim, sent } = sendLongMessage(Math.random, total);
    const a = attack(sim, sent, 80, 20);
    expect(a.known).toBeGreaterThan(128);
    // a few cache positions explain the observations alike; they differ only in draws the
    // attacker never sees (the last of each 64-value cache block), so it keeps what they agree on
    expect(a.survivors.length).toBeGreaterThanOrEqual(1);
    expect(a.survivors.length).toBeLessThanOrEqual(16);
    let agreed = 0;
    let fields = 0;
    for (let e = 100; e < total; e++) {
      const truth = flat(trace(sim, sent[e]!.firstHop, sent[e]!.packet));
      const guesses = a.survivors.map((c) => flat(forecast(sim, c, e)));
      expect(guesses.some((g) => g.join() === truth.join())).toBe(true); // one candidate is exactly right
      truth.forEach((v, i) => {
        fields++;
        if (guesses.every((g) => g[i] === guesses[0]![i])) {
          agreed++;
          expect(guesses[0]![i]).toBe(v); // where the candidates agree, the forecast is right
        }
      });
    }
    // nearly every hop and every delay of the next 20 packets, forward and reply, is known
    expect(agreed / fields).toBeGreaterThan(0.8);
    // and when each of them leaves: the payload stream's next gap, to the observer's millisecond
    for (let e = 100; e < total - 1; e++) {
      const gaps = a.survivors.map((c) => (-Math.log(1 - c((e + 1) * DRAWS_PER_EVENT)) / LAMBDA_P) * 1000);
      for (const g of gaps) expect(Math.abs(g - (sent[e + 1]!.at - sent[e]!.at))).toBeLessThanOrEqual(1);
    }
  });

  it('with csprngUniform the same observations have no solution, and nothing is forecast', () => {
    const total = 120;
    const { sim, sent } = sendLongMessage(csprngUniform, total);
    expect(sent.length).toBeGreaterThanOrEqual(total);
    const a = attack(sim, sent, 80, 20);
    expect(a.known).toBeGreaterThan(128);
    expect(a.candidates).toBe(0);
    expect(a.survivors).toHaveLength(0);
  });

  it('the client daemon (postmix client run) builds its packets without calling Math.random', async () => {
    const dir = tmp();
    const sim = new InProcessMixnet({ domains: ['overlay.test'], mixing: { lambdaP: 200, lambdaL: 20, lambdaD: 20, lambdaM: 0, lambdaG: 0, mu: 100 } });
    const cfg = ClientConfigSchema.parse({ data_dir: dir, log: { level: 'warn' }, smtp: { port: 0 }, bounce: { maildir: join(dir, 'Maildir') } });
    const spy = vi.spyOn(Math, 'random');
    const client = await runClient(cfg, {
      log: pino({ level: 'silent' }),
      network: sim.network(new Uint8Array(32).fill(9)),
      maxSleepMs: 20,
    });
    try {
      client.core.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
      client.core.accept('a@sender.test', ['bob@overlay.test'], new Uint8Array(Buffer.alloc(10_000, 'y')));
      const end = Date.now() + 20_000;
      while ((client.core.stats.real < 5 || client.core.stats.loop < 1 || client.core.stats.drop < 1) && Date.now() < end)
        await new Promise((r) => setTimeout(r, 20));
      expect(client.core.stats.real).toBeGreaterThanOrEqual(5);
      expect(client.core.stats.loop + client.core.stats.drop).toBeGreaterThan(0);
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
      await client.stop();
    }
  });
});
