/**
 * Adversary: the sender's own home gateway (issue 11 point 2, docs/threat-model.md "The
 * sender's home gateway"). It holds its clients' mailboxes: it sees every item that arrives for
 * a mailbox (its kind, its size, when) and every frame it writes to the client. It wants to know
 * when and how much its client sends: a client's ACKs come back to its mailbox, one per fragment
 * of real mail. Here it is also the recipient's gateway (sender and recipient share it, the case
 * where counting ACKs would link them).
 *
 * The test runs two real clients (client/core.ts with its Sender, cover on, the document's
 * rates) over the in-process mixnet (real Sphinx at every hop, the real gateway intake and its
 * answers, `replyOf`), whose final deliveries for mailboxes go to a real MailboxServer over a
 * real GatewayStore (runtime/mailbox/server.ts, gateway/store.ts): alice sends mail to
 * bob@overlay.test for the whole run, carol stays idle. The gateway records what it stores
 * for each mailbox (the rows: SURB id, payload size) and what it frames (kind byte, frame
 * length), and computes what it could: the set of (kind, size), and the items per 10-second
 * window. None of it may tell alice from carol: one kind and one size for both; both totals
 * consistent with one Poisson process at λ_P + λ_L (every payload tick, real or decoy, and every
 * loop brings one reply back); per-window counts no better than chance at separating alice's
 * windows from carol's, or alice's windows with real sends from those without (AUC near 0.5).
 *
 * On the code before this change (loops delivered plain, λ_P cover as drops that bring nothing
 * back) it fails at once: carol's mailbox gets only plain items (kind 2, no SURB id), alice's
 * also SURB replies; alice 679 items (her loops and ACKs), carol 311 (her loops, λ_L = 0.5/s).
 * The clock is fake and the clients' draws are seeded, so the run is the same every time
 * (`POSTMIX_SHOW=1` prints the figures docs/threat-model.md quotes).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeItem, encodeSubscribe, mailboxRate, type MailboxItem } from '../proto/mailbox/index.ts';
import { DEFAULT_MIXING, type MixingParams } from '../proto/mixing/params.ts';
import { nodeSuite } from '../proto/sphinx/index.ts';
import { ClientCore } from '../client/core.ts';
import { GatewayStore } from '../gateway/store.ts';
import type { FrameStream, FrameStreamHandlers } from '../runtime/link/link.ts';
import { MailboxServer } from '../runtime/mailbox/server.ts';
import { InProcessMixnet, seededUniform } from './support/in-process-mixnet.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
/** The document's default client rates and delay (no mix or gateway loops: no mix runs here). */
const MIXING: MixingParams = { ...DEFAULT_MIXING, lambdaM: 0, lambdaG: 0 };
const T_MS = 600_000;
const WINDOW_MS = 10_000;

/** Mann–Whitney AUC: P(a positive scores above a negative) + ½ P(tie). */
function auc(pos: readonly number[], neg: readonly number[]): number {
  let s = 0;
  for (const p of pos) for (const n of neg) s += p > n ? 1 : p === n ? 0.5 : 0;
  return s / (pos.length * neg.length);
}

interface Client {
  readonly name: string;
  readonly core: ClientCore;
  readonly mailbox: Uint8Array;
  /** when the client sent a real fragment (ms) */
  readonly realSends: number[];
}

/** What the home gateway records per mailbox. */
interface Seen {
  /** per stored item: when, whether it had a SURB id (and its length), its payload bytes */
  stored: { at: number; surbId: number; bytes: number }[];
  /** per frame written to the client: kind byte and length (dummies included) */
  frames: { kind: number; length: number }[];
}

