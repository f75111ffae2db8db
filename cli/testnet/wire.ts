/**
 * What the link capture saw, network-wide: every frame each node sent or received, by protocol,
 * by flow (who sent it to whom: mix, gateway or client) and on-wire length. Size leaks nothing
 * only if every flow of a protocol shows a single length, and the packet protocol a single length
 * everywhere (a mix's inputs and outputs must look alike). The mailbox protocol has two flows of
 * different lengths by design: the one subscribe frame a client sends when it opens its stream,
 * and the item frames its gateway sends back, ACK, loop or dummy.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readCapturedLengths, SPHINX_PROTOCOL } from '../../runtime/link/index.ts';

export type NodeKind = 'mix' | 'gateway' | 'client';

export interface FlowWire {
  readonly frames: number;
  /** on-wire frame length (length prefix + frame) → frames */
  readonly lengths: Record<string, number>;
}

export interface ProtocolWire extends FlowWire {
  /** directed links (node × direction × neighbour) that carried frames of this protocol */
  readonly links: number;
  /** by flow, e.g. "gateway→client" */
  readonly flows: Record<string, FlowWire>;
}

export interface WireReport {
  /** processes whose links were captured (mixes, gateways, clients) */
  readonly nodes: number;
  /** protocol id → what crossed the links on it */
  readonly protocols: Record<string, ProtocolWire>;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * `kindOf` names a peer id's kind (the testnet knows its mixes and gateways; anyone else is a
 * client). Each frame is counted at both ends; a flow is named sender→receiver.
 */
export function summarizeCapture(dir: string, kindOf: (peerId: string) => NodeKind): WireReport {
  const protocols: Record<string, Mutable<ProtocolWire>> = {};
  let nodes = 0;
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.lengths.json'))) {
      nodes++;
      const captured = readCapturedLengths(join(dir, f));
      for (const [key, hist] of Object.entries(captured.links)) {
        const [protocol, direction, neighbour] = key.split(' ') as [string, string, string];
        const [from, to] = direction === 'out' ? [captured.peer, neighbour] : [neighbour, captured.peer];
        const flow = `${kindOf(from)}→${kindOf(to)}`;
        const p = (protocols[protocol] ??= { links: 0, frames: 0, lengths: {}, flows: {} });
        const fl = (p.flows[flow] ??= { frames: 0, lengths: {} }) as Mutable<FlowWire>;
        p.links++;
        for (const [len, n] of Object.entries(hist)) {
          p.lengths[len] = (p.lengths[len] ?? 0) + n;
          p.frames += n;
          fl.lengths[len] = (fl.lengths[len] ?? 0) + n;
          fl.frames += n;
        }
      }
    }
  }
  return { nodes, protocols };
}

/** What the capture shows a passive observer could tell by size (empty: nothing). */
export function sizeLeaks(w: WireReport): string[] {
  const out: string[] = [];
  if (Object.keys(w.protocols).length === 0) out.push('nothing was captured');
  for (const [proto, p] of Object.entries(w.protocols)) {
    if (proto === SPHINX_PROTOCOL && Object.keys(p.lengths).length !== 1) out.push(`${proto}: ${Object.keys(p.lengths).join(', ')} bytes`);
    for (const [flow, f] of Object.entries(p.flows))
      if (Object.keys(f.lengths).length !== 1) out.push(`${proto} ${flow}: ${Object.keys(f.lengths).join(', ')} bytes`);
  }
  return out;
}
