/**
 * Client benchmark (`npm run bench -- client`):
 * - preparing a 1 MiB message: accept into the outbox (routing, token, split plan, durable write)
 *   and build every fragment's packet (fresh route, fresh SURB, Sphinx wrap, in-flight record),
 *   with the default geometry (2 KiB payloads) and 3 mix layers;
 * - sustained packet creation rate: real fragment packets (with SURB) and drop-cover packets;
 * - the outbox for 1,000 queued messages (10 KiB each, one overlay recipient): disk, memory,
 *   and accept time per message.
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
    // 1. a 1 MiB message, prepared and sent with λ_P = 1000/s on a fake clock advanced 1 ms per step (so the figure is CPU + fsync, not the Poisson wait)
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
      for (let t = 1; packets < n && t < 1e6; t++) c.tick(t);
      const t2 = performance.now();
      c.close();
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
      };
      opts.log(
        `prepare ${fmt(size / 1024)} KiB: ${fmt(n)} fragments → ${fmt(packets)} packets (${fmt(bytes / size, 2)}× on the wire); ` +
          `accept ${fmt(t1 - t0, 1)} ms, packets + durable in-flight records ${fmt(t2 - t1, 0)} ms (${fmt((t2 - t1) / packets, 2)} ms/packet)`,
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
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { suite: 'client', machine: machineInfo(), results };
}
