/**
 * What every role uses to talk to the authorities over HTTP (docs/spec/pki.md §7):
 * `fetchDocument` (GET, verify, first good answer wins), `uploadDescriptor` (POST to every
 * authority), and `DocumentCache` (the last good document on disk, re-verified on load).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomBytes } from 'node:crypto';
import { LIMITS, type GatewayInfo, type Role } from '../../proto/pki/codec.ts';
import { buildDescriptor } from '../../proto/pki/descriptor.ts';
import { epochAt, keyEpochsOfDescriptor, type EpochConfig } from '../../proto/pki/epoch.ts';
import { verifyDocument, type VerifiedDocument, type VerifyOptions } from '../../proto/pki/document.ts';
import { isPkiError, PkiError, type PkiReason, RejectionCounter } from '../../proto/pki/errors.ts';
import { bytesEqual } from '../../proto/pki/keys.ts';
import { type KeyStore } from './key-store.ts';

export const DOCUMENT_CONTENT_TYPE = 'application/x-postmix-document';
export const DESCRIPTOR_CONTENT_TYPE = 'application/x-postmix-descriptor';
export const VOTE_CONTENT_TYPE = 'application/x-postmix-vote';

/** A document by epoch, or the current, next, or newest published up to the current epoch. */
export type Which = 'current' | 'next' | 'latest' | number;

function documentPath(which: Which): string {
  return typeof which === 'number' ? `/v1/document/${which}` : `/v1/document/${which}`;
}

