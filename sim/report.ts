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

/** Axis titles with units, for scenario fields and sweep metrics. */
export const UNITS: Record<string, string> = {
  clients: 'clients',
  layers: 'mix layers',
  layerSize: 'mixes per layer',
  rate: 'λ_P (packets/s per client)',
  realRate: 'real messages/s per client',
  meanDelay: 'mean per-hop delay 1/μ (s)',
  loopRate: 'λ_L (packets/s per client)',
  dropRate: 'λ_D (packets/s per client)',
  mixLoopRate: 'λ_M (packets/s per mix)',
  gatewayLoopRate: 'λ_G (packets/s per gateway)',
  linkLatency: 'link latency (s)',
  processingTime: 'processing time (s)',
  compromised: 'fraction of mixes compromised',
  compromisedGateways: 'fraction of gateways compromised',
  messageBytes: 'message size (bytes)',
  loss: 'loss per hop',
  gateways: 'gateways',
  entropy_mean: 'per-packet entropy (bits)',
  entropy_p5: 'per-packet entropy, 5th percentile (bits)',
  sender_entropy_mean: 'sender entropy (bits)',
  latency_mean: 'latency, mean (s)',
  latency_p95: 'latency, 95th percentile (s)',
  message_delivered_mean: 'message latency to the gateway, mean (s)',
  message_acked_mean: 'message latency to the last ACK, mean (s)',
  message_acked_p95: 'message latency to the last ACK, p95 (s)',
  cover_per_real: 'cover packets per real packet',
  downlink_per_real: 'downlink frames per real packet',
  timing_top1: 'timing attack top-1 accuracy',
  sda_time_to_name_s: 'SDA: time to name the contacts (s)',
  home_gateway_auc: 'home gateway: AUC of "client sent" from its mailbox',
  withholding_messages_to_sure: 'ACK withholding: messages until sure',
  compromise_message_entropy: 'message sender entropy, compromised gateway (bits)',
};

/** Where a metric has a guessing baseline, the CSV column that holds it. */
export const BASELINES: Record<string, { column: string; label: string }> = {
  sender_entropy_mean: { column: 'sender_entropy_max', label: 'log2 N (no information)' },
  timing_top1: { column: 'timing_baseline_top1', label: 'guessing (1/N)' },
};

/**
 * A sweep plot: the metric's mean against the first varied parameter, one line per value of
 * the second, 95 % error bars from the replicates, and the guessing baseline where one exists.
 */
export function sweepSpec(rows: Row[], x: string, y: string, color?: string): vl.TopLevelSpec {
  const enc = {
    x: { field: x, type: 'quantitative', title: UNITS[x] ?? x, scale: { zero: false } },
    ...(color ? { color: { field: color, type: 'nominal', title: UNITS[color] ?? color } } : {}),
  };
  const layers: unknown[] = [
    { mark: { type: 'line', point: true }, encoding: { ...enc, y: { field: y, type: 'quantitative', title: UNITS[y] ?? y } } },
    { mark: { type: 'errorbar', ticks: true }, encoding: { ...enc, y: { field: `${y}_lo`, type: 'quantitative' }, y2: { field: `${y}_hi` } } },
  ];
  const base = BASELINES[y];
  if (base && rows.some((r) => typeof r[base.column] === 'number'))
    layers.push({
      mark: { type: 'line', strokeDash: [4, 4], color: 'gray' },
      encoding: { x: enc.x, y: { field: base.column, type: 'quantitative' }, detail: color ? { field: color } : undefined },
    });
  return {
    title: { text: `${UNITS[y] ?? y}`, subtitle: `mean and 95% CI over replicates${base ? `; dashed: ${base.label}` : ''}` },
    width: 480,
    height: 280,
    data: { values: rows },
    layer: layers,
  } as vl.TopLevelSpec;
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
