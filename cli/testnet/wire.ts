/**
 * What the link capture saw, network-wide: every frame each node sent or received, by protocol
 * and on-wire length. Size leaks nothing only if each protocol shows a single length: the
 * Sphinx packets between all nodes, and the mailbox items from gateways to their clients.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readCapturedLengths } from '../../runtime/link/index.ts';

export interface ProtocolWire {
  /** directed links (node × direction × neighbour) that carried frames of this protocol */
  readonly links: number;
  readonly frames: number;
  /** on-wire frame length (length prefix + frame) → frames */
  readonly lengths: Record<string, number>;
}

export interface WireReport {
  /** processes whose links were captured (mixes, gateways, clients) */
  readonly nodes: number;
  /** protocol id → what crossed the links on it */
  readonly protocols: Record<string, ProtocolWire>;
}

export function summarizeCapture(dir: string): WireReport {
  const protocols: Record<string, { links: number; frames: number; lengths: Record<string, number> }> = {};
  let nodes = 0;
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.lengths.json'))) {
      nodes++;
      for (const [key, hist] of Object.entries(readCapturedLengths(join(dir, f)).links)) {
        const protocol = key.split(' ')[0]!;
        const p = (protocols[protocol] ??= { links: 0, frames: 0, lengths: {} });
        p.links++;
        for (const [len, n] of Object.entries(hist)) {
          p.lengths[len] = (p.lengths[len] ?? 0) + n;
          p.frames += n;
        }
      }
    }
  }
  return { nodes, protocols };
}

/** True when every captured protocol used exactly one frame length. */
export function oneLengthPerProtocol(w: WireReport): boolean {
  const ps = Object.values(w.protocols);
  return ps.length > 0 && ps.every((p) => Object.keys(p.lengths).length === 1);
}
