/** Units of the mix node: config, loop routes and the loop success ratio. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../runtime/errors.ts';
import { hex, type NodeEntry } from '../proto/pki/index.ts';
import { testDocumentBody as doc } from '../test/support/pki.ts';
import { encodeLoop } from '../proto/fragment/format.ts';
import { loadMixnodeConfig } from './config.ts';
import { csprngUniform, uniformInt } from '../proto/util/random.ts';
import { LoopCover, loopQueueId, loopRoute } from '../runtime/hop/loop-cover.ts';

const pick = (n: number) => uniformInt(n, csprngUniform);

const tmp = mkdtempSync(join(tmpdir(), 'pm-mixu-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const KEY = Buffer.alloc(32, 1).toString('base64');

describe('mix node config', () => {
  it('applies defaults, resolves paths against the file, and takes env overrides', () => {
    const f = join(tmp, 'm.toml');
    writeFileSync(
      f,
      `[mixnode]\ndata_dir = "data"\n[directory]\nthreshold = 1\n[[directory.authorities]]\nurl = "http://127.0.0.1:8080/"\npublic_key = "${KEY}"\n`,
    );
    const c = loadMixnodeConfig(f, { POSTMIX_MIXNODE_METRICS__PORT: '9333', POSTMIX_MIXNODE_REPLAY__STORE: 'sqlite' });
    expect(c.dataDir).toBe(join(tmp, 'data'));
    expect(c.keysDir).toBe(join(tmp, 'data', 'keys'));
    expect(c.file.mixnode.listen).toBe('/ip4/127.0.0.1/tcp/4001');
    expect(c.file.metrics.port).toBe(9333);
    expect(c.file.replay.store).toBe('sqlite');
    expect(c.authorities[0]!.url).toBe('http://127.0.0.1:8080');
    expect(c.epoch.length).toBe(3600);
    // [crypto] workers: cores - 1, at least 1
    expect(c.file.crypto.workers).toBe(Math.max(1, availableParallelism() - 1));
  });

  it('[crypto] workers: set in the file or the environment, 0 allowed, unknown keys and bad values refused', () => {
    const f = join(tmp, 'w.toml');
    const rest = `[directory]\nthreshold = 1\n[[directory.authorities]]\nurl = "http://a"\npublic_key = "${KEY}"\n`;
    writeFileSync(f, `[mixnode]\ndata_dir = "d"\n[crypto]\nworkers = 3\n${rest}`);
    expect(loadMixnodeConfig(f, {}).file.crypto.workers).toBe(3);
    expect(loadMixnodeConfig(f, { POSTMIX_MIXNODE_CRYPTO__WORKERS: '0' }).file.crypto.workers).toBe(0);
    writeFileSync(f, `[mixnode]\ndata_dir = "d"\n[crypto]\nworker = 3\n${rest}`);
    expect(() => loadMixnodeConfig(f, {})).toThrow(/crypto\.worker: unknown key \(did you mean crypto\.workers\?\)/);
    writeFileSync(f, `[mixnode]\ndata_dir = "d"\n[crypto]\nworkers = -1\n${rest}`);
    expect(() => loadMixnodeConfig(f, {})).toThrow(/crypto\.workers/);
    writeFileSync(f, `[mixnode]\ndata_dir = "d"\n${rest}`);
    expect(() => loadMixnodeConfig(f, { POSTMIX_MIXNODE_CRYPTO__WORKERS: '1.5' })).toThrow(/crypto\.workers.*POSTMIX_MIXNODE_CRYPTO__WORKERS/);
    expect(() => loadMixnodeConfig(f, { POSTMIX_MIXNODE_CRYPTO__THREADS: '2' })).toThrow(/no key crypto\.threads/);
  });

  it('refuses bad values with the field named', () => {
    const f = join(tmp, 'bad.toml');
    writeFileSync(
      f,
      `[mixnode]\ndata_dir = "d"\nbogus = 1\n[limits]\nmax_queued_bytes = 10\n[directory]\nthreshold = 3\n[[directory.authorities]]\nurl = "http://a"\npublic_key = "${KEY}"\n`,
    );
    expect(() => loadMixnodeConfig(f, {})).toThrow(ConfigError);
    try {
      loadMixnodeConfig(f, {});
    } catch (e) {
      expect((e as Error).message).toContain('limits.max_queued_bytes');
      expect((e as Error).message).toContain('bogus');
    }
    writeFileSync(f, `[mixnode]\ndata_dir = "d"\n[directory]\nthreshold = 3\n[[directory.authorities]]\nurl = "http://a"\npublic_key = "${KEY}"\n`);
    expect(() => loadMixnodeConfig(f, {})).toThrow(/threshold 3 exceeds/);
  });
});

describe('loop cover', () => {
  it('routes through the following layers, a gateway, the earlier layers, back to itself', () => {
    const b = doc([2, 2, 2]);
    const L = (n: NodeEntry) => (n.layer === 0 ? 'G' : `L${n.layer}`);
    for (const [k, want] of [
      [1, 'L2 L3 G L1'],
      [2, 'L3 G L1 L2'],
      [3, 'G L1 L2 L3'],
    ] as const) {
      const self = b.layers[k - 1]![1]!;
      const r = loopRoute(b, self, pick);
      expect(typeof r).not.toBe('string');
      expect((r as NodeEntry[]).map(L).join(' ')).toBe(want);
      expect((r as NodeEntry[]).at(-1)).toBe(self);
    }
    expect(loopRoute(doc([1, 1, 1], { gateways: 0 }), doc([1]).layers[0]![0]!, pick)).toBe('this node is not in the document');
    const noGw = doc([1, 1, 1], { gateways: 0 });
    expect(loopRoute(noGw, noGw.layers[0]![0]!, pick)).toMatch(/no gateway/);
    const short = doc([1, 1, 1], { maxHops: 3 });
    expect(loopRoute(short, short.layers[0]![0]!, pick)).toMatch(/needs 4 hops/);
  });

  it('counts returns and timeouts, and warns once when the ratio falls (and once when it recovers)', () => {
    const b = doc([1, 1, 1]);
    const self = b.layers[0]![0]!;
    let now = 0;
    const sent: Uint8Array[] = [];
    const warns: string[] = [];
    const infos: string[] = [];
    const lc = new LoopCover({
      nodeId: self.nodeId,
      document: () => b,
      send: (first, p) => (expect(hex(first.nodeId)).toBe(hex(b.layers[1]![0]!.nodeId)), sent.push(p), true),
      timeoutS: 5,
      window: 10,
      alertRatio: 0.5,
      minSamples: 4,
      log: { warn: (_o, m) => warns.push(m ?? ''), info: (_o, m) => infos.push(m ?? ''), debug() {} },
      now: () => now,
      uniform: csprngUniform,
    });
    expect(lc.queueId).toEqual(loopQueueId(self.nodeId));
    for (let i = 0; i < 8; i++) expect(lc.emit()).toBe(true);
    expect(lc.stats.sent).toBe(8);
    expect(sent.every((p) => p.length === sent[0]!.length)).toBe(true);
    // nothing came back within the timeout: all lost, one warning
    now = 6000;
    expect(lc.sweep()).toBe(8);
    expect(lc.ratio).toBe(0);
    expect(warns.filter((w) => w.includes('not coming back'))).toHaveLength(1);
    // an unknown loop id is counted, not trusted
    expect(lc.onReturn(encodeLoop(new Uint8Array(16).fill(9)))).toBe(false);
    expect(lc.stats.unknown).toBe(1);
  });
});
