/**
 * Gateway costs (`npm run bench -- gateway`):
 * - token redemption checks/s: the POPRF evaluation that verifies a token (verifyToken), on the
 *   backend the gateway runs (libsodium's ristretto255) and on noble, the reference and the
 *   backend of before, in interleaved rounds of the same run;
 * - fragments/s through the durable intake (`intake.fragmentsPerSecFull`), run the way the
 *   gateway daemon runs it (gateway/daemon.ts), with its default `[crypto] workers` (cores − 1,
 *   at least 1; `intake.workers`): decode, the token's POPRF check on the worker pool (once per
 *   message), reassembly, group commit with synchronous=FULL and the gateway's default [intake]
 *   settings, and each ACK packet built from its fragment's SURB on the pool only after the
 *   commit that holds the fragment is durable (gateway/crypto-offload.ts); payloads handed over
 *   a few per event-loop turn, as frames come off a link, at saturation. Beside it in interleaved
 *   rounds of the same run: the same on the event loop alone (`fragmentsPerSecNoWorkers`,
 *   `[crypto] workers = 0`), one commit per fragment (`perFragmentCommitPerSec`, the intake of
 *   before group commit), the group commit with its fsync inside COMMIT
 *   (`fragmentsPerSecInCommitFsync`, synchronous=FULL on the event loop; the default overlaps it
 *   with the next batch, runtime/wal-sync.ts) and the bare Sphinx unwrap of a final-hop 2 KiB
 *   packet on the suite the gateway runs, on one thread (`bareUnwrapPerSec`: processPacket, no
 *   replay store), the work in front of the intake; target fragmentsPerSecFull ≥ 0.7 × that.
 *   CPU per fragment: `cpuUsPerFragment` (all threads) and `mainThreadUsPerFragment` (the event
 *   loop's busy time), the figures that other load on the machine disturbs least;
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
import { DEFAULT_GEOMETRY, createPacket, createSurb, fastestSuite, prepareHopKey, processPacket } from '../proto/sphinx/index.ts';
import { GROUP_COMMIT_DEFAULTS, GroupCommit, type FsyncMode } from '../gateway/group-commit.ts';
import { PoolReplies, PoolTokenChecks } from '../gateway/crypto-offload.ts';
import { UnwrapPool } from '../runtime/hop/unwrap-pool.ts';
import { threadCpuSeconds } from '../runtime/thread-cpu.ts';
import { defaultCryptoWorkers } from '../runtime/config-schema.ts';
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
 * Rounds of: the bare unwrap (opsPerSecond), the intake under group commit (with the daemon's
 * workers, then without), the same with the fsync inside COMMIT, the intake with one commit per
 * fragment; each intake round takes 120 messages (20 for one commit per fragment) of 9 fragments
 * of 2 KiB packets, each with a SURB, into a fresh store (the rounds of one index share their
 * tokens: each store has its own spent set). Best round of each; the ratio of the bests and the
 * median of the per-round ratios.
 */
