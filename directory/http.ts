/**
 * The authority's HTTP API (docs/spec/pki.md §7). Plain HTTP/1.1 on node:http; every object
 * served is signed, so transport security is not what makes it trustworthy.
 *
 *   GET  /v1/document/current | next | latest | <epoch>   SignedDocument (ETag, Cache-Control, 304)
 *   POST /v1/descriptor                          SignedDescriptor -> JSON {result, message}
 *   GET  /v1/vote/<epoch>                         this authority's SignedVote
 *   GET  /v1/signature/<epoch>                    SignedDocument carrying only this authority's signature
 *   GET  /healthz, GET /readyz (runtime/health.ts), GET /metrics
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeDocumentBody, decodeSignedDocument, hex, isPkiError, LIMITS, sha256 } from '../proto/pki/index.ts';
import { DOCUMENT_CONTENT_TYPE, VOTE_CONTENT_TYPE } from '../runtime/pki/client.ts';
import { readiness as checkAll } from '../runtime/health.ts';
import type { Authority } from './authority.ts';

const MAX_EPOCH_DIGITS = 10;

function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array | 'oversized'> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > limit) {
      resolve('oversized');
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      total += c.length;
      if (total > limit) over = true;
      else chunks.push(c);
    });
    req.on('end', () => resolve(over ? 'oversized' : new Uint8Array(Buffer.concat(chunks))));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, obj: unknown): void {
  const b = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(b) });
  res.end(b);
}

export class DirectoryHttp {
  private server: Server | undefined;

  constructor(readonly authority: Authority) {}

  async listen(host: string, port: number): Promise<AddressInfo> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        this.authority.log.error({ err: (e as Error).message }, 'HTTP handler failed');
        if (!res.headersSent) json(res, 500, { result: 'error', message: 'internal error' });
        else res.destroy();
      });
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    server.keepAliveTimeout = 5_000;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeIdleConnections();
    });
  }

  private count(route: string, status: number): void {
    this.authority.metrics.countRequest(route, status);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const parts = url.pathname.split('/').filter(Boolean);
    const a = this.authority;
    if (req.method === 'POST' && url.pathname === '/v1/descriptor') {
      const body = await readBody(req, LIMITS.descriptorBytes);
      if (body === 'oversized') {
        a.metrics.countDescriptor('oversized');
        a.metrics.countRejected('descriptor', 'oversized');
        this.count('descriptor', 413);
        return json(res, 413, { result: 'oversized', message: `descriptor larger than ${LIMITS.descriptorBytes} bytes` });
      }
      try {
        const out = a.submitDescriptor(body);
        const status = out.result === 'accepted' ? 201 : 200;
        this.count('descriptor', status);
        return json(res, status, { result: out.result, message: `node ${out.nodeId} epoch ${out.epoch}`, nodeId: out.nodeId, epoch: out.epoch });
      } catch (e) {
        if (!isPkiError(e)) throw e;
        const status = e.reason === 'conflicting' || e.reason === 'duplicate-key' ? 409 : 400;
        this.count('descriptor', status);
        a.log.info({ reason: e.reason, err: e.message }, 'descriptor rejected');
        return json(res, status, { result: e.reason, message: e.message });
      }
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      this.count('other', 405);
      return json(res, 405, { result: 'error', message: 'method not allowed' });
    }
    if (url.pathname === '/healthz') {
      this.count('healthz', 200);
      return json(res, 200, { ok: true, epoch: a.currentEpoch(), latestDocument: a.store.latestDocumentEpoch() ?? null });
    }
    if (url.pathname === '/readyz') {
      // ready: serving a document for the epoch the clock is in (a hop fetching now gets one)
      const cur = a.currentEpoch();
      const r = checkAll({ document: a.store.getDocument(cur) ? true : `no signed document for the current epoch ${cur} yet` });
      this.count('readyz', r.ready ? 200 : 503);
      return json(res, r.ready ? 200 : 503, r);
    }
    if (url.pathname === '/metrics') {
      const text = await a.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': a.metrics.registry.contentType });
      this.count('metrics', 200);
      res.end(text);
      return;
    }
    if (parts.length === 3 && parts[0] === 'v1') {
      const [, kind, which] = parts as [string, string, string];
      const cur = a.currentEpoch();
      let epoch: number | undefined;
      if (kind === 'document' && which === 'current') epoch = cur;
      else if (kind === 'document' && which === 'next') epoch = cur + 1;
      // after an outage the current epoch may have no document while an older one still routes
      else if (kind === 'document' && which === 'latest') epoch = a.store.latestDocumentEpoch(cur) ?? cur;
      else if (/^\d+$/.test(which) && which.length <= MAX_EPOCH_DIGITS) epoch = Number(which);
      if (epoch !== undefined && epoch <= 0xffffffff) {
        if (kind === 'document') return this.serveDocument(req, res, epoch);
        if (kind === 'vote') return this.serveBytes(res, 'vote', epoch, a.store.getVote(epoch, a.identity.publicKey), VOTE_CONTENT_TYPE);
        if (kind === 'signature') return this.serveBytes(res, 'signature', epoch, a.ownSignature(epoch), DOCUMENT_CONTENT_TYPE);
      }
    }
    this.count('other', 404);
    return json(res, 404, { result: 'error', message: 'not found' });
  }

  private serveBytes(res: ServerResponse, route: string, epoch: number, bytes: Uint8Array | undefined, type: string): void {
    if (!bytes) {
      this.count(route, 404);
      return json(res, 404, { result: 'error', message: `no ${route} for epoch ${epoch}` });
    }
    this.count(route, 200);
    res.writeHead(200, { 'content-type': type, 'content-length': bytes.length, 'cache-control': 'no-cache' });
    res.end(bytes);
  }

  private serveDocument(req: IncomingMessage, res: ServerResponse, epoch: number): void {
    const a = this.authority;
    const doc = a.store.getDocument(epoch);
    const c = a.params.epochConfig;
    const now = a.now();
    if (!doc) {
      this.count('document', 404);
      // a missing next document may appear soon; let caches retry quickly
      res.setHeader('cache-control', 'public, max-age=5');
      return json(res, 404, { result: 'error', message: `no document for epoch ${epoch}` });
    }
    const etag = `"${hex(sha256(doc.bytes)).slice(0, 32)}"`;
    const body = decodeDocumentBody(decodeSignedDocument(doc.bytes).body);
    // A document is final once it carries every authority's signature; until then it may gain
    // signatures, so caches revalidate often. A final document is cached while it is fresh:
    // once its epoch ends a newer one is due.
    const final = doc.signers >= a.params.authorities.length;
    const maxAge = final ? Math.max(0, Math.floor(body.freshUntil - now)) : Math.min(30, Math.max(1, Math.floor(c.length / 16)));
    const headers = {
      etag,
      'cache-control': `public, max-age=${maxAge}`,
      'last-modified': new Date(doc.publishedAt * 1000).toUTCString(),
      expires: new Date((now + maxAge) * 1000).toUTCString(),
      'x-postmix-epoch': String(epoch),
      'x-postmix-valid-after': new Date(body.validAfter * 1000).toISOString(),
      'x-postmix-fresh-until': new Date(body.freshUntil * 1000).toISOString(),
      'x-postmix-valid-until': new Date(body.validUntil * 1000).toISOString(),
      'x-postmix-signatures': String(doc.signers),
    };
    const inm = req.headers['if-none-match'];
    if (inm && inm.split(',').some((t) => t.trim() === etag)) {
      this.count('document', 304);
      res.writeHead(304, headers);
      res.end();
      return;
    }
    this.count('document', 200);
    res.writeHead(200, { ...headers, 'content-type': DOCUMENT_CONTENT_TYPE, 'content-length': doc.bytes.length });
    res.end(req.method === 'HEAD' ? undefined : doc.bytes);
  }
}
