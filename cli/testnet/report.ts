/** The testnet's final report: one row per message, totals, chaos and wire checks, and a table for humans. */
import type { AuthorityOutageReport } from './authority-outage.ts';
import type { NetworkReport } from './netns.ts';
import type { ReplayReport } from './replay.ts';
import { soakLines, type SoakReport } from './soak.ts';
import { sizeLeaks, type WireReport } from './wire.ts';

export type MessagePath = 'overlay' | 'smtp-fallback' | 'refused';

export interface MessageReport {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly bytes: number;
  /** The path the client took (from its status), or the expected one if it never said. */
  readonly path: MessagePath;
  /** What the run expected for this message. */
  readonly expected: MessagePath;
  /** True only when the bytes in the recipient's mailbox equal the bytes submitted. */
  readonly intact: boolean;
  /** Copies found in the recipient's mailbox (1 is right for a delivered message, 0 for a refused one). */
  readonly copies: number;
  readonly latency_s: number | null;
  readonly ok: boolean;
  readonly note: string;
}

export interface TestnetReport {
  readonly ok: boolean;
  readonly wall_s: number;
  readonly topology: Record<string, unknown>;
  readonly messages: readonly MessageReport[];
  readonly totals: {
    readonly messages: number;
    readonly ok: number;
    readonly overlay: number;
    readonly smtp_fallback: number;
    readonly refused: number;
    readonly intact: number;
    readonly latency_mean_s: number | null;
    readonly latency_max_s: number | null;
  };
  readonly chaos: ChaosReport;
  /** the link capture's summary (null without --capture) */
  readonly wire: WireReport | null;
  /** the replay check (null without --replay) */
  readonly replay: ReplayReport | null;
  /** --soak: memory per daemon and the hops' stores at both ends (null without --soak) */
  readonly soak: SoakReport | null;
  /** how the users' tokens came to their contacts */
  readonly tokens: TokensReport;
  readonly run_dir: string | null;
  /** where the nodes ran: loopback, or one network namespace each (--netns) with its links' delay and loss */
  readonly network: NetworkReport;
}

export interface TokensReport {
  /** "client": each recipient requested its tokens from its own gateway through its client (blinded) */
  readonly issued_via: 'client';
  /** one bundle per (recipient, contact): `client tokens export --for contact`, requesting what it lacked */
  readonly bundles: readonly { readonly recipient: string; readonly contact: string; readonly tokens: number; readonly export_ms: number }[];
}

export interface ChaosReport {
  /** mixes SIGKILLed mid-run */
  readonly killed: readonly string[];
  /** processes SIGKILLed and started again with the same config */
  readonly restarted: readonly { readonly name: string; readonly down_s: number }[];
  readonly mx_outage: { readonly domain: string; readonly down_s: number; readonly handoff_failures: number } | null;
  /** --authority-outage: every authority down, mail sent meanwhile, and the epoch followed once they were back */
  readonly authority_outage: AuthorityOutageReport | null;
  /** chaos steps that could not be carried out (the run fails) */
  readonly errors: readonly string[];
}

export function totals(messages: readonly MessageReport[]): TestnetReport['totals'] {
  const lat = messages.map((m) => m.latency_s).filter((x): x is number => x !== null);
  return {
    messages: messages.length,
    ok: messages.filter((m) => m.ok).length,
    overlay: messages.filter((m) => m.path === 'overlay').length,
    smtp_fallback: messages.filter((m) => m.path === 'smtp-fallback').length,
    refused: messages.filter((m) => m.path === 'refused').length,
    intact: messages.filter((m) => m.intact).length,
    latency_mean_s: lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null,
    latency_max_s: lat.length ? Math.max(...lat) : null,
  };
}

