/**
 * Gateway costs (`npm run bench -- gateway`):
 * - token redemption checks/s: the POPRF evaluation that verifies a token (verifyToken), on the
 *   backend the gateway runs (libsodium's ristretto255) and on noble, the reference and the
 *   backend of before, in interleaved rounds of the same run;
 * - fragments/s through the intake (decode, token check on first fragments, one SQLite
 *   transaction per fragment with synchronous=FULL as in production, and =NORMAL for
 *   comparison), for 8-fragment messages;
 * - messages/s from the durable queue to an MX on loopback (an smtp-server sink), SMTP with
 *   4 parallel connections (nodemailer opens one connection per message).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer } from 'smtp-server';
import { deriveIssuerKeys, noblePoprf, useFastestTokenChecks, verifyToken } from '../proto/tokens/index.ts';
import { HandoffWorker } from '../gateway/handoff.ts';
import { Intake } from '../gateway/intake.ts';
import { GatewayStore } from '../gateway/store.ts';
import { messageFragments, fragmentPayloads } from '../test/support/fragments.ts';
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

    // 2. fragments through reassembly
    const nMessages = opts.quick ? 40 : 200;
    const msg = new Uint8Array(8 * 1800).fill(0x61);
    for (const sync of ['full', 'normal'] as const) {
      const store = new GatewayStore(join(dir, `reasm-${sync}.sqlite`), { synchronous: sync });
      store.addUser(BOB);
      const intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 1 << 20, reassemblyTtlMs: 3_600_000 });
      const tokens = issuedTokens(issuer, BOB, 1, Math.min(1000, nMessages));
      const payloads = tokens.flatMap((t) => fragmentPayloads(messageFragments(msg, BOB, t)));
      const t0 = performance.now();
      for (const p of payloads) intake.handlePayload(p);
      const s = (performance.now() - t0) / 1000;
      const fps = payloads.length / s;
      results[`fragmentsPerSec_sync_${sync}`] = Math.round(fps);
      opts.log(
        `reassembly (synchronous=${sync}): ${fmt(fps)} fragments/s, ${fmt(intake.counters.messagesCompleted / s, 1)} messages/s (${payloads.length} fragments, ${intake.counters.messagesCompleted} messages of ${payloads.length / tokens.length} fragments)`,
      );
      store.close();
    }

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