/** Reads a response body with a hard size limit (never buffers more than `limit` bytes). */
export async function readLimited(res: Response, limit: number): Promise<Uint8Array> {
  const len = Number(res.headers.get('content-length') ?? '0');
  if (len > limit) {
    await res.body?.cancel();
    throw new PkiError('oversized', `response of ${len} bytes > limit ${limit}`);
  }
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      await reader.cancel();
      throw new PkiError('oversized', `response exceeds limit ${limit}`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

export interface FetchOptions extends VerifyOptions {
  /** Base URLs of the authorities, e.g. http://127.0.0.1:8080 */
  readonly urls: readonly string[];
  readonly timeoutMs?: number;
  readonly counter?: RejectionCounter;
}

export interface FetchFailure {
  readonly url: string;
  readonly reason: PkiReason | 'http';
  readonly message: string;
}

/**
 * Fetches a document from the authorities in turn and returns the first one that verifies.
 * Throws PkiError('unavailable') listing each authority's failure when none does.
 */
export async function fetchDocument(which: Which, opts: FetchOptions): Promise<VerifiedDocument> {
  const failures: FetchFailure[] = [];
  for (const url of opts.urls) {
    try {
      const res = await fetch(new URL(documentPath(which), url), {
        signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
        headers: { accept: DOCUMENT_CONTENT_TYPE },
      });
      if (res.status !== 200) {
        await res.body?.cancel();
        failures.push({ url, reason: 'http', message: `HTTP ${res.status}` });
        continue;
      }
      const bytes = await readLimited(res, LIMITS.documentBytes + 64 * 1024);
      return verifyDocument(bytes, opts);
    } catch (e) {
      if (isPkiError(e)) {
        opts.counter?.count(e.reason);
        failures.push({ url, reason: e.reason, message: e.message });
      } else failures.push({ url, reason: 'http', message: (e as Error).message });
    }
  }
  throw new PkiError('unavailable', failures.map((f) => `${f.url}: ${f.message}`).join('; ') || 'no authority URLs');
}

export interface UploadResult {
  readonly url: string;
  readonly ok: boolean;
  readonly status: number;
  /** 'accepted', 'duplicate', or the authority's rejection reason. */
  readonly result: string;
  readonly message: string;
}

/**
 * POSTs a SignedDescriptor to every authority; returns one result per authority (never throws).
 * A network failure is retried once (uploads are idempotent: a repeat answers 'duplicate'), which
 * also covers a pooled keep-alive connection the authority closed.
 */
export async function uploadDescriptor(urls: readonly string[], descriptor: Uint8Array, timeoutMs = 10_000): Promise<UploadResult[]> {
  const once = async (url: string): Promise<UploadResult> => {
    try {
      const res = await fetch(new URL('/v1/descriptor', url), {
        method: 'POST',
        body: descriptor,
        headers: { 'content-type': DESCRIPTOR_CONTENT_TYPE },
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      let parsed: { result?: string; message?: string } = {};
      try {
        parsed = JSON.parse(text) as typeof parsed;
      } catch {
        parsed = { message: text.slice(0, 200) };
      }
      return { url, ok: res.ok, status: res.status, result: parsed.result ?? 'error', message: parsed.message ?? '' };
    } catch (e) {
      const cause = (e as { cause?: { message?: string } }).cause?.message;
      return { url, ok: false, status: 0, result: 'unreachable', message: cause ? `${(e as Error).message}: ${cause}` : (e as Error).message };
    }
  };
  return Promise.all(
    urls.map(async (url) => {
      const first = await once(url);
      return first.status === 0 ? once(url) : first;
    }),
  );
}

/**
 * The last good document on disk. `save` writes atomically (temp + rename); `load` re-verifies
 * with the same options as a fresh fetch and returns undefined (and counts the reason) if the
 * file is missing, corrupt, or no longer acceptable.
 */
export class DocumentCache {
  readonly rejected = new RejectionCounter();
  constructor(readonly path: string) {}

  save(doc: VerifiedDocument): void {
    mkdirSync(dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    writeFileSync(tmp, doc.bytes, { mode: 0o644 });
    renameSync(tmp, this.path);
  }

  load(opts: VerifyOptions): VerifiedDocument | undefined {
    if (!existsSync(this.path)) return undefined;
    try {
      return verifyDocument(new Uint8Array(readFileSync(this.path)), opts);
    } catch (e) {
      if (isPkiError(e)) {
        this.rejected.count(e.reason);
        return undefined;
      }
      throw e;
    }
  }

  /**
   * Fetches from the authorities, falling back to the cached copy if none answers with a valid
   * document; a freshly fetched document replaces the cache when it is newer.
   */
  async refresh(which: Which, opts: FetchOptions): Promise<{ doc: VerifiedDocument; fromCache: boolean }> {
    try {
      const doc = await fetchDocument(which, opts);
      const cached = this.load({ ...opts, epoch: undefined });
      if (cached && cached.body.epoch === doc.body.epoch && !bytesEqual(cached.digest, doc.digest)) {
        // two bodies for one epoch, both with a threshold of signatures: the authorities
        // equivocated. Keep the first one seen so this client's view stays stable, and count it.
        this.rejected.count('conflicting');
        return { doc: cached, fromCache: true };
      }
      if (!cached || cached.body.epoch <= doc.body.epoch) this.save(doc);
      return { doc, fromCache: false };
    } catch (e) {
      const cached = this.load(opts);
      if (cached) return { doc: cached, fromCache: true };
      throw e;
    }
  }
}

export interface NodeUploadOptions {
  /** The node's key directory (identity.key + sphinx-<epoch>.key). */
  readonly keys: KeyStore;
  readonly epochConfig: EpochConfig;
  readonly urls: readonly string[];
  readonly peerId: string;
  readonly addresses: readonly string[];
  readonly role: Role;
  readonly layerPreference?: number;
  readonly gateway?: GatewayInfo;
  /** The epoch to upload for; default: the next epoch at `now`. */
  readonly epoch?: number;
  /** Unix seconds; default Date.now(). */
  readonly now?: number;
  readonly timeoutMs?: number;
}

/**
 * What a mix or gateway does once per epoch, before the vote point (SCHEDULE.vote): make sure
 * the Sphinx keys for E and E + 1 exist on disk (generating them if not), build and sign the
 * descriptor for E (default: the next epoch), and upload it to every authority.
 */
export async function uploadNodeDescriptor(o: NodeUploadOptions): Promise<{ epoch: number; descriptor: Uint8Array; results: UploadResult[] }> {
  const now = o.now ?? Date.now() / 1000;
  const epoch = o.epoch ?? epochAt(o.epochConfig, now) + 1;
  const identity = o.keys.identity();
  const sphinxKeys = o.keys.ensureSphinxKeys(keyEpochsOfDescriptor(epoch));
  const descriptor = buildDescriptor({
    identity,
    peerId: o.peerId,
    addresses: o.addresses,
    role: o.role,
    layerPreference: o.layerPreference,
    epoch,
    sphinxKeys,
    gateway: o.gateway,
    publishedAt: Math.floor(now),
  });
  return { epoch, descriptor, results: await uploadDescriptor(o.urls, descriptor, o.timeoutMs) };
}
