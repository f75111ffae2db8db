/**
 * The README's main job as a test: `postmix testnet` as its own process, every node a real
 * process on loopback. The run must exit 0, and its JSON report must show every message where
 * it should be: through the mixnet byte-identical and exactly once, by SMTP fallback to the
 * domain without a gateway, and nothing from a sender with forged tokens.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TestnetReport } from '../cli/testnet/report.ts';

const bin = new URL('../bin/postmix.js', import.meta.url).pathname;

function testnet(args: string[]): Promise<{ code: number; report: TestnetReport; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [bin, 'testnet', '--json', ...args], { timeout: 400_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      try {
        resolve({ code: typeof code === 'number' ? code : 1, report: JSON.parse(stdout.trim().split('\n').at(-1)!) as TestnetReport, stderr });
      } catch {
        reject(new Error(`testnet printed no JSON report (exit ${String(code)}):\n${stderr.slice(-4000)}`));
      }
    });
  });
}

describe('postmix testnet (whole network, separate processes)', () => {
  const keep = mkdtempSync(join(tmpdir(), 'postmix-e2e-'));
  afterAll(() => rmSync(keep, { recursive: true, force: true }));

  it('delivers every message byte-identical, exactly once, by the path it should take', async () => {
    const { code, report, stderr } = await testnet(['--messages', '2', '--size', '7000', '--unauthorized', '1', '--keep', keep]);
    if (code !== 0) console.error(stderr.slice(-6000));
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    const overlay = report.messages.filter((m) => m.expected === 'overlay');
    const fallback = report.messages.filter((m) => m.expected === 'smtp-fallback');
    const refused = report.messages.filter((m) => m.expected === 'refused');
    // both gateway domains, the domain without a gateway, and the unauthorized sender
    expect(new Set(overlay.map((m) => m.to.split('@')[1]))).toEqual(new Set(['alpha.test', 'beta.test']));
    expect(overlay).toHaveLength(4);
    expect(fallback.map((m) => m.to)).toEqual(['carol@gamma.test', 'carol@gamma.test']);
    expect(refused).toHaveLength(1);
    for (const m of [...overlay, ...fallback]) {
      expect(m.path).toBe(m.expected);
      expect(m.intact).toBe(true);
      expect(m.copies).toBe(1);
      expect(m.bytes).toBe(7000);
    }
    expect(refused[0]!.path).toBe('refused');
    expect(refused[0]!.copies).toBe(0);
    expect(report.totals.ok).toBe(report.messages.length);

    // and independently of the report: bob's Maildir holds exactly alice's messages, unaltered
    const dir = join(keep, 'mail', 'beta.test', 'bob', 'new');
    const files = readdirSync(dir).map((f) => readFileSync(join(dir, f), 'latin1'));
    expect(files).toHaveLength(2);
    for (const f of files) {
      expect(f).toMatch(/^From: alice@alpha\.test\r\n/);
      expect(f.endsWith('--\r\n')).toBe(true);
      expect(f).not.toContain('mallory');
    }
    // the whole network boots and runs as ~20 processes: minutes on a loaded 2-core machine
  }, 420_000);
});
