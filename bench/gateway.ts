/**
 * Gateway costs (`npm run bench -- gateway`):
 * - token redemption checks/s: the POPRF evaluation that verifies a token (verifyToken), on the
 *   backend the gateway runs (libsodium's ristretto255) and on noble, the reference and the
 *   backend of before, in interleaved rounds of the same run;
 * - fragments/s through the durable intake (`intake.fragmentsPerSecFull`): decode, token check
 *   on first fragments, reassembly, group commit with synchronous=FULL and the gateway's default
 *   [intake] settings, and each ACK packet built from its fragment's SURB only after the commit
 *   that holds the fragment; payloads handed over a few per event-loop turn, as frames come off
 *   a link, at saturation. Beside it in interleaved rounds of the same run: one commit per
 *   fragment (`perFragmentCommitPerSec`, the intake of before), the group commit with its fsync
 *   inside COMMIT (`fragmentsPerSecInCommitFsync`, synchronous=FULL on the event loop; the
 *   default overlaps it with the next batch, runtime/wal-sync.ts) and the bare Sphinx unwrap of a
 *   final-hop 2 KiB packet on the suite the gateway runs (`bareUnwrapPerSec`: processPacket,
 *   no replay store), the work in front of the intake; target fragmentsPerSecFull ≥ 0.7 × that;
 * - messages/s from the durable queue to an MX on loopback (an smtp-server sink), SMTP with
 *   4 parallel connections (nodemailer opens one connection per message).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { deriveIssuerKeys, noblePoprf, useFastestTokenChecks, verifyToken, type IssuerKeys } from '../proto/tokens/index.ts';
import { encodeAck } from '../proto/fragment/index.ts';
import { DEFAULT_GEOMETRY, createPacket, createSurb, fastestSuite, packetFromSurb, prepareHopKey, processPacket } from '../proto/sphinx/index.ts';
import { GROUP_COMMIT_DEFAULTS, GroupCommit, type FsyncMode } from '../gateway/group-commit.ts';
import { HandoffWorker } from '../gateway/handoff.ts';
import { Intake } from '../gateway/intake.ts';
import { GatewayStore } from '../gateway/store.ts';
import { messageFragments, fragmentPayloads } from '../test/support/fragments.ts';
import { AckStatus } from '../proto/fragment/index.ts';
import { issuedTokens } from '../test/support/tokens.ts';
import { fmt, machineInfo, opsPerSecond, type BenchOptions, type BenchReport } from './harness.ts';

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const seconds = opts.quick ? 0.3 : 2;
  const dir = mkdtempSync(join(tmpdir(), 'pmx-bench-gw-'));
  const results: Record<string, unknown> = {};
  const issuer = deriveIssuerKeys(new Uint8Array(32).fill(1));
  const BOB = 'bob@example.org';
  try {
    // 1. token checks, as the gateway runs them (it switches to the fastest backend at start)
    const backend = await useFastestTokenChecks();
    if (backend.fallbackReason) opts.log(backend.fallbackReason);
    const toks = issuedTokens(issuer, BOB, 1, 64);
    let i = 0;
    const check = (evaluator?: typeof noblePoprf) => () => {
      if (!verifyToken(issuer, BOB, toks[i++ % toks.length]!, evaluator)) throw new Error('bench token refused');
      return 1;
    };
    // Interleaved rounds so that load from other processes hits both alike; the figures are each
    // backend's best round, `ratio` their quotient (a noble round holds only ~50 checks, so a
    // per-round ratio is noisy: its median is reported beside it).
    const rounds = opts.quick ? 2 : 10;
    let redeem = 0;
    let noble = 0;
    const ratios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const a = opsPerSecond(check(), seconds / rounds).opsPerSec;
      const b = opsPerSecond(check(noblePoprf), seconds / rounds).opsPerSec;
      redeem = Math.max(redeem, a);
      noble = Math.max(noble, b);
      ratios.push(a / b);
    }
    ratios.sort((x, y) => x - y);
    const medianRoundRatio = ratios[Math.floor(ratios.length / 2)]!;
    results.tokens = {
      backend: backend.evaluator.name,
      redeemPerSec: Math.round(redeem),
      noblePerSec: Math.round(noble),
      ratio: redeem / noble,
      medianRoundRatio,
    };
    opts.log(
      `token redemption checks (${backend.evaluator.name}): ${fmt(redeem)}/s (${fmt(1e6 / redeem)} µs each) | noble ${fmt(noble)}/s (${fmt(1e6 / noble)} µs) | ` +
        `ratio ${fmt(redeem / noble, 2)}x (best of ${rounds} interleaved rounds each; median per-round ratio ${fmt(medianRoundRatio, 2)}x)`,
    );

    // 2. the durable intake under group commit, against the bare Sphinx unwrap in front of it
    results.intake = await intakeFigures(opts, dir, issuer, BOB);

    // 3. queue → MX hand-off on loopback
    let received = 0;
    const sink = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS'],
      logger: false,
      onData(stream, _s, cb) {
        stream.on('data', () => {});
        stream.on('end', () => {
          received++;
          cb();
        });
      },
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
    const port = (sink.server.address() as { port: number }).port;
    const store = new GatewayStore(join(dir, 'handoff.sqlite'));
    const body = Buffer.alloc(20_000, 0x62);
    const n = opts.quick ? 50 : 300;
    for (let k = 0; k < n; k++) {
      const id = new Uint8Array(16);
      new DataView(id.buffer).setUint32(0, k);
      store.enqueue(id, BOB, body, 0);
    }
    const w = new HandoffWorker({ store, mx: { host: '127.0.0.1', port, starttls: 'never' }, concurrency: 4 });
    const t0 = performance.now();
    const delivered = await w.runOnce();
    const s = (performance.now() - t0) / 1000;
    results.handoffMessagesPerSec = Math.round(delivered / s);
    results.handoffMessageBytes = body.length;
    opts.log(`hand-off to a loopback SMTP sink: ${fmt(delivered / s, 1)} messages/s (${delivered} of ${body.length} B, sink got ${received}, concurrency 4)`);
    await w.stop();
    store.close();
    await new Promise<void>((r) => sink.close(() => r()));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { suite: 'gateway', machine: machineInfo(), results };
}

/** Payloads handed to the intake per event-loop turn (a link hands over frames in small batches). */
const PER_TURN = 8;

