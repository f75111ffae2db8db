/**
 * What the link capture saw, network-wide: every frame each node sent or received, by on-wire
 * length. A mixnet leaks nothing by size only if this is a single length.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readCapturedLengths } from '../../proto/link/index.ts';

export interface WireReport {
  /** processes whose links were captured (mixes, gateways, clients) */
  readonly nodes: number;
  /** directed links (node × direction × neighbour) that carried frames */
  readonly links: number;
  readonly frames: number;
  /** on-wire frame length (length prefix + packet) → frames */
  readonly lengths: Record<string, number>;
}

export function summarizeCapture(dir: string): WireReport {
  const lengths: Record<string, number> = {};
  let nodes = 0;
  let links = 0;
  let frames = 0;
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.lengths.json'))) {
      nodes++;
      for (const hist of Object.values(readCapturedLengths(join(dir, f)).links)) {
        links++;
        for (const [len, n] of Object.entries(hist)) {
          lengths[len] = (lengths[len] ?? 0) + n;
          frames += n;
        }
      }
    }
  }
  return { nodes, links, frames, lengths };
}
