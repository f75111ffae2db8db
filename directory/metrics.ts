/**
 * An authority's Prometheus metrics (prefix `postmix_directory_`), its own registry so several
 * can share a process. The authority and its HTTP server count into plain maps (`count*`); the
 * metrics read them at scrape time, as every role does (runtime/metrics.ts).
 */
import type { Registry } from 'prom-client';
import { bump, labelKey, newRegistry, scrapedCounter, scrapedCounters, scrapedGauge } from '../runtime/metrics.ts';

export class DirectoryMetrics {
  readonly registry: Registry;
  private readonly descriptors = new Map<string, number>();
  private readonly rejected = new Map<string, number>();
  private readonly peerErrors = new Map<string, number>();
  private readonly requests = new Map<string, number>();
  private withheld = 0;
  private published = 0;
  private signatures = 0;
  private latestEpoch = 0;

  constructor(defaults = false) {
    const r = (this.registry = newRegistry('postmix_directory', defaults));
    scrapedCounters(
      r,
      'postmix_directory_descriptors_total',
      'Descriptor uploads by result (accepted, duplicate, or the rejection reason)',
      'result',
      () => this.descriptors,
    );
    scrapedCounters(
      r,
      'postmix_directory_rejected_total',
      'Untrusted objects rejected, by kind (descriptor, vote, signature, document) and reason',
      ['kind', 'reason'],
      () => this.rejected,
    );
    scrapedCounter(
      r,
      'postmix_directory_documents_withheld_total',
      'Epochs left without a document because it could not route (a layer without a mix)',
      () => this.withheld,
    );
    scrapedCounter(r, 'postmix_directory_documents_published_total', 'Documents published or re-published with more signatures', () => this.published);
    scrapedGauge(r, 'postmix_directory_document_signatures', 'Signatures on the newest published document', () => this.signatures);
    scrapedGauge(r, 'postmix_directory_latest_document_epoch', 'Epoch of the newest published document', () => this.latestEpoch);
    scrapedCounters(
      r,
      'postmix_directory_peer_errors_total',
      'Failed fetches from peer authorities, by phase (vote, signature, document)',
      'phase',
      () => this.peerErrors,
    );
    scrapedCounters(r, 'postmix_directory_http_requests_total', 'HTTP requests by route and status', ['route', 'status'], () => this.requests);
  }

  countDescriptor(result: string): void {
    bump(this.descriptors, result);
  }

  countRejected(kind: string, reason: string): void {
    bump(this.rejected, labelKey(kind, reason));
  }

  countWithheld(): void {
    this.withheld++;
  }

  countPublished(): void {
    this.published++;
  }

  /** The newest published document: its signatures and epoch. */
  newest(signatures: number, epoch: number): void {
    this.signatures = signatures;
    this.latestEpoch = epoch;
  }

  countPeerError(phase: string): void {
    bump(this.peerErrors, phase);
  }

  countRequest(route: string, status: number): void {
    bump(this.requests, labelKey(route, String(status)));
  }
}