describe("the sender's home gateway", () => {
  it('cannot tell a client that sends mail from an idle one by what it stores and frames: one kind, one size, the same Poisson count', () => {
    const sim = new InProcessMixnet({ perLayer: 2, domains: ['overlay.test'], mixing: MIXING });
    let now = 0;
    sim.clock = () => now;
    const payloadSize = sim.doc.geometry.payloadSize;

    // the home gateway's real mailbox half, over a real store, recording what it stores
    const store = new GatewayStore(':memory:');
    const seen = new Map<string, Seen>();
    const seenOf = (mailbox: Uint8Array) => {
      const k = hex(mailbox);
      if (!seen.has(k)) seen.set(k, { stored: [], frames: [] });
      return seen.get(k)!;
    };
    const put = store.mailboxPut.bind(store);
    store.mailboxPut = (mailbox, item, at, ttl, max) => {
      seenOf(mailbox).stored.push({ at, surbId: item.surbId?.length ?? 0, bytes: item.payload.length });
      return put(mailbox, item, at, ttl, max);
    };
    const server = new MailboxServer({
      store,
      ttlMs: 3_600_000,
      maxItems: 100_000,
      payloadSize: () => payloadSize,
      mixing: () => MIXING,
      now: () => now,
      log: { debug: () => {} },
    });
    sim.mailboxSink = (mailbox, item) => server.put(mailbox, item);

    const mkClient = (name: string, seed: number): Client => {
      const dir = mkdtempSync(join(tmpdir(), `postmix-adv-home-${name}-`));
      dirs.push(dir);
      const mailbox = new Uint8Array(randomBytes(32));
      const realSends: number[] = [];
      const core = new ClientCore({
        outboxPath: join(dir, 'outbox.sqlite'),
        suite: nodeSuite,
        network: sim.network(mailbox, {
          send: (h, p) => {
            if (core.stats.real > realCount) realSends.push(now);
            realCount = core.stats.real;
            sim.send(h, p);
          },
        }),
        policy: { overlayOnly: true, overlayOnlyRecipients: [] },
        strip: {},
        smarthost: null,
        bounceMaildir: join(dir, 'Maildir'),
        maxAttempts: 5,
        cover: true,
        uniform: seededUniform(seed),
      });
      let realCount = 0;
      // the client's subscription: the server writes to it as to a libp2p stream
      const stream = {
        send: (frame: Uint8Array) => {
          seenOf(mailbox).frames.push({ kind: frame[0]!, length: frame.length });
          const item = decodeItem(frame);
          if (item && item !== 'dummy') core.onMailboxItem(item as MailboxItem, now);
          return true;
        },
        abort: () => {},
        ended: new Promise<void>(() => {}),
        peer: { toString: () => name },
      } as unknown as FrameStream;
      const handlers = (server as unknown as { accept(s: FrameStream): FrameStreamHandlers }).accept(stream);
      handlers.onFrame(encodeSubscribe(mailbox));
      return { name, core, mailbox, realSends };
    };
    const alice = mkClient('alice', 21);
    const carol = mkClient('carol', 22);
    alice.core.wallet.importBundle(sim.bundle('bob@overlay.test', 40));

    // alice writes to bob throughout (a 20 kB message every 20 s: ~30 % of her payload ticks real)
    const accepted: string[] = [];
    const tickEvery = 1000 / mailboxRate(MIXING);
    let nextTick = 0;
    for (now = 0; now <= T_MS; now += 50) {
      if (now % 20_000 === 0 && now < T_MS - 60_000) {
        const body = new Uint8Array(Buffer.concat([Buffer.from('Subject: x\r\n\r\n'), randomBytes(20_000)]));
        accepted.push(alice.core.accept('alice@overlay.test', ['bob@overlay.test'], body, now));
      }
      for (const c of [alice, carol]) c.core.tick(now);
      for (; nextTick <= now; nextTick += tickEvery) server.tick();
    }

    // the clients work: alice's mail arrived (ACKed), carol sent nothing real
    expect(accepted.length).toBeGreaterThan(20);
    expect(sim.delivered.length).toBe(accepted.length);
    expect(alice.core.outbox.recipient(accepted[0]!, 'bob@overlay.test')!.state).toBe('delivered');
    expect(alice.core.stats.real).toBeGreaterThan(0.2 * MIXING.lambdaP * (T_MS / 1000));
    expect(carol.core.stats.real).toBe(0);
    for (const c of [alice, carol]) expect(c.core.stats.badReplies).toBe(0);

    const a = seenOf(alice.mailbox);
    const c = seenOf(carol.mailbox);
    // kind and size: what is stored, and what is framed, is one set for both, of one element
    const kinds = (s: Seen) => [...new Set(s.stored.map((x) => `surb-id ${x.surbId} B, payload ${x.bytes} B`))].sort();
    const frames = (s: Seen) => [...new Set(s.frames.filter((f) => f.kind !== 3).map((f) => `kind ${f.kind}, ${f.length} B`))].sort();
    const sizes = (s: Seen) => [...new Set(s.frames.map((f) => f.length))];
    const report = {
      alice: {
        stored: a.stored.length,
        kinds: kinds(a),
        frames: frames(a),
        real: alice.core.stats.real,
        decoys: alice.core.stats.decoy,
        loops: alice.core.stats.loop,
      },
      carol: {
        stored: c.stored.length,
        kinds: kinds(c),
        frames: frames(c),
        real: carol.core.stats.real,
        decoys: carol.core.stats.decoy,
        loops: carol.core.stats.loop,
      },
    };
    expect(kinds(a), JSON.stringify(report)).toEqual([`surb-id 16 B, payload ${16 + payloadSize} B`]);
    expect(kinds(c), JSON.stringify(report)).toEqual(kinds(a));
    expect(frames(c)).toEqual(frames(a));
    expect(frames(a)).toEqual([`kind 1, ${17 + 16 + payloadSize} B`]);
    expect(sizes(a)).toEqual(sizes(c));

    // counts: both consistent with one Poisson process at λ_P + λ_L, and with each other
    const expected = (MIXING.lambdaP + MIXING.lambdaL) * (T_MS / 1000);
    for (const s of [a, c]) expect(Math.abs(s.stored.length - expected), JSON.stringify(report)).toBeLessThan(5 * Math.sqrt(expected));
    expect(Math.abs(a.stored.length - c.stored.length)).toBeLessThan(5 * Math.sqrt(a.stored.length + c.stored.length));

    // per window: the gateway's count cannot separate alice's windows from carol's, nor alice's
    // windows with real sends from those without
    const windows = T_MS / WINDOW_MS;
    const perWindow = (s: Seen) => {
      const n = new Array<number>(windows).fill(0);
      for (const x of s.stored) if (x.at < T_MS) n[Math.floor(x.at / WINDOW_MS)]!++;
      return n;
    };
    const wa = perWindow(a);
    const wc = perWindow(c);
    const aliceVsCarol = auc(wa, wc);
    const busy = new Set(alice.realSends.map((t) => Math.floor(t / WINDOW_MS)));
    const withReal = wa.filter((_, w) => busy.has(w));
    const without = wa.filter((_, w) => !busy.has(w));
    const whenSending = auc(withReal, without);
    const stats = { ...report, aliceVsCarol, whenSending, windowsWithReal: withReal.length, windowsWithout: without.length };
    if (process.env.POSTMIX_SHOW) console.log(JSON.stringify(stats));
    expect(withReal.length).toBeGreaterThan(10);
    expect(without.length).toBeGreaterThan(10);
    expect(Math.abs(aliceVsCarol - 0.5), JSON.stringify(stats)).toBeLessThan(0.15);
    expect(Math.abs(whenSending - 0.5), JSON.stringify(stats)).toBeLessThan(0.2);
    alice.core.close();
    carol.core.close();
    store.close();
  }, 120_000);
});