export function renderTable(r: TestnetReport): string {
  const head = ['message', 'from', 'to', 'bytes', 'path', 'intact', 'copies', 'latency', 'result'];
  const rows = r.messages.map((m) => [
    m.id,
    m.from,
    m.to,
    String(m.bytes),
    m.path,
    m.intact ? 'yes' : m.expected === 'refused' ? '-' : 'NO',
    String(m.copies),
    m.latency_s === null ? '-' : `${m.latency_s.toFixed(1)} s`,
    m.ok ? 'ok' : `FAIL: ${m.note}`,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  const t = r.totals;
  return [
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    `${t.ok}/${t.messages} as expected: ${t.overlay} through the mixnet, ${t.smtp_fallback} by SMTP fallback, ${t.refused} refused; ` +
      `${t.intact} byte-identical in the recipient's Maildir` +
      (t.latency_mean_s === null ? '' : `; latency mean ${t.latency_mean_s.toFixed(1)} s, max ${t.latency_max_s!.toFixed(1)} s`),
    r.chaos.killed.length ? `killed mid-run (SIGKILL): ${r.chaos.killed.join(', ')}` : '',
    ...r.chaos.restarted.map((x) => `SIGKILLed and restarted mid-run: ${x.name} (down ${x.down_s.toFixed(1)} s)`),
    r.chaos.mx_outage
      ? `MX for ${r.chaos.mx_outage.domain} down ${r.chaos.mx_outage.down_s.toFixed(1)} s; its gateway counted ${r.chaos.mx_outage.handoff_failures} failed hand-offs and retried`
      : '',
    ...(r.chaos.authority_outage ? [authorityOutageLine(r.chaos.authority_outage)] : []),
    ...(r.soak ? soakLines(r.soak) : []),
    `tokens: requested by each user's client from its own gateway (blinded), one bundle per contact: ${r.tokens.bundles
      .map((b) => `${b.recipient} → ${b.contact} (${b.tokens})`)
      .join(', ')}`,
    ...r.chaos.errors.map((e) => `chaos step failed: ${e}`),
    ...(r.wire
      ? Object.entries(r.wire.protocols).map(
          ([proto, p]) =>
            `wire ${proto}: ${p.frames} frames on ${p.links} directed links; on-wire lengths ${Object.entries(p.flows)
              .map(
                ([flow, f]) =>
                  `${flow} ${Object.entries(f.lengths)
                    .map(([len, n]) => `${len} B × ${n}`)
                    .join(', ')}`,
              )
              .join('; ')}`,
        )
      : []),
    ...(r.wire
      ? [sizeLeaks(r.wire).length === 0 ? 'wire: one length per flow (size leaks nothing)' : `wire: MORE THAN ONE LENGTH: ${sizeLeaks(r.wire).join('; ')}`]
      : []),
    r.network.mode === 'netns'
      ? `network: ${r.network.hosts} hosts, one network namespace each, on ${r.network.subnet}` +
        (r.network.link_delay_ms || r.network.link_loss_pct
          ? `; every node's link delays ${r.network.link_delay_ms} ms and drops ${r.network.link_loss_pct} % of what it sends` +
            (r.network.loss_by ? ` (loss by ${r.network.loss_by})` : '') +
            (r.network.link_packets ? `; the links sent ${r.network.link_packets.sent} packets and dropped ${r.network.link_packets.dropped}` : '')
          : '')
      : '',
    r.replay ? `replay: ${r.replay.note}; dropped as replays: ${r.replay.dropped_as_replay}/${r.replay.injected}` : '',
    r.ok ? 'RESULT: every message went where it should, intact.' : 'RESULT: FAILED',
  ]
    .filter((l) => l !== '')
    .join('\n');
}

function authorityOutageLine(a: AuthorityOutageReport): string {
  return (
    `every directory authority down ${a.down_s.toFixed(1)} s (document of epoch ${a.document_epoch}; before issue 13 dropped ${a.old_expiry_s.toFixed(1)} s in, keys until ${a.valid_until_s.toFixed(1)} s in): ` +
    `${a.submitted_during} overlay messages submitted and ${a.delivered_during} delivered meanwhile, ${a.delivered_past_old_expiry} past the old expiry; ` +
    `back, every node and client followed to epoch ${a.first_epoch_after} within ${a.followed_after_s.toFixed(1)} s`
  );
}
