/**
 * Plots and the HTML report: vega-lite specs compiled to vega and rendered to SVG server-side
 * (renderer 'none', no canvas, no browser). The HTML report inlines the SVGs and the numbers, so
 * it is one self-contained file.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { SdaReport } from './attacks/sda.ts';
import type { RunResult } from './model.ts';

type Row = Record<string, number | string>;

export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

function lineSpec(
  title: string,
  values: Row[],
  x: string,
  y: string,
  opts: { xLog?: boolean; color?: string; xTitle?: string; yTitle?: string } = {},
): vl.TopLevelSpec {
  return {
    title,
    width: 480,
    height: 280,
    data: { values },
    mark: { type: 'line', point: values.length <= 40 },
    encoding: {
      x: { field: x, type: 'quantitative', title: opts.xTitle ?? x, scale: opts.xLog ? { type: 'log' } : { zero: false } },
      y: { field: y, type: 'quantitative', title: opts.yTitle ?? y },
      ...(opts.color ? { color: { field: opts.color, type: 'nominal' } } : {}),
    },
  } as vl.TopLevelSpec;
}

export function latencyCdfSpec(r: RunResult): vl.TopLevelSpec {
  return lineSpec('End-to-end latency CDF (real packets)', r.latency_cdf, 'x', 'p', { xTitle: 'latency (s)', yTitle: 'P(latency ≤ x)' });
}

export function entropyHistSpec(entropy: number[]): vl.TopLevelSpec {
  return {
    title: 'Per-target-packet entropy (bits)',
    width: 480,
    height: 280,
    data: { values: entropy.map((e) => ({ e })) },
    mark: 'bar',
    encoding: {
      x: { field: 'e', type: 'quantitative', bin: { maxbins: 40 }, title: 'entropy (bits)' },
      y: { aggregate: 'count', type: 'quantitative', title: 'targets' },
    },
  } as vl.TopLevelSpec;
}

export function sdaSpec(reports: Array<{ label: string; report: SdaReport }>): vl.TopLevelSpec {
  const values: Row[] = [];
  for (const { label, report } of reports) for (const c of report.curve) values.push({ rounds: c.rounds, success: c.success, case: label });
  return lineSpec('Statistical disclosure: success against rounds', values, 'rounds', 'success', {
    xLog: true,
    color: 'case',
    xTitle: 'mix rounds',
    yTitle: 'fraction of trials naming all contacts',
  });
}

export function sweepSpec(rows: Row[], x: string, y: string, color?: string): vl.TopLevelSpec {
  return lineSpec(`${y} against ${x}`, rows, x, y, { ...(color ? { color } : {}), xLog: false });
}

function esc(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

/** Writes name.svg for each plot and report.html (self-contained) into dir. */
export async function writeReport(dir: string, title: string, summary: unknown, plots: Array<{ name: string; spec: vl.TopLevelSpec }>): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  const files: string[] = [];
  const svgs: string[] = [];
  for (const p of plots) {
    const svg = await renderSvg(p.spec);
    const f = join(dir, `${p.name}.svg`);
    writeFileSync(f, svg);
    files.push(f);
    svgs.push(`<figure>${svg}</figure>`);
  }
  const html = `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}figure{display:inline-block;margin:1em}pre{background:#f4f4f4;padding:1em;overflow:auto}</style>
</head><body><h1>${esc(title)}</h1>${svgs.join('\n')}<h2>Numbers</h2><pre>${esc(JSON.stringify(summary, null, 2))}</pre></body></html>\n`;
  const f = join(dir, 'report.html');
  writeFileSync(f, html);
  files.push(f);
  return files;
}
