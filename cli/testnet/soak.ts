/**
 * `--soak D`: steady mail for D across many epochs, and what it cost: each daemon's resident
 * memory at the start and the end (from /proc, as `ps` reads it), and each mix's and gateway's
 * key directory and replay store, from its own metrics, at both ends, with what epoch expiry
 * removed meanwhile. Stores that do not shrink as epochs pass grow without bound; the soak fails
 * then.
 */
import { readFileSync } from 'node:fs';
import { MAX_KEYS_AHEAD } from '../../proto/pki/index.ts';
import { scrape, sumMetric } from './metrics.ts';
import type { NodeRecord } from './network.ts';
import type { Supervisor } from './processes.ts';

/**
 * The most Sphinx key files a hop keeps: the previous epoch's (in grace), this one's, and those of
 * the descriptors uploaded ahead for the next two epochs (each E … E + MAX_KEYS_AHEAD).
 */
export const KEY_FILES_BOUND = 1 + 1 + 2 + MAX_KEYS_AHEAD;
/** The most replay tag sets: this epoch's and, in the grace window, the previous one's. */
export const REPLAY_EPOCHS_BOUND = 2;

export interface DaemonMemory {
  readonly name: string;
  readonly rss_start_bytes: number;
  readonly rss_end_bytes: number;
}

export interface HopStores {
  readonly name: string;
  readonly key_files_start: number;
  readonly key_files_end: number;
  readonly replay_epochs_start: number;
  readonly replay_epochs_end: number;
  /** deleted / dropped by epoch expiry during the soak */
  readonly key_files_deleted: number;
  readonly replay_sets_dropped: number;
}

export interface SoakReport {
  readonly duration_s: number;
  /** epoch boundaries crossed */
  readonly epochs: number;
  readonly messages: number;
  readonly daemons: readonly DaemonMemory[];
  readonly stores: readonly HopStores[];
  readonly bounds: { readonly key_files: number; readonly replay_epochs: number };
  /** true when every hop's stores ended within the bounds and expiry removed from them as epochs passed */
  readonly bounded: boolean;
  readonly problems: readonly string[];
  /** seconds after the soak's end until every store was within its bound (a prune slipped to the next epoch on a loaded machine) */
  readonly settle_s: number;
}

/** Resident memory of a process (VmRSS), in bytes; null when it is gone. */
export function rssBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

interface Snapshot {
  readonly at: number;
  readonly rss: Map<string, number>;
  readonly stores: Map<string, { keyFiles: number; replayEpochs: number; deleted: number; dropped: number }>;
}

const prefixOf = (n: NodeRecord) => (n.kind === 'mix' ? 'postmix_mixnode' : 'postmix_gateway');

export class Soak {
  private start: Snapshot | undefined;

  constructor(
    private readonly seconds: number,
    private readonly epochLength: number,
    private readonly nodes: readonly NodeRecord[],
    private readonly sup: Supervisor,
    private readonly log: (s: string) => void,
  ) {}

  private async snapshot(): Promise<Snapshot> {
    const rss = new Map<string, number>();
    for (const p of this.sup.list()) {
      const r = p.status ? null : rssBytes(p.child.pid);
      if (r !== null) rss.set(p.name, r);
    }
    const stores: Snapshot['stores'] = new Map();
    await Promise.all(
      this.nodes.map(async (n) => {
        // a loaded machine can miss a 3 s scrape: ask again before calling the hop silent
        let s = null;
        for (let i = 0; i < 3 && !s; i++) s = await scrape(n.metricsUrl).catch(() => null);
        if (!s) return;
        const m = (x: string) => sumMetric(s, `${prefixOf(n)}_${x}`);
        stores.set(n.name, {
          keyFiles: m('sphinx_key_files'),
          replayEpochs: m('replay_epochs'),
          deleted: m('sphinx_key_files_deleted_total'),
          dropped: m('replay_sets_dropped_total'),
        });
      }),
    );
    return { at: Date.now(), rss, stores };
  }

  async begin(): Promise<void> {
    this.start = await this.snapshot();
    const mb = [...this.start.rss.values()].reduce((a, b) => a + b, 0) / 2 ** 20;
    this.log(
      `soak: steady mail for ${this.seconds} s (${(this.seconds / this.epochLength).toFixed(1)} epochs); ${this.start.rss.size} daemons use ${mb.toFixed(0)} MB resident`,
    );
  }

