/**
 * Token issuance for the gateway's own users (docs/gateway.md "Issuance endpoint"): a small
 * HTTP/JSON service, on loopback by default (put it behind the provider's HTTPS front end, like
 * its webmail or IMAP). A recipient authenticates with its per-user secret:
 *
 *   Authorization: Bearer <address>:<secret>
 *
 *   GET  /v1/user    → { recipient, keyEpoch, policy, issuerPublicKey }
 *   POST /v1/issue   { keyEpoch, blinded: [hex 32 bytes, ...] }
 *                    → { recipient, keyEpoch, issuerPublicKey, evaluated: [hex], proof: hex }
 *
 * A keyEpoch other than the user's current one is refused (409), so a client never gets
 * tokens that are already revoked. Bad credentials: 401 (the same for an unknown address).
 */
import http from 'node:http';
import { issueTokens, normalizeRecipient, type IssuerKeys } from '../proto/tokens/index.ts';
import type { GatewayStore } from './store.ts';

export interface IssuanceServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface IssuanceResult {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

const hexOf = (u: Uint8Array) => Buffer.from(u).toString('hex');

/** Parses "Bearer address:secret"; null if malformed. */
export function parseAuth(header: string | undefined): { address: string; secret: string } | null {
  const m = /^Bearer ([^\s:]+@[^\s:]+):([A-Za-z0-9_-]{20,100})$/.exec(header ?? '');
  return m ? { address: normalizeRecipient(m[1]!), secret: m[2]! } : null;
}

/** The request logic, without HTTP (unit-testable). */
export function handleIssuance(
  store: GatewayStore,
  issuer: IssuerKeys,
  req: { method: string; path: string; auth: string | undefined; body: unknown },
  maxPerRequest = 100,
  onIssued?: (n: number) => void,
): IssuanceResult {
  const cred = parseAuth(req.auth);
  if (!cred || !store.checkSecret(cred.address, cred.secret)) return { status: 401, body: { error: 'bad credentials' } };
  const user = store.getUser(cred.address)!;
  const info = { recipient: user.address, keyEpoch: user.keyEpoch, policy: user.policy, issuerPublicKey: hexOf(issuer.publicKey) };
  if (req.method === 'GET' && req.path === '/v1/user') return { status: 200, body: info };
  if (req.method !== 'POST' || req.path !== '/v1/issue') return { status: 404, body: { error: 'not found' } };
  const b = req.body as { keyEpoch?: unknown; blinded?: unknown } | null;
  if (!b || typeof b !== 'object' || !Array.isArray(b.blinded)) return { status: 400, body: { error: 'want { keyEpoch, blinded: [hex] }' } };
  if (b.keyEpoch !== user.keyEpoch) return { status: 409, body: { error: 'stale key epoch', ...info } };
  if (b.blinded.length < 1 || b.blinded.length > maxPerRequest) return { status: 400, body: { error: `1..${maxPerRequest} blinded elements per request` } };
  const blinded: Uint8Array[] = [];
  for (const x of b.blinded) {
    if (typeof x !== 'string' || !/^[0-9a-f]{64}$/.test(x)) return { status: 400, body: { error: 'blinded elements are 32-byte hex' } };
    blinded.push(new Uint8Array(Buffer.from(x, 'hex')));
  }
  let res;
  try {
    res = issueTokens(issuer, user.address, user.keyEpoch, blinded);
  } catch {
    return { status: 400, body: { error: 'a blinded element is not a valid group element' } };
  }
  onIssued?.(blinded.length);
  return { status: 200, body: { ...info, evaluated: res.evaluated.map(hexOf), proof: hexOf(res.proof) } };
}

export function startIssuanceServer(
  store: GatewayStore,
  issuer: IssuerKeys,
  host: string,
  port: number,
  opts: { maxPerRequest?: number; onIssued?: (n: number) => void } = {},
): Promise<IssuanceServer> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 256 * 1024) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      let body: unknown = null;
      if (chunks.length > 0) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          body = null;
        }
      }
      const path = (req.url ?? '/').split('?')[0]!;
      const r = handleIssuance(store, issuer, { method: req.method ?? 'GET', path, auth: req.headers.authorization, body }, opts.maxPerRequest, opts.onIssued);
      res.writeHead(r.status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(r.body));
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const a = server.address();
      resolve({ port: typeof a === 'object' && a ? a.port : port, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}
