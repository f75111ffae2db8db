/** `postmix client status`: messages in flight, progress per recipient, path and why, time left. */
import { expectedRouteDelaySeconds, type MixingParams } from '../proto/mixing/params.ts';
import type { GatewaySighting } from './gateway-memory.ts';
import type { Progress } from './outbox.ts';

export function progressBar(done: number, total: number, width = 20): string {
  const f = total > 0 ? Math.round((done / total) * width) : 0;
  return `[${'#'.repeat(f)}${'-'.repeat(width - f)}]`;
}

export interface EtaInput {
  readonly mixing: MixingParams;
  /** mix layers in the network (the route has layers + 1 hops each way) */
  readonly layers: number;
}

/**
 * Expected seconds until every fragment of a recipient is ACKed: the fragments not yet ACKed go
 * out at the payload rate λ_P (shared by every recipient queued before), then one forward and one
 * reply route's expected mixing delay (Erlang mean).
 */
export function expectedSecondsLeft(remaining: number, queuedBefore: number, e: EtaInput): number {
  if (remaining <= 0) return 0;
  const send = e.mixing.lambdaP > 0 ? (remaining + queuedBefore) / e.mixing.lambdaP : Infinity;
  return send + expectedRouteDelaySeconds(2 * (e.layers + 1), e.mixing.mu);
}

function fmtSeconds(s: number): string {
  if (!Number.isFinite(s)) return 'unknown';
  if (s < 90) return `${Math.ceil(s)}s`;
  if (s < 5400) return `${Math.round(s / 60)}min`;
  return `${(s / 3600).toFixed(1)}h`;
}

/** The domains whose gateway is missing, as a warning block (empty when none). */
export function formatLostGateways(lost: readonly GatewaySighting[], onLoss: 'refuse' | 'smtp', hasDocument: boolean): string {
  if (lost.length === 0) return '';
  const lines = [
    hasDocument
      ? 'GATEWAY MISSING: these domains had a postmix gateway, and the current network document lists none:'
      : 'GATEWAY UNKNOWN: no network document is available; these domains had a postmix gateway:',
  ];
  for (const s of lost) {
    const when =
      s.source === 'document' ? `listed up to network epoch ${s.lastEpoch} (${new Date(s.lastSeenAt).toISOString()})` : 'known from tokens in the wallet';
    const refused = s.refused > 0 ? `; ${s.refused} recipient(s) refused, last ${new Date(s.lastRefusedAt ?? 0).toISOString()}` : '';
    lines.push(`  ${s.domain}  ${when}${refused}`);
  }
  lines.push(
    onLoss === 'refuse'
      ? '  mail to them is refused, not relayed without the overlay (routing.on_gateway_loss = "refuse")'
      : '  mail to them goes through the SMTP smarthost, NOT anonymously (routing.on_gateway_loss = "smtp")',
  );
  return lines.join('\n') + '\n\n';
}

export function formatStatus(progress: readonly Progress[], eta: EtaInput | null, now = Date.now()): string {
  if (progress.length === 0) return 'outbox empty: no message in flight\n';
  const lines: string[] = [];
  let queued = 0;
  for (const p of progress) {
    const m = p.message;
    const age = fmtSeconds((now - m.createdAt) / 1000);
    lines.push(`${m.id}  from <${m.mailFrom}>  ${m.size} bytes  accepted ${age} ago${m.state === 'done' ? '  (done)' : ''}`);
    for (const r of p.recipients) {
      let state: string;
      if (r.path === 'overlay' && r.state === 'active' && r.fragmentCount === 0) {
        state = 'HELD: waiting for a valid network document (nothing sent, no attempt counted)';
      } else if (r.path === 'overlay') {
        const remaining = r.fragmentCount - r.acked;
        const left = r.state === 'active' ? `  ~${eta ? fmtSeconds(expectedSecondsLeft(remaining, queued, eta)) : 'unknown (no network document)'} left` : '';
        if (r.state === 'active') queued += remaining;
        state = `${progressBar(r.acked, r.fragmentCount)} ${r.acked}/${r.fragmentCount} fragments ACKed${r.inflight ? ` (${r.inflight} in flight)` : ''}${left}`;
      } else {
        state = r.state === 'active' ? `waiting for the smarthost (${r.attempts} attempt(s) so far)` : '';
      }
      const st = r.state === 'active' ? '' : ` ${r.state.toUpperCase()}`;
      lines.push(`  <${r.address}>  ${r.path === 'overlay' ? 'OVERLAY' : 'SMTP'}${st}  ${state}`.trimEnd());
      lines.push(`      why: ${r.reason}`);
      if (r.error) lines.push(`      note: ${r.error}`);
    }
  }
  return lines.join('\n') + '\n';
}
