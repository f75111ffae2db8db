import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { registerSim } from '../cli/sim.ts';
import { expandGrid, rowOf, runSweep, toCsv } from './sweep.ts';
import { loadScenarioFile, ScenarioError } from './scenario.ts';

async function runCli(args: string[]): Promise<string> {
  const program = new Command('postmix').exitOverride();
  registerSim(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  try {
    await program.parseAsync(['node', 'postmix', ...args]);
  } finally {
    spy.mockRestore();
  }
  return out;
}

describe('postmix sim CLI', () => {
  afterEach(() => vi.restoreAllMocks());

  it('sim run --json prints the keys the issue names, and the flags reach the model', async () => {
    const out = await runCli([
      'sim',
      'run',
      '--clients',
      '30',
      '--layers',
      '2',
      '--layer-size',
      '2',
      '--rate',
      '1',
      '--mean-delay',
      '0.05',
      '--loop-rate',
      '0.2',
      '--drop-rate',
      '0.3',
      '--duration',
      '60',
      '--warmup',
      '5',
      '--targets',
      '40',
      '--seed',
      '3',
      '--json',
      '--no-progress',
    ]);
    const j = JSON.parse(out) as Record<string, any>;
    for (const v of [j.entropy.mean, j.entropy.median, j.sender_entropy.mean, j.latency.mean, j.latency.p95, j.packets, j.events, j.wall_s])
      expect(typeof v).toBe('number');
    expect(j.scenario).toMatchObject({ clients: 30, layers: 2, layerSize: 2, meanDelay: 0.05, loopRate: 0.2, dropRate: 0.3, targets: 40, seed: 3 });
    // 2 Exp(20) hops: mean 0.1 s, within 10%
    expect(Math.abs(j.latency.mean - 0.1)).toBeLessThan(0.01);
    // cover per real = (0.2 + 0.3) / 1 within 10%
    expect(Math.abs(j.overhead.cover_per_real - 0.5)).toBeLessThan(0.05);
  });

  it('a scenario file sets fields and flags override them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postmix-sim-'));
    const f = join(dir, 's.yaml');
    writeFileSync(f, 'clients: 12\nlayer-size: 2\nduration: 40\nwarmup: 4\ntargets: 10\nmean_delay: 0.2\n');
    expect(loadScenarioFile(f)).toEqual({ clients: 12, layerSize: 2, duration: 40, warmup: 4, targets: 10, meanDelay: 0.2 });
    const j = JSON.parse(await runCli(['sim', 'run', '--scenario', f, '--clients', '15', '--json', '--no-progress'])) as Record<string, any>;
    expect(j.scenario).toMatchObject({ clients: 15, layerSize: 2, meanDelay: 0.2 });
    writeFileSync(f, 'bogus: 1\n');
    expect(() => loadScenarioFile(f)).toThrow(ScenarioError);
  });

  it('sim run --out writes a self-contained HTML report and SVG plots', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'postmix-sim-'));
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await runCli(['sim', 'run', '--clients', '10', '--duration', '30', '--warmup', '3', '--targets', '20', '--out', dir, '--no-progress']);
    const svg = readFileSync(join(dir, 'latency-cdf.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(existsSync(join(dir, 'entropy-hist.svg'))).toBe(true);
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/<script|src="http/);
  });

  it('sweep grid, rows and CSV (in-thread)', async () => {
    const pts = expandGrid({ clients: 10, duration: 30, warmup: 3, targets: 20 }, { meanDelay: [0.05, 0.2], dropRate: [0, 1] });
    expect(pts).toHaveLength(4);
    const res = await runSweep(pts, { workers: 0 });
    const rows = res.map((r) => rowOf([r], ['meanDelay', 'dropRate']));
    const csv = toCsv(rows).trim().split('\n');
    expect(csv).toHaveLength(5);
    expect(csv[0]!.startsWith('meanDelay,dropRate,entropy_mean')).toBe(true);
    // longer delay, more entropy; cover, more entropy
    expect(Number(rows[2]!.entropy_mean)).toBeGreaterThan(Number(rows[0]!.entropy_mean));
    expect(Number(rows[1]!.entropy_mean)).toBeGreaterThan(Number(rows[0]!.entropy_mean));
  });

  it('sim run --replicates R: means with 95% CIs, the seeds and the whole scenario recorded; threads change nothing', async () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const args = [
      'sim',
      'run',
      '--clients',
      '15',
      '--duration',
      '40s',
      '--warmup',
      '4s',
      '--targets',
      '20',
      '--mean-delay',
      '50ms',
      '--seed',
      '5',
      '--replicates',
      '3',
      '--json',
    ];
    const j = JSON.parse(await runCli([...args, '--workers', '2'])) as Record<string, any>;
    expect(j.replicates).toBe(3);
    expect(j.seeds).toEqual([5, 6, 7]);
    expect(j.scenario).toMatchObject({ clients: 15, duration: 40, warmup: 4, meanDelay: 0.05, seed: 5, gateways: 4, acks: true });
    const [lo, hi] = j.entropy.mean_ci95 as [number, number];
    expect(lo).toBeLessThan(j.entropy.mean);
    expect(hi).toBeGreaterThan(j.entropy.mean);
    expect(j.latency.p95_ci95).toHaveLength(2);
    expect(j.latency.p95_ci95[0]).toBeLessThanOrEqual(j.latency.p95);
    // the same replicates run one after another in this thread
    const one = JSON.parse(await runCli([...args, '--workers', '0'])) as Record<string, any>;
    const strip = (o: Record<string, any>) => JSON.stringify(o, (k, v) => (/^(wall_s|events_per_s)/.test(k) ? undefined : v));
    expect(strip(one)).toBe(strip(j));
  });
});
