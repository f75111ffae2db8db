/** prom-client metrics of one authority (its own Registry, so several can share a process). */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export class DirectoryMetrics {
  readonly registry = new Registry();
  readonly descriptors = new Counter({
    name: 'postmix_directory_descriptors_total',
    help: 'Descriptor uploads by result (accepted, duplicate, or the rejection reason)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'postmix_directory_rejected_total',
    help: 'Untrusted objects rejected, by kind (descriptor, vote, signature, document) and reason',
    labelNames: ['kind', 'reason'] as const,
    registers: [this.registry],
  });
  readonly withheld = new Counter({
    name: 'postmix_directory_documents_withheld_total',
    help: 'Epochs left without a document because it could not route (a layer without a mix)',
    registers: [this.registry],
  });
  readonly published = new Counter({
    name: 'postmix_directory_documents_published_total',
    help: 'Documents published or re-published with more signatures',
    registers: [this.registry],
  });
  readonly signatures = new Gauge({
    name: 'postmix_directory_document_signatures',
    help: 'Signatures on the newest published document',
    registers: [this.registry],
  });
  readonly latestEpoch = new Gauge({
    name: 'postmix_directory_latest_document_epoch',
    help: 'Epoch of the newest published document',
    registers: [this.registry],
  });
  readonly peerErrors = new Counter({
    name: 'postmix_directory_peer_errors_total',
    help: 'Failed fetches from peer authorities, by phase (vote, signature, document)',
    labelNames: ['phase'] as const,
    registers: [this.registry],
  });
  readonly http = new Counter({
    name: 'postmix_directory_http_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
  });

  constructor(defaults = false) {
    if (defaults) collectDefaultMetrics({ register: this.registry });
  }
}
