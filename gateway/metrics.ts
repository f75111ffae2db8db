/**
 * The gateway's own Prometheus metrics (prefix `postmix_gateway_`): intake, tokens, the hand-off
 * queue, client mailboxes and ACKs. The hop's metrics (pipeline, link, epochs, directory) are
 * runtime/hop/metrics.ts in the same registry. Counters are read at scrape time from the plain
 * counters of the parts that count (runtime/metrics.ts); the two hand-off histograms observe.
 */
import { Histogram, type Registry } from 'prom-client';
import type { MailboxCounters } from '../runtime/mailbox/server.ts';
import { scrapedCounter, scrapedCounters, scrapedGauge, scrapedGauges } from '../runtime/metrics.ts';
import type { GroupCommitCounters } from './group-commit.ts';
import type { IntakeCounters } from './intake.ts';
import type { QueueState } from './store.ts';
import { AckStatus } from '../proto/fragment/index.ts';

/** The gateway's own plain counters (the intake and the mailbox server keep theirs). */
export interface GatewayCounters {
  /** ACKs sent back, by status name. */
  readonly acks: Map<string, number>;
  /** ACKs that could not be sent, by reason. */
  readonly acksUnsent: Map<string, number>;
  /** Hand-off failures by kind. */
  readonly handoffFailures: { transient: number; permanent: number };
  tokensIssued: number;
  /**
   * ACKs whose commit ended after their hop delay: they left at the commit instead (the only
   * ones whose timing differs from a forwarded packet's; expected ≈ 1 − e^(−μ·commit time)).
   */
  acksPastDelay: number;
}

export function newGatewayCounters(): GatewayCounters {
  return { acks: new Map(), acksUnsent: new Map(), handoffFailures: { transient: 0, permanent: 0 }, tokensIssued: 0, acksPastDelay: 0 };
}

export interface GatewayMetricSources {
  readonly counters: GatewayCounters;
  intake(): IntakeCounters;
  commits(): GroupCommitCounters;
  mailbox(): MailboxCounters;
  queueDepth(): Record<QueueState, number>;
  partials(): number;
  /** rows of the spent set (hashes of spent tokens of key epochs that still verify) */
  spentTokens(): number;
}

export class GatewayMetrics {
  readonly handoffLatency: Histogram;
  readonly queueLatency: Histogram;

  constructor(
    readonly registry: Registry,
    src: GatewayMetricSources,
  ) {
    const r = registry;
    const c = src.counters;
    scrapedCounter(r, 'postmix_gateway_fragments_in_total', 'Fragments delivered to the mail queue', () => src.intake().fragmentsIn);
    scrapedCounters(r, 'postmix_gateway_acks_total', 'ACKs by status', 'status', () => c.acks);
    scrapedCounters(r, 'postmix_gateway_intake_dropped_total', 'Mail-queue payloads dropped without ACK', 'reason', () => src.intake().dropped);
    scrapedCounter(r, 'postmix_gateway_intake_commits_total', 'Intake transactions committed (group commit)', () => src.commits().commits);
    scrapedCounter(
      r,
      'postmix_gateway_intake_fsyncs_total',
      'fsyncs of the WAL after intake commits (group_commit_fsync = overlapped; each covers every batch committed before it)',
      () => src.commits().fsyncs,
    );
    scrapedCounter(
      r,
      'postmix_gateway_intake_committed_fragments_total',
      'Fragments answered after their commit (divided by intake_commits_total: the mean batch)',
      () => src.commits().committedFragments,
    );
    scrapedCounter(
      r,
      'postmix_gateway_intake_commit_failures_total',
      'Intake commits that failed (their fragments got no ACK)',
      () => src.commits().failedCommits,
    );
    scrapedCounter(r, 'postmix_gateway_messages_completed_total', 'Messages reassembled and queued', () => src.intake().messagesCompleted);
    scrapedCounter(
      r,
      'postmix_gateway_decoys_total',
      "Decoys (clients' payload-stream cover) received, each answered like a fragment",
      () => src.intake().decoys,
    );
    scrapedCounter(r, 'postmix_gateway_tokens_accepted_total', 'Tokens accepted (new bindings)', () => src.intake().tokensAccepted);
    scrapedCounters(r, 'postmix_gateway_tokens_rejected_total', 'Tokens refused by reason', 'reason', () => src.intake().tokensRejected);
    scrapedCounter(r, 'postmix_gateway_tokens_issued_total', 'Tokens evaluated for users', () => c.tokensIssued);
    scrapedGauges(r, 'postmix_gateway_queue_depth', 'Hand-off queue rows by state', 'state', () => src.queueDepth());
    scrapedGauge(r, 'postmix_gateway_reassembly_pending', 'Incomplete messages held', () => src.partials());
    scrapedGauge(r, 'postmix_gateway_spent_tokens', 'Spent-set rows (hashes of spent tokens of key epochs that still verify)', () => src.spentTokens());
    this.handoffLatency = new Histogram({
      name: 'postmix_gateway_handoff_seconds',
      help: 'One SMTP/LMTP hand-off (connect to 250)',
      buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers: [r],
    });
    this.queueLatency = new Histogram({
      name: 'postmix_gateway_queued_to_delivered_seconds',
      help: 'From queueing to MX acceptance',
      buckets: [0.01, 0.1, 1, 10, 60, 600, 3600, 86_400],
      registers: [r],
    });
    scrapedCounters(r, 'postmix_gateway_handoff_failures_total', 'Hand-off failures', 'kind', () => c.handoffFailures);
    scrapedCounter(r, 'postmix_gateway_mailbox_items_total', 'Items stored in client mailboxes', () => src.mailbox().stored);
    scrapedCounters(
      r,
      'postmix_gateway_mailbox_sent_total',
      'Frames written to subscribed mailbox streams (one per stream per pacer tick), by kind',
      'kind',
      () => src.mailbox().sent,
    );
    scrapedCounters(
      r,
      'postmix_gateway_mailbox_dropped_total',
      'Mailbox items dropped (full, expired, stored under another geometry)',
      'reason',
      () => src.mailbox().dropped,
    );
    scrapedCounters(r, 'postmix_gateway_acks_unsent_total', 'ACKs that could not be sent', 'reason', () => c.acksUnsent);
    scrapedCounter(
      r,
      'postmix_gateway_acks_past_delay_total',
      'ACKs whose commit ended after their hop delay (they left at the commit)',
      () => c.acksPastDelay,
    );
  }
}

/** AckStatus.TokenRefused → "token-refused": ACK statuses are labelled by name, not the wire's number. */
export function ackStatusLabel(s: AckStatus): string {
  return (AckStatus[s] ?? `status-${s}`).replace(/[A-Z]/g, (c: string, i: number) => (i ? '-' : '') + c.toLowerCase());
}
