/**
 * Client benchmark (`npm run bench -- client`):
 * - preparing a 1 MiB message: accept into the outbox (routing, token, split plan, durable write)
 *   and build every fragment's packet (fresh route, fresh SURB, Sphinx wrap, its prepared and
 *   in-flight records), wall time and this process's CPU per packet,
 *   with the default geometry (2 KiB payloads) and 3 mix layers;
 * - sustained packet creation rate: real fragment packets (with SURB) and drop-cover packets;
 * - the outbox for 1,000 queued messages (10 KiB each, one overlay recipient): disk, memory,
 *   and accept time per message;
 * - issuance of 100 tokens end to end (`results.issuance.tokens100Ms`): the recipient's client
 *   (client/issuance.ts) learns its key epochs, blinds 100 inputs, POSTs them over HTTP on
 *   loopback to the gateway's real issuance endpoint (its SQLite store, fsync'd), which
 *   evaluates them with one batch DLEQ proof; the client verifies the proof and finalizes, and
 *   stores the tokens (fsync'd). Beside it the three POPRF steps alone, in this process.
 * Figures only; nothing is asserted.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fastestSuite } from '../proto/sphinx/index.ts';
import { ClientCore } from '../client/core.ts';
import { buildDropPacket, buildFragmentPacket } from '../client/sender.ts';
import { InProcessMixnet } from '../test/support/in-process-mixnet.ts';
import { csprngUniform } from '../proto/util/random.ts';
import { fmt, machineInfo, opsPerSecond, type BenchOptions, type BenchReport } from './harness.ts';
import { learnSchedule, requestEpoch, type RequestOptions } from '../client/issuance.ts';
import { PermissionStore } from '../client/permission.ts';
import { startIssuanceServer } from '../gateway/issuance.ts';
import { GatewayStore } from '../gateway/store.ts';
import { deriveIssuerKeys, finalizeTokens, issueTokens, requestTokens } from '../proto/tokens/index.ts';

function fileSize(p: string): number {
  return (existsSync(p) ? statSync(p).size : 0) + (existsSync(p + '-wal') ? statSync(p + '-wal').size : 0);
}

function mkCore(dir: string, sim: InProcessMixnet, sink: { send(h: Uint8Array, p: Uint8Array): void }) {
  return new ClientCore({
    outboxPath: join(dir, 'outbox.sqlite'),
    suite: fastestSuite,
    network: sim.network(new Uint8Array(32).fill(1), sink),
    policy: { overlayOnly: true, overlayOnlyRecipients: [] },
    strip: {},
    smarthost: null,
    bounceMaildir: join(dir, 'Maildir'),
    cover: false,
    // the daemon's generator, so the figures include its cost
    uniform: csprngUniform,
  });
}

export async function run(opts: BenchOptions): Promise<BenchReport> {
  const dir = mkdtempSync(join(tmpdir(), 'postmix-bench-client-'));
  const results: Record<string, unknown> = {};
  try {
    const sim = new InProcessMixnet({ mixing: { lambdaP: 1000, lambdaL: 0, lambdaD: 0, lambdaM: 0, lambdaG: 0, mu: 10 } });
    // 1. a 1 MiB message, prepared and sent with λ_P = 1000/s on a fake clock stepped to each
    //    stream event, as the daemon's timer wakes (so the figure is CPU + fsync, not the Poisson wait)
    {
      const size = opts.quick ? 256 * 1024 : 1024 * 1024;
      let packets = 0;
      let bytes = 0;
      const c = mkCore(join(dir, 'one'), sim, { send: (_h, p) => ((packets += 1), (bytes += p.length)) });
      c.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
      const raw = new Uint8Array(randomBytes(size));
      const t0 = performance.now();
      const id = c.accept('a@sender.test', ['bob@overlay.test'], raw, 0);
      const t1 = performance.now();
      const n = c.outbox.recipient(id, 'bob@overlay.test')!.fragmentCount;
      const cpu0 = process.cpuUsage();
      c.tick(0);
      for (let i = 0; packets < n && i < 1e6; i++) c.tick(c.sender.nextEventAt());
      const cpu = process.cpuUsage(cpu0);
      const t2 = performance.now();
      c.close();
      const cpuMs = (cpu.user + cpu.system) / 1000;
      results.prepare1MiB = {
        messageBytes: size,
        fragments: n,
        packets,
        wireBytes: bytes,
        expansion: bytes / size,
        acceptMs: t1 - t0,
        buildAndRecordMs: t2 - t1,
        totalMs: t2 - t0,
        msPerPacket: (t2 - t1) / packets,
        // this process's CPU (user + system) per real packet: route, SURB, Sphinx, the outbox rows
        cpuMsPerPacket: cpuMs / packets,
      };
      opts.log(
        `prepare ${fmt(size / 1024)} KiB: ${fmt(n)} fragments → ${fmt(packets)} packets (${fmt(bytes / size, 2)}× on the wire); ` +
          `accept ${fmt(t1 - t0, 1)} ms, packets + durable in-flight records ${fmt(t2 - t1, 0)} ms (${fmt((t2 - t1) / packets, 2)} ms/packet, ` +
          `CPU ${fmt(cpuMs / packets, 2)} ms/packet)`,
      );
    }
    // 2. sustained creation rates (no outbox)
    {
      const secs = opts.quick ? 0.5 : 2;
      const u = csprngUniform;
      const data = new Uint8Array(1000);
      const frag = opsPerSecond(() => {
        buildFragmentPacket({
          suite: fastestSuite,
          doc: sim.doc,
          gateway: sim.gateway.entry,
          home: sim.gateway.entry,
          mailboxId: new Uint8Array(32),
          wireId: new Uint8Array(16),
          recipient: 'bob@overlay.test',
          token: new Uint8Array(100),
          index: 0,
          count: 1,
          totalLength: data.length,
          data,
          uniform: u,
          surbId: new Uint8Array(16),
        });
        return 1;
      }, secs);
      const drop = opsPerSecond(() => (buildDropPacket(fastestSuite, sim.doc, u), 1), secs);
      results.creationRate = { fragmentPacketsWithSurbPerSec: frag.opsPerSec, dropCoverPacketsPerSec: drop.opsPerSec };
      opts.log(`sustained: ${fmt(frag.opsPerSec)} fragment packets/s (each with a fresh SURB), ${fmt(drop.opsPerSec)} drop-cover packets/s (one core)`);
    }
    // 3. outbox with 1,000 queued messages
    {
      const count = opts.quick ? 200 : 1000;
      const msgBytes = 10 * 1024;
      const d = join(dir, 'many');
      globalThis.gc?.();
      const heap0 = process.memoryUsage();
      const c = mkCore(d, sim, { send: () => undefined });
      c.wallet.importBundle(sim.bundle('bob@overlay.test', count));
      const t0 = performance.now();
      for (let i = 0; i < count; i++) c.accept('a@sender.test', ['bob@overlay.test'], new Uint8Array(randomBytes(msgBytes)), i);
      const t1 = performance.now();
      globalThis.gc?.();
      const heap1 = process.memoryUsage();
      const frags = (c.outbox.db.prepare('SELECT COUNT(*) AS n FROM fragments').get() as { n: number }).n;
      const disk = fileSize(join(d, 'outbox.sqlite'));
      const st = performance.now();
      c.outbox.progress();
      const statusMs = performance.now() - st;
      c.close();
      results.outbox1000 = {
        messages: count,
        messageBytes: msgBytes,
        fragments: frags,
        diskBytes: disk,
        diskOverhead: disk / (count * msgBytes),
        heapDeltaBytes: heap1.heapUsed - heap0.heapUsed,
        rssDeltaBytes: heap1.rss - heap0.rss,
        acceptMsPerMessage: (t1 - t0) / count,
        statusQueryMs: statusMs,
      };
      opts.log(
        `outbox with ${fmt(count)} queued messages of ${fmt(msgBytes / 1024)} KiB (${fmt(frags)} fragments): disk ${fmt(disk / 1024 / 1024, 1)} MiB ` +
          `(${fmt(disk / (count * msgBytes), 2)}× the messages), heap +${fmt((heap1.heapUsed - heap0.heapUsed) / 1024 / 1024, 1)} MiB, rss +${fmt((heap1.rss - heap0.rss) / 1024 / 1024, 1)} MiB, ` +
          `accept ${fmt((t1 - t0) / count, 2)} ms/message (fsync'd), status query ${fmt(statusMs, 0)} ms`,
      );
    }
    // 4. issuance of 100 tokens, end to end over HTTP, and its POPRF steps alone
    {
      const runs = opts.quick ? 3 : 11;
      const issuer = deriveIssuerKeys(new Uint8Array(32).fill(0x5e));
      const gw = new GatewayStore(join(dir, 'issuance', 'gateway.sqlite'));
      const { secret } = gw.addUser('bob@overlay.test');
      const server = await startIssuanceServer(gw, issuer, '127.0.0.1', 0, { limits: { maxTokensPerHour: 1e9, maxTokensPerEpoch: 1e9 } });
      const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      try {
        const url = `http://127.0.0.1:${server.port}/`;
        const e2e: number[] = [];
        for (let r = 0; r < runs + 1; r++) {
          const perm = new PermissionStore(join(dir, 'issuance', `bob-${r}`, 'permission.sqlite'));
          const o: RequestOptions = {
            store: perm,
            endpoint: { url, address: 'bob@overlay.test', secret, timeoutMs: 30_000 },
            gateway: { domain: 'overlay.test', issuerKey: issuer.publicKey, url },
          };
          const t0 = performance.now();
          const sched = await learnSchedule(o);
          const n = await requestEpoch(o, sched, sched.current, 100);
          const ms = performance.now() - t0;
          perm.close();
          if (n !== 100) throw new Error(`issued ${n} tokens, wanted 100`);
          if (r > 0) e2e.push(ms); // the first run warms up the JIT and the connection
        }
        const steps = { blind: [] as number[], evaluate: [] as number[], finalize: [] as number[] };
        for (let r = 0; r < runs; r++) {
          const a = performance.now();
          const st = requestTokens(issuer.publicKey, 'bob@overlay.test', 1, 100);
          const b = performance.now();
          const ev = issueTokens(issuer, 'bob@overlay.test', 1, st.blinded);
          const c = performance.now();
          finalizeTokens(st, ev);
          const d = performance.now();
          steps.blind.push(b - a);
          steps.evaluate.push(c - b);
          steps.finalize.push(d - c);
        }
        results.issuance = {
          tokens: 100,
          runs,
          tokens100Ms: median(e2e),
          tokens100MsMin: Math.min(...e2e),
          tokens100MsMax: Math.max(...e2e),
          blind100Ms: median(steps.blind),
          evaluateWithProof100Ms: median(steps.evaluate),
          verifyAndFinalize100Ms: median(steps.finalize),
        };
        opts.log(
          `issuance of 100 tokens end to end (GET /v1/user + blind + POST /v1/issue + batch evaluation with proof + proof check + finalize + store), median of ${runs}: ` +
            `${fmt(median(e2e), 0)} ms (min ${fmt(Math.min(...e2e), 0)}, max ${fmt(Math.max(...e2e), 0)}); alone: blind ${fmt(median(steps.blind), 0)} ms, ` +
            `evaluate + proof ${fmt(median(steps.evaluate), 0)} ms, verify + finalize ${fmt(median(steps.finalize), 0)} ms (noble ristretto255)`,
        );
      } finally {
        await server.close();
        gw.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { suite: 'client', machine: machineInfo(), results };
}