/**
 * Rounds of: the bare unwrap (opsPerSecond), the intake under group commit, the intake with one
 * commit per fragment; each intake round takes fresh messages (8 fragments of 2 KiB packets, each
 * with a SURB) into its own store. Best round of each; the ratio of the bests and the median of
 * the per-round ratios.
 */
async function intakeFigures(opts: BenchOptions, dir: string, issuer: IssuerKeys, bob: string) {
  const geom = DEFAULT_GEOMETRY;
  const rounds = opts.quick ? 2 : 5;
  const perRound = opts.quick ? 10 : 40;
  const suite = fastestSuite;
  const hop = () => {
    const sk = new Uint8Array(randomBytes(32));
    return { id: new Uint8Array(randomBytes(32)), sk, pk: suite.publicKey(sk) };
  };
  const gw = hop();
  const gwKey = prepareHopKey(suite, gw.sk);
  const packets = Array.from(
    { length: 32 },
    () =>
      createPacket(suite, geom, {
        route: [{ nodeId: gw.id, publicKey: gw.pk, delayMs: 0 }],
        terminal: { kind: 'deliver', queueId: new Uint8Array(32) },
        payload: new Uint8Array(randomBytes(geom.payloadSize)),
      }).packet,
  );
  let pi = 0;
  const unwrap = () => {
    const r = processPacket(geom, gwKey, packets[pi++ & 31]!);
    if (!r.ok || r.kind !== 'deliver') throw new Error('bench packet not delivered');
    return 1;
  };
  // the ACK way back: three mixes to the client's mailbox
  const mixes = [hop(), hop(), hop()];
  const surb = createSurb(suite, geom, {
    route: mixes.map((m) => ({ nodeId: m.id, publicKey: m.pk, delayMs: 10 })),
    queueId: new Uint8Array(32),
    surbId: new Uint8Array(16),
  }).surb;
  const msg = new Uint8Array(8 * 1600).fill(0x61);
  const tokens = issuedTokens(issuer, bob, 1, rounds * perRound * 3);
  let tk = 0;
  let storeN = 0;
  const intakeRound = async (maxFragments: number, fsync: FsyncMode) => {
    const store = new GatewayStore(join(dir, `intake-${storeN++}.sqlite`));
    store.addUser(bob);
    const intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 1 << 20, reassemblyTtlMs: 3_600_000 });
    const gc = new GroupCommit(store, intake, { maxWaitMs: GROUP_COMMIT_DEFAULTS.maxWaitMs, maxFragments, fsync });
    const payloads = tokens.slice(tk, (tk += perRound)).flatMap((t) => fragmentPayloads(messageFragments(msg, bob, t, { surb }), geom.payloadSize));
    let acks = 0;
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      const answer = (r: ReturnType<Intake['handlePayload']>) => {
        if (r.kind !== 'ack' || (r.status !== AckStatus.Stored && r.status !== AckStatus.Queued))
          throw new Error(`bench fragment refused: ${JSON.stringify(r)}`);
        const p = packetFromSurb(suite, geom, r.fragment.surb, encodeAck({ messageId: r.fragment.messageId, index: r.fragment.index, status: r.status }));
        if (!p.ok) throw new Error('bench ACK not built');
        if (++acks === payloads.length) resolve();
      };
      let next = 0;
      const feed = () => {
        for (let k = 0; k < PER_TURN && next < payloads.length; k++) gc.submit(payloads[next++]!, answer);
        if (next < payloads.length) setImmediate(feed);
      };
      feed();
    });
    const s = (performance.now() - t0) / 1000;
    const c = gc.counters;
    store.close();
    return {
      perSec: payloads.length / s,
      fragments: payloads.length,
      meanBatch: c.committedFragments / c.commits,
      messages: intake.counters.messagesCompleted,
    };
  };
  let bare = 0;
  let full = 0;
  let single = 0;
  let fullInCommit = 0;
  let batch = 0;
  let fragmentsPerMessage = 0;
  const ratios: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const u = opsPerSecond(unwrap, opts.quick ? 0.1 : 0.4).opsPerSec;
    const g = await intakeRound(GROUP_COMMIT_DEFAULTS.maxFragments, GROUP_COMMIT_DEFAULTS.fsync);
    const inCommit = await intakeRound(GROUP_COMMIT_DEFAULTS.maxFragments, 'in-commit');
    const one = await intakeRound(1, 'in-commit');
    bare = Math.max(bare, u);
    if (g.perSec > full) batch = g.meanBatch;
    full = Math.max(full, g.perSec);
    single = Math.max(single, one.perSec);
    fullInCommit = Math.max(fullInCommit, inCommit.perSec);
    fragmentsPerMessage = g.fragments / g.messages;
    ratios.push(g.perSec / u);
  }
  ratios.sort((x, y) => x - y);
  const out = {
    fragmentsPerSecFull: Math.round(full),
    bareUnwrapPerSec: Math.round(bare),
    ratio: full / bare,
    medianRoundRatio: ratios[Math.floor(ratios.length / 2)]!,
    fsync: GROUP_COMMIT_DEFAULTS.fsync,
    fragmentsPerSecInCommitFsync: Math.round(fullInCommit),
    perFragmentCommitPerSec: Math.round(single),
    groupCommitSpeedup: full / single,
    meanBatch: batch,
    maxWaitMs: GROUP_COMMIT_DEFAULTS.maxWaitMs,
    maxFragments: GROUP_COMMIT_DEFAULTS.maxFragments,
    fragmentsPerMessage,
    payloadBytes: geom.payloadSize,
  };
  opts.log(
    `durable intake (synchronous=FULL, group commit ≤ ${out.maxWaitMs} ms / ${out.maxFragments} fragments, ACK after commit): ${fmt(full)} fragments/s ` +
      `(mean batch ${fmt(batch, 1)}, fsync ${out.fsync}) | fsync inside COMMIT ${fmt(fullInCommit)}/s | one commit per fragment ${fmt(single)}/s (${fmt(out.groupCommitSpeedup, 2)}x) | bare unwrap ${fmt(bare)}/s | ` +
      `ratio ${fmt(out.ratio, 2)} (median per-round ${fmt(out.medianRoundRatio, 2)}; best of ${rounds} interleaved rounds, ${fragmentsPerMessage}-fragment messages)`,
  );
  return out;
}
