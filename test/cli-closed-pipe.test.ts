/**
 * Issue 13 point 7: `postmix ... | head -1` must not crash with an uncaught EPIPE. Each command
 * runs as a process whose stdout is a pipe we close before it writes (as `head` closes it after
 * the first line): it must end with its normal exit status and no uncaught-exception trace.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
let tmp: string;
let cfgFile: string;

/** Runs postmix with stdout a pipe whose read end is closed at once (or after the first line). */
function intoClosedPipe(args: string[], afterFirstLine: boolean): Promise<{ code: number | null; signal: string | null; stderr: string; got: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, 'bin/postmix.js'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let got = '';
    p.stderr.on('data', (c: Buffer) => (stderr += String(c)));
    if (afterFirstLine)
      p.stdout.on('data', (c: Buffer) => {
        got += String(c);
        if (got.includes('\n')) p.stdout.destroy();
      });
    else p.stdout.destroy(); // before the process has even loaded: its first write meets a closed pipe
    const timer = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, got });
    });
  });
}

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'postmix-epipe-'));
  cfgFile = join(tmp, 'client.toml');
  writeFileSync(cfgFile, `data_dir = ${JSON.stringify(join(tmp, 'data'))}\n[log]\nlevel = "warn"\n`);
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('CLI output into a closed pipe', () => {
  for (const [name, args] of [
    ['postmix --help', ['--help']],
    ['postmix client status', ['client', 'status', '-c', 'CFG']],
    ['postmix client status --json', ['client', 'status', '--json', '-c', 'CFG']],
    ['postmix client run --help', ['client', 'run', '--help']],
  ] as const) {
    it(`${name}: exit 0, no uncaught EPIPE`, async () => {
      const r = await intoClosedPipe(
        args.map((a) => (a === 'CFG' ? cfgFile : a)),
        false,
      );
      expect(r.stderr).not.toMatch(/EPIPE|Unhandled|Error:|at .*\.(ts|js):\d+/);
      expect([r.code, r.signal]).toEqual([0, null]);
    }, 40_000);
  }

  it('postmix --help read to its first line, then closed (as `| head -1`): exit 0, no trace', async () => {
    const r = await intoClosedPipe(['--help'], true);
    expect(r.got).toMatch(/^Usage: postmix/);
    expect(r.stderr).not.toMatch(/EPIPE|Unhandled|Error:/);
    expect([r.code, r.signal]).toEqual([0, null]);
  }, 40_000);
});
