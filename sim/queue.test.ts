/**
 * A sweep through a real Redis (Debian's redis-server, started here on a free loopback port)
 * and two `postmix sim worker` processes gives the same CSV as the same sweep on local threads.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerSim } from '../cli/sim.ts';
import { connectionOf } from './queue.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves when `proc` has printed `pattern` on stdout or stderr. */
function waitFor(proc: ChildProcess, pattern: RegExp, ms: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; saw:\n${seen}`)), ms);
    const on = (b: Buffer) => {
      seen += b.toString();
      if (pattern.test(seen)) {
        clearTimeout(timer);
        resolve(seen);
      }
    };
    proc.stdout?.on('data', on);
    proc.stderr?.on('data', on);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before ${pattern}; saw:\n${seen}`));
    });
  });
}

function stopped(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => (proc.exitCode !== null ? resolve() : proc.once('exit', () => resolve())));
}

async function cli(args: string[]): Promise<void> {
  const program = new Command('postmix').exitOverride();
  registerSim(program);
  await program.parseAsync(['node', 'postmix', ...args]);
}

const SWEEP = ['--clients', '20', '--duration', '60', '--warmup', '5', '--targets', '30', '--vary', 'mean-delay=50ms,200ms', '--replicates', '3'];
/** columns that measure the machine, not the model */
const MACHINE = /^wall_s/;

function rowsOf(csv: string): Array<Record<string, string>> {
  const [head, ...lines] = csv.trim().split('\n');
  const cols = head!.split(',');
  return lines.map((l) =>
    Object.fromEntries(
      l
        .split(',')
        .map((v, i) => [cols[i]!, v])
        .filter(([k]) => !MACHINE.test(k!)),
    ),
  );
}

describe('sim sweep through a Redis job queue (BullMQ)', () => {
  let redis: ChildProcess;
  let url: string;
  const workers: ChildProcess[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'postmix-queue-'));

  beforeAll(async () => {
    const port = await freePort();
    url = `redis://127.0.0.1:${port}`;
    redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'pipe' });
    await waitFor(redis, /Ready to accept connections/, 15_000);
    for (let i = 0; i < 2; i++) {
      const w = spawn(process.execPath, [join(ROOT, 'bin/postmix.js'), 'sim', 'worker', '--queue', url], { stdio: 'pipe', cwd: ROOT });
      workers.push(w);
    }
    await Promise.all(workers.map((w) => waitFor(w, /waiting for runs/, 60_000)));
  }, 90_000);

  afterAll(async () => {
    for (const w of workers) if (w.exitCode === null) w.kill('SIGTERM');
    await Promise.all(workers.map(stopped));
    if (redis && redis.exitCode === null) redis.kill('SIGTERM');
    if (redis) await stopped(redis);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('reads redis:// URLs', () => {
    expect(connectionOf('redis://10.1.2.3:7000/2')).toMatchObject({ host: '10.1.2.3', port: 7000, db: 2, maxRetriesPerRequest: null });
    expect(() => connectionOf('http://x')).toThrow(/redis:\/\//);
  });

  it('two workers run the jobs and the CSV equals the local sweep for the same seeds', async () => {
    const logs: string[] = [];
    for (const w of workers) w.stderr?.on('data', (b: Buffer) => logs.push(b.toString()));
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await cli(['sim', 'sweep', ...SWEEP, '--workers', '1', '--out', join(dir, 'local')]);
      await cli(['sim', 'sweep', ...SWEEP, '--queue', url, '--out', join(dir, 'queued')]);
    } finally {
      vi.restoreAllMocks();
    }
    const local = readFileSync(join(dir, 'local', 'results.csv'), 'utf8');
    const queued = readFileSync(join(dir, 'queued', 'results.csv'), 'utf8');
    expect(rowsOf(queued)).toEqual(rowsOf(local));
    expect(rowsOf(local)).toHaveLength(2);
    expect(rowsOf(local)[0]!.seeds).toBe('1 2 3');
    expect(readFileSync(join(dir, 'queued', 'report.html'), 'utf8')).toContain('<svg');
    // six runs, and each worker took some. A worker logs a run after BullMQ has
    // already told the sweep it completed, so its last line can trail the sweep.
    const doneLines = () => logs.join('').match(/sim worker \S+: run \d+ of sweep/g) ?? [];
    await vi.waitFor(() => expect(doneLines()).toHaveLength(6), { timeout: 15_000, interval: 100 });
    const done = doneLines();
    const by = new Set(done.map((l) => l.split(' ')[2]));
    expect(by.size).toBe(2);
  }, 180_000);
});
