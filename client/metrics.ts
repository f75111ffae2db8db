/**
 * The client's Prometheus metrics (prefix `postmix_client_`), read at scrape time from the core's
 * plain counters (runtime/metrics.ts).
 */
import type { Registry } from 'prom-client';
import { scrapedCounter, scrapedCounters, scrapedGauge } from '../runtime/metrics.ts';
import type { LinkCounters } from '../runtime/link/link.ts';
import type { ClientCore } from './core.ts';

/** What the client's overlay says of its network document, when it has an overlay. */
export interface DocumentState {
  /** epoch of the verified document routing now (undefined: none usable) */
  readonly epoch: number | undefined;
  /** routing by a document older than the epoch (the authorities published none since, or none reached us) */
  readonly stale: boolean;
}

/** `link`: the overlay link's counters, when the client has one; `document`: its document state. */
export function registerClientMetrics(r: Registry, core: ClientCore, link?: () => LinkCounters | undefined, document?: () => DocumentState | undefined): void {
  const c = core.counters;
  const s = core.stats;
  scrapedCounter(r, 'postmix_client_messages_accepted_total', 'messages accepted (250)', () => c.accepted);
  scrapedCounter(r, 'postmix_client_recipients_refused_total', 'recipients refused at RCPT TO', () => c.refused);
  scrapedCounter(r, 'postmix_client_smtp_relayed_total', 'recipients relayed through the smarthost', () => c.smtpRelayed);
  scrapedCounter(r, 'postmix_client_bounced_total', 'recipients bounced', () => c.bounced);
  scrapedCounter(r, 'postmix_client_delivered_total', 'recipients delivered (all ACKs, or smarthost 250)', () => c.delivered);
  scrapedCounters(r, 'postmix_client_packets_sent_total', 'packets sent by stream kind', 'kind', () => ({
    real: s.real,
    decoy: s.decoy,
    drop: s.drop,
    loop: s.loop,
  }));
  scrapedGauge(r, 'postmix_client_outbox_active_messages', 'messages in the outbox not yet delivered or bounced', () => core.outbox.activeMessages().length);
  scrapedCounter(r, 'postmix_client_fragments_resent_total', 'fragments resent after an ACK timeout', () => s.resent);
  scrapedCounter(r, 'postmix_client_acks_total', 'ACKs received', () => s.acks);
  scrapedCounter(r, 'postmix_client_loops_returned_total', 'loop cover packets that came back', () => s.loopsReturned);
  scrapedCounter(r, 'postmix_client_loops_lost_total', 'loop cover packets not back in time (their mixes are blamed)', () => s.loopsLost);
  scrapedCounter(r, 'postmix_client_decoys_returned_total', "decoys whose gateway's reply came back", () => s.decoysReturned);
  scrapedCounter(r, 'postmix_client_decoys_lost_total', 'decoys whose reply did not come back in time (counted only)', () => s.decoysLost);
  scrapedCounter(
    r,
    'postmix_client_scheduler_gaps_total',
    'wake-ups more than a second late (stall, suspend): streams restarted, nothing sent in a burst',
    () => s.gaps,
  );
  scrapedCounter(
    r,
    'postmix_client_packets_built_in_slot_total',
    'cover packets built inside their slot because none built ahead was usable there (first slot, new document, two events in one wake-up)',
    () => s.builtInSlot,
  );
  scrapedCounter(
    r,
    'postmix_client_packets_unprepared_total',
    'real packets built ahead that did not leave (their epoch ended before their slot, their recipient stopped): built again',
    () => s.unprepared,
  );
  scrapedCounter(r, 'postmix_client_link_dial_failures_total', 'failed dials to layer-1 mixes and the home gateway', () => link?.()?.dialFailures ?? 0);
  scrapedGauge(r, 'postmix_client_document_epoch', 'epoch of the network document routing now (-1: none usable)', () => document?.()?.epoch ?? -1);
  scrapedGauge(r, 'postmix_client_document_stale', '1 while routing by a document older than the epoch (authorities unreachable or late), else 0', () =>
    document?.()?.stale ? 1 : 0,
  );
  scrapedCounter(
    r,
    'postmix_client_link_wrong_peer_total',
    "dials answered by another peer than the document's (refused: issue 11 point 7)",
    () => link?.()?.wrongPeer ?? 0,
  );
}