async function intakeFigures(opts: BenchOptions, dir: string, issuer: IssuerKeys, bob: string) {
  const geom = DEFAULT_GEOMETRY;
  const rounds = opts.quick ? 2 : 5;
  // messages per intake round: long enough that the end of a round (its last fsync and ACKs)
  // weighs little against its steady state; the one-commit-per-fragment round takes fewer
  const perRound = opts.quick ? 10 : 120;
  const perRoundSingle = opts.quick ? 5 : 20;
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
  // each round's stores are fresh (their own spent sets): the rounds of one index share tokens
  const tokens = issuedTokens(issuer, bob, 1, rounds * perRound);
  let storeN = 0;
  // the gateway daemon's pool: `[crypto] workers` at its default, on the event loop's suite
  const workers = defaultCryptoWorkers();
  const pool = await UnwrapPool.start({ workers, suite: suite.name });
  const intakeRound = async (r: number, maxFragments: number, fsync: FsyncMode, withPool: boolean, messages = perRound) => {
    const store = new GatewayStore(join(dir, `intake-${storeN++}.sqlite`));
    store.addUser(bob);
    const intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 1 << 20, reassemblyTtlMs: 3_600_000 });
    // as gateway/daemon.ts wires them
    const poolOf = () => (withPool ? pool : undefined);
    const checks = new PoolTokenChecks(poolOf, issuer);
    const replies = new PoolReplies(poolOf);
    const gc = new GroupCommit(store, intake, {
      maxWaitMs: GROUP_COMMIT_DEFAULTS.maxWaitMs,
      maxFragments,
      fsync,
      checks: (recipient, token, key, done) => checks.check(recipient, token, key, done),
    });
    const payloads = tokens
      .slice(r * perRound, r * perRound + messages)
      .flatMap((t) => fragmentPayloads(messageFragments(msg, bob, t, { surb }), geom.payloadSize));
    let acks = 0;
    let failed: Error | undefined;
    const cpu0 = process.cpuUsage();
    const elu0 = performance.eventLoopUtilization();
    // this runs on the main thread: its CPU time (Linux; NaN elsewhere, and the event loop's
    // busy time stands in, which also counts time it waited for a core)
    const main0 = threadCpuSeconds();
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const answer = (r: ReturnType<Intake['handlePayload']>) => {
        if (r.kind !== 'ack' || (r.status !== AckStatus.Stored && r.status !== AckStatus.Queued))
          return reject((failed ??= new Error(`bench fragment refused: ${JSON.stringify(r)}`)));
        replies.build(geom, r.fragment.surb, encodeAck({ messageId: r.fragment.messageId, index: r.fragment.index, status: r.status }), (p) => {
          if (!p.ok) return reject((failed ??= new Error('bench ACK not built')));
          if (++acks === payloads.length) resolve();
        });
      };
      let next = 0;
      const feed = () => {
        for (let k = 0; k < PER_TURN && next < payloads.length; k++) gc.submit(payloads[next++]!, answer);
        if (next < payloads.length) setImmediate(feed);
      };
      feed();
    });
    const s = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const elu = performance.eventLoopUtilization(elu0);
    const main1 = threadCpuSeconds();
    const c = gc.counters;
    store.close();
    return {
      perSec: payloads.length / s,
      cpuUs: (cpu.user + cpu.system) / payloads.length,
      mainUs: (Number.isFinite(main1 - main0) ? (main1 - main0) * 1e6 : elu.active * 1000) / payloads.length,
      fragments: payloads.length,
      meanBatch: c.committedFragments / c.commits,
      messages: intake.counters.messagesCompleted,
    };
  };
  let bare = 0;
  let full = 0;
  let noWorkers = 0;
  let single = 0;
  let fullInCommit = 0;
  let batch = 0;
  let fragmentsPerMessage = 0;
  const ratios: number[] = [];
  const cpuUs: number[] = [];
  const mainUs: number[] = [];
  const cpuUsNoWorkers: number[] = [];
  const bareUs: number[] = [];
  const D = GROUP_COMMIT_DEFAULTS;
  try {
    for (let r = 0; r < rounds; r++) {
      const u = opsPerSecond(unwrap, opts.quick ? 0.1 : 0.4).opsPerSec;
      const cpuB = process.cpuUsage();
      const nb = opts.quick ? 200 : 1000;
      for (let k = 0; k < nb; k++) unwrap();
      const cpuBare = process.cpuUsage(cpuB);
      const g = await intakeRound(r, D.maxFragments, D.fsync, true);
      const g0 = await intakeRound(r, D.maxFragments, D.fsync, false);
      const inCommit = await intakeRound(r, D.maxFragments, 'in-commit', true);
      const one = await intakeRound(r, 1, 'in-commit', true, perRoundSingle);
      bare = Math.max(bare, u);
      if (g.perSec > full) batch = g.meanBatch;
      full = Math.max(full, g.perSec);
      noWorkers = Math.max(noWorkers, g0.perSec);
      single = Math.max(single, one.perSec);
      fullInCommit = Math.max(fullInCommit, inCommit.perSec);
      fragmentsPerMessage = g.fragments / g.messages;
      ratios.push(g.perSec / u);
      cpuUs.push(g.cpuUs);
      mainUs.push(g.mainUs);
      cpuUsNoWorkers.push(g0.cpuUs);
      bareUs.push((cpuBare.user + cpuBare.system) / nb);
    }
  } finally {
    await pool.close();
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const out = {
    fragmentsPerSecFull: Math.round(full),
    bareUnwrapPerSec: Math.round(bare),
    ratio: full / bare,
    medianRoundRatio: median(ratios),
    workers,
    fragmentsPerSecNoWorkers: Math.round(noWorkers),
    cpuUsPerFragment: Math.round(median(cpuUs)),
    mainThreadUsPerFragment: Math.round(median(mainUs)),
    cpuUsPerFragmentNoWorkers: Math.round(median(cpuUsNoWorkers)),
    bareUnwrapCpuUs: Math.round(median(bareUs)),
    fsync: D.fsync,
    fragmentsPerSecInCommitFsync: Math.round(fullInCommit),
    perFragmentCommitPerSec: Math.round(single),
    groupCommitSpeedup: full / single,
    meanBatch: batch,
    maxWaitMs: D.maxWaitMs,
    maxFragments: D.maxFragments,
    fragmentsPerMessage,
    payloadBytes: geom.payloadSize,
  };
  opts.log(
    `durable intake (synchronous=FULL, group commit ≤ ${out.maxWaitMs} ms / ${out.maxFragments} fragments, ACK after commit, ${workers} worker(s)): ${fmt(full)} fragments/s ` +
      `(mean batch ${fmt(batch, 1)}, fsync ${out.fsync}; ${out.cpuUsPerFragment} µs CPU per fragment, ${out.mainThreadUsPerFragment} µs on the event loop) | ` +
      `workers = 0 ${fmt(noWorkers)}/s (${out.cpuUsPerFragmentNoWorkers} µs) | fsync inside COMMIT ${fmt(fullInCommit)}/s | one commit per fragment ${fmt(single)}/s (${fmt(out.groupCommitSpeedup, 2)}x) | bare unwrap ${fmt(bare)}/s (${out.bareUnwrapCpuUs} µs) | ` +
      `ratio ${fmt(out.ratio, 2)} (median per-round ${fmt(out.medianRoundRatio, 2)}; best of ${rounds} interleaved rounds, ${fragmentsPerMessage}-fragment messages)`,
  );
  return out;
}
