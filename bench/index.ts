/**
 * `npm run bench -- [suite ...] [--json]`. Each suite is a module bench/<suite>.ts exporting
 * `run(opts): Promise<BenchReport>`. Human-readable lines go to stderr (progress and tables);
 * with --json one JSON object per suite goes to stdout, so `npm run bench -- --json | jq` works.
 */
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchOptions, BenchReport } from './harness.ts';

const here = dirname(fileURLToPath(import.meta.url));

function availableSuites(): string[] {
  return readdirSync(here)
    .filter((f) => f.endsWith('.ts') && !['index.ts', 'harness.ts'].includes(f) && !f.endsWith('.test.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
}

export async function runBench(args: string[]): Promise<void> {
  const json = args.includes('--json');
  const quick = args.includes('--quick');
  const wanted = args.filter((a) => !a.startsWith('--'));
  const all = availableSuites();
  if (args.includes('--help') || args.includes('-h')) {
    process.stderr.write(
      `usage: npm run bench -- [suite ...] [--json] [--quick]\n  suites: ${all.join(', ')}\n` +
        '  --json   one JSON object per suite on stdout\n  --quick  fewer iterations (a smoke run)\n',
    );
    return;
  }
  // suites that take most of an hour (sim-1m) run only when named
  const heavy = new Set(['sim-1m']);
  const suites = wanted.length > 0 ? wanted : all.filter((s) => !heavy.has(s));
  for (const s of suites) {
    if (!existsSync(join(here, `${s}.ts`))) {
      process.stderr.write(`bench: no suite "${s}" (have: ${all.join(', ')})\n`);
      process.exitCode = 2;
      return;
    }
  }
  const opts: BenchOptions = { json, quick, log: (line) => process.stderr.write(line + '\n') };
  for (const s of suites) {
    const mod = (await import(`./${s}.ts`)) as { run: (o: BenchOptions) => Promise<BenchReport> };
    opts.log(`# bench ${s}`);
    const report = await mod.run(opts);
    if (json) process.stdout.write(JSON.stringify(report) + '\n');
  }
}