  /**
   * The end snapshot. A hop prunes in the first round after the grace window, which on a loaded
   * machine can slip to the next epoch (then two are pruned at once): the soak looks again, for up
   * to two epochs, until every store is within its bound. Stores that grow never get there.
   */
  async end(messages: number): Promise<SoakReport> {
    const until = Date.now() + 2 * this.epochLength * 1000;
    const ended = Date.now();
    for (;;) {
      const r = this.compare(messages, await this.snapshot());
      if (r.bounded || Date.now() > until) {
        const report: SoakReport = { ...r, settle_s: (Date.now() - ended) / 1000 };
        this.log(
          `soak over after ${report.duration_s.toFixed(0)} s, ${report.epochs} epochs: ` +
            (report.bounded
              ? `every store bounded (≤ ${KEY_FILES_BOUND} key files, ≤ ${REPLAY_EPOCHS_BOUND} replay sets per hop` +
                (report.settle_s > 0.5 ? `, ${report.settle_s.toFixed(1)} s after the end: a prune slipped to the next round)` : ')')
              : `NOT BOUNDED: ${report.problems.join('; ')}`),
        );
        return report;
      }
      await new Promise((res) => setTimeout(res, 1000));
    }
  }

  private compare(messages: number, b: Snapshot): Omit<SoakReport, 'settle_s'> {
    const a = this.start!;
    const L = this.epochLength * 1000;
    const epochs = Math.floor(b.at / L) - Math.floor(a.at / L);
    const daemons: DaemonMemory[] = [...a.rss]
      .filter(([name]) => b.rss.has(name))
      .map(([name, start]) => ({ name, rss_start_bytes: start, rss_end_bytes: b.rss.get(name)! }));
    const stores: HopStores[] = [];
    const problems: string[] = [];
    for (const { name } of this.nodes) {
      const s = a.stores.get(name);
      const e = b.stores.get(name);
      // a node killed or restarted meanwhile has no comparable ends; a live one that does not answer is a problem
      if (!s || !e || e.deleted < s.deleted) {
        if (!this.sup.get(name)?.status) problems.push(`${name}: no metrics at ${!s ? 'the start' : 'the end'} of the soak`);
        continue;
      }
      const h: HopStores = {
        name,
        key_files_start: s.keyFiles,
        key_files_end: e.keyFiles,
        replay_epochs_start: s.replayEpochs,
        replay_epochs_end: e.replayEpochs,
        key_files_deleted: e.deleted - s.deleted,
        replay_sets_dropped: e.dropped - s.dropped,
      };
      stores.push(h);
      if (h.key_files_end > KEY_FILES_BOUND) problems.push(`${name}: ${h.key_files_end} Sphinx key files (bound ${KEY_FILES_BOUND})`);
      if (h.replay_epochs_end > REPLAY_EPOCHS_BOUND) problems.push(`${name}: ${h.replay_epochs_end} replay tag sets (bound ${REPLAY_EPOCHS_BOUND})`);
      // one key file per epoch ends (the last boundary's grace may not be over yet)
      if (h.key_files_deleted < epochs - 1) problems.push(`${name}: ${h.key_files_deleted} Sphinx key files deleted in ${epochs} epochs`);
      if (epochs >= 2 && h.replay_sets_dropped < 1) problems.push(`${name}: no replay tag set dropped in ${epochs} epochs`);
    }
    if (stores.length === 0) problems.push('no mix or gateway answered at both ends of the soak');
    return {
      duration_s: (b.at - a.at) / 1000,
      epochs,
      messages,
      daemons,
      stores,
      bounds: { key_files: KEY_FILES_BOUND, replay_epochs: REPLAY_EPOCHS_BOUND },
      bounded: problems.length === 0,
      problems,
    };
  }
}

/** The soak's lines of the final table. */
export function soakLines(r: SoakReport): string[] {
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MB`;
  return [
    `soak: ${r.duration_s.toFixed(0)} s, ${r.epochs} epochs, ${r.messages} messages; resident memory start → end:`,
    ...r.daemons.map((d) => `  ${d.name.padEnd(14)} ${mb(d.rss_start_bytes).padStart(9)} → ${mb(d.rss_end_bytes).padStart(9)}`),
    `soak stores (key files / replay sets, start → end; removed by expiry):`,
    ...r.stores.map(
      (s) =>
        `  ${s.name.padEnd(14)} keys ${s.key_files_start} → ${s.key_files_end} (${s.key_files_deleted} deleted), replay sets ${s.replay_epochs_start} → ${s.replay_epochs_end} (${s.replay_sets_dropped} dropped)`,
    ),
    r.bounded
      ? `soak: every store bounded (≤ ${r.bounds.key_files} key files, ≤ ${r.bounds.replay_epochs} replay sets)`
      : `soak: NOT BOUNDED: ${r.problems.join('; ')}`,
  ];
}
