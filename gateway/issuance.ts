/**
 * Token issuance for the gateway's own users (docs/gateway.md, "Issuance endpoint"): an HTTP/JSON
 * service meant to be reachable by the users' postmix clients, behind the provider's TLS reverse
 * proxy (it speaks plain HTTP, on loopback by default). A recipient authenticates with its
 * per-user secret:
 *
 *   Authorization: Bearer <address>:<secret>
 *
 *   GET  /v1/user    → UserInfo (proto/tokens/issuance.ts): key epochs, issuer key, limits
 *   POST /v1/issue   { keyEpoch, blinded: [hex 32 bytes, ...] } → { evaluated, proof, ... }
 *   POST /v1/rotate  → UserInfo: revokes every token of the user now, starts a fresh key epoch
 *
 * Only the current key epoch and the next one (once the current has an end) can be requested;
 * another is refused with 409 and the schedule, so a client never gets tokens already revoked.
 *
 * As a public service: every answer is JSON with a clear `error`; the same 401 for an unknown
 * address and a wrong secret; per-user limits on requests and on tokens (per hour, and per key
 * epoch: the cap that bounds the spent set); a body over `maxBodyBytes` gets 413 before it is
 * read, and `Expect: 100-continue` is only answered with 100 after the path, the credentials
 * and the announced length passed; header and request timeouts; a bad request never stops the
 * daemon. The gateway stores nothing of a request but the count of tokens issued: it never sees
 * a token input (the client blinds them), so it cannot link a redeemed token to its issuance.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import { issueAnswerJson, issueTokens, normalizeRecipient, parseIssueRequest, userInfoJson, type IssuerKeys, type UserInfo } from '../proto/tokens/index.ts';
import { windowOf, type GatewayStore } from './store.ts';

export interface IssuanceLimits {
  /** blinded elements per POST /v1/issue */
  readonly maxPerRequest: number;
  /** tokens one user may get per hour (a token bucket of that size) */
  readonly maxTokensPerHour: number;
  /** tokens one user may get per key epoch (bounds the spent set) */
  readonly maxTokensPerEpoch: number;
  /** requests one authenticated user may make per minute */
  readonly maxRequestsPerMinute: number;
  /** largest request body, bytes */
  readonly maxBodyBytes: number;
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly maxConnections: number;
}

export const DEFAULT_LIMITS: IssuanceLimits = Object.freeze({
  maxPerRequest: 100,
  maxTokensPerHour: 1000,
  maxTokensPerEpoch: 10_000,
  maxRequestsPerMinute: 60,
  maxBodyBytes: 64 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  maxConnections: 256,
});

export interface IssuanceServer {
  readonly port: number;
  close(): Promise<void>;
}

export interface IssuanceResult {
  readonly status: number;
  readonly body: Record<string, unknown>;
  readonly headers?: Record<string, string>;
}

/** Parses "Bearer address:secret"; null if malformed. */
export function parseAuth(header: string | undefined): { address: string; secret: string } | null {
  const m = /^Bearer ([^\s:]+@[^\s:]+):([A-Za-z0-9_-]{20,100})$/.exec(header ?? '');
  return m ? { address: normalizeRecipient(m[1]!), secret: m[2]! } : null;
}

/** A token bucket: `capacity` units, refilled at capacity per `periodMs`. */
class Bucket {
  private level: number;
  private at: number;
  constructor(
    private readonly capacity: number,
    private readonly periodMs: number,
    now: number,
  ) {
    this.level = capacity;
    this.at = now;
  }
  private refill(now: number): void {
    this.level = Math.min(this.capacity, this.level + ((now - this.at) * this.capacity) / this.periodMs);
    this.at = now;
  }
  /** Takes n units, or says in how many seconds they will be there. */
  take(n: number, now: number): { ok: true } | { ok: false; retryAfterS: number } {
    this.refill(now);
    if (n > this.capacity) return { ok: false, retryAfterS: Math.ceil(this.periodMs / 1000) };
    if (this.level >= n) {
      this.level -= n;
      return { ok: true };
    }
    return { ok: false, retryAfterS: Math.max(1, Math.ceil(((n - this.level) * this.periodMs) / this.capacity / 1000)) };
  }
  give(n: number): void {
    this.level = Math.min(this.capacity, this.level + n);
  }
}

/** Per-user request and token limits, in memory (one entry per authenticated user; a restart refills them). */
export class UserLimiter {
  private readonly users = new Map<string, { requests: Bucket; tokens: Bucket }>();
  constructor(private readonly limits: Pick<IssuanceLimits, 'maxRequestsPerMinute' | 'maxTokensPerHour'>) {}
  private of(address: string, now: number) {
    let u = this.users.get(address);
    if (!u) {
      u = { requests: new Bucket(this.limits.maxRequestsPerMinute, 60_000, now), tokens: new Bucket(this.limits.maxTokensPerHour, 3_600_000, now) };
      this.users.set(address, u);
    }
    return u;
  }
  request(address: string, now: number) {
    return this.of(address, now).requests.take(1, now);
  }
  tokens(address: string, n: number, now: number) {
    return this.of(address, now).tokens.take(n, now);
  }
  refund(address: string, n: number): void {
    this.users.get(address)?.tokens.give(n);
  }
}

export interface IssuanceContext {
  readonly limits: IssuanceLimits;
  readonly limiter: UserLimiter;
  /** ms */
  readonly now: () => number;
  readonly onIssued?: (n: number) => void;
}

const ROUTES: Record<string, string> = { '/v1/user': 'GET', '/v1/issue': 'POST', '/v1/rotate': 'POST' };
const err = (status: number, error: string, extra: Record<string, unknown> = {}, headers?: Record<string, string>): IssuanceResult => ({
  status,
  body: { error, ...extra },
  ...(headers ? { headers } : {}),
});
const UNAUTHORIZED = () =>
  err(401, 'bad credentials: want "Authorization: Bearer <address>:<secret>" with the secret your provider gave you', {}, { 'www-authenticate': 'Bearer' });

/**
 * What can be answered before the body is read: the path and method, the credentials, the
 * announced length. null: go on (and, for `Expect: 100-continue`, say 100).
 */
export function preflight(
  store: GatewayStore,
  req: { method: string; path: string; auth: string | undefined; contentLength: number | null },
  limits: IssuanceLimits,
): IssuanceResult | null {
  const want = ROUTES[req.path];
  if (!want) return err(404, `no such endpoint: ${req.path} (GET /v1/user, POST /v1/issue, POST /v1/rotate)`);
  if (req.method !== want) return err(405, `${req.path} takes ${want}`, {}, { allow: want });
  if (req.contentLength !== null && req.contentLength > limits.maxBodyBytes)
    return err(413, `the body is ${req.contentLength} bytes; at most ${limits.maxBodyBytes} are accepted`);
  const cred = parseAuth(req.auth);
  // the same answer, after the same hash, for an unknown address and for a wrong secret
  if (!cred || !store.checkSecret(cred.address, cred.secret)) return UNAUTHORIZED();
  return null;
}

/** The request logic, without HTTP (unit-testable). `body` is the parsed JSON, or `undefined` when it did not parse. */
export function handleIssuance(
  store: GatewayStore,
  issuer: IssuerKeys,
  req: { method: string; path: string; auth: string | undefined; body: unknown },
  ctx: IssuanceContext,
): IssuanceResult {
  const pre = preflight(store, { ...req, contentLength: null }, ctx.limits);
  if (pre) return pre;
  const cred = parseAuth(req.auth)!;
  const now = ctx.now();
  const r = ctx.limiter.request(cred.address, now);
  if (!r.ok) return err(429, `too many requests; try again in ${r.retryAfterS} s`, {}, { 'retry-after': String(r.retryAfterS) });
  const nowS = Math.floor(now / 1000);
  if (req.path === '/v1/rotate') store.rotateUser(cred.address, nowS);
  const user = store.getUser(cred.address)!;
  const sched = store.schedule(user.address, nowS);
  const info: UserInfo = {
    recipient: user.address,
    policy: user.policy,
    issuerPublicKey: issuer.publicKey,
    keyEpoch: sched.current.keyEpoch,
    epochs: [sched.current, ...(sched.next ? [sched.next] : [])].map(windowOf),
    graceS: sched.current.graceS,
    maxPerRequest: ctx.limits.maxPerRequest,
  };
  if (req.path !== '/v1/issue') return { status: 200, body: userInfoJson(info) };

  if (req.body === undefined) return err(400, 'the body is not JSON');
  const p = parseIssueRequest(req.body, ctx.limits.maxPerRequest);
  if (!p.ok) return err(400, p.error);
  const { keyEpoch, blinded } = p.request;
  if (!info.epochs.some((e) => e.keyEpoch === keyEpoch)) {
    const which = info.epochs.length > 1 ? `${info.epochs[0]!.keyEpoch} (current) or ${info.epochs[1]!.keyEpoch} (next)` : `${info.keyEpoch} (current)`;
    return err(409, `key epoch ${keyEpoch} cannot be requested now; ask for ${which}`, userInfoJson(info));
  }
  const t = ctx.limiter.tokens(user.address, blinded.length, now);
  if (!t.ok)
    return err(429, `at most ${ctx.limits.maxTokensPerHour} tokens per hour; try again in ${t.retryAfterS} s`, {}, { 'retry-after': String(t.retryAfterS) });
  let res;
  try {
    res = issueTokens(issuer, user.address, keyEpoch, blinded);
  } catch {
    ctx.limiter.refund(user.address, blinded.length);
    return err(400, 'a blinded element is not a valid ristretto255 element');
  }
  if (!store.countIssued(user.address, keyEpoch, blinded.length, ctx.limits.maxTokensPerEpoch)) {
    ctx.limiter.refund(user.address, blinded.length);
    const left = Math.max(0, ctx.limits.maxTokensPerEpoch - store.issuedIn(user.address, keyEpoch));
    return err(
      429,
      `key epoch ${keyEpoch} has reached its cap of ${ctx.limits.maxTokensPerEpoch} tokens (${left} left); rotate (POST /v1/rotate) or wait for the next epoch`,
    );
  }
  ctx.onIssued?.(blinded.length);
  return {
    status: 200,
    body: issueAnswerJson({ recipient: user.address, keyEpoch, issuerPublicKey: issuer.publicKey, evaluated: res.evaluated, proof: res.proof }),
  };
}

function send(res: http.ServerResponse, r: IssuanceResult, close: boolean): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(r.body);
  res.writeHead(r.status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': String(Buffer.byteLength(body)),
    ...(close ? { connection: 'close' } : {}),
    ...r.headers,
  });
  res.end(body);
}

/**
 * After answering a request whose body was not read (413, 401, …): let the client read the
 * answer before the connection goes. Closing with unread bytes in the socket makes the kernel
 * send a reset, which can destroy the answer in flight, so the rest is read and discarded for a
 * bounded time and size, then the socket is closed.
 */
function discardRest(req: http.IncomingMessage, socket: Socket): void {
  let left = 1024 * 1024;
  const stop = () => socket.destroy();
  const timer = setTimeout(stop, 2000);
  timer.unref();
  req.on('data', (c: Buffer) => {
    left -= c.length;
    if (left <= 0) stop();
  });
  req.on('end', () => clearTimeout(timer));
  socket.once('close', () => clearTimeout(timer));
  req.resume();
}

export function startIssuanceServer(
  store: GatewayStore,
  issuer: IssuerKeys,
  host: string,
  port: number,
  opts: { limits?: Partial<IssuanceLimits>; onIssued?: (n: number) => void; now?: () => number; log?: { warn(o: object, m?: string): void } } = {},
): Promise<IssuanceServer> {
  const limits: IssuanceLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const ctx: IssuanceContext = { limits, limiter: new UserLimiter(limits), now: opts.now ?? Date.now, onIssued: opts.onIssued };
  const answer = (req: http.IncomingMessage, res: http.ServerResponse, r: IssuanceResult, bodyUnread: boolean) => {
    send(res, r, bodyUnread);
    if (bodyUnread) discardRest(req, req.socket);
  };
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse, expectsContinue: boolean) => {
    req.on('error', () => undefined);
    res.on('error', () => undefined);
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    const cl = req.headers['content-length'];
    const contentLength = cl === undefined ? null : /^\d{1,15}$/.test(cl) ? Number(cl) : Number.POSITIVE_INFINITY;
    const hasBody = contentLength !== null ? contentLength > 0 : req.headers['transfer-encoding'] !== undefined;
    let pre: IssuanceResult | null;
    try {
      pre = preflight(store, { method, path, auth: req.headers.authorization, contentLength }, limits);
    } catch (e) {
      opts.log?.warn({ err: String(e) }, 'issuance request failed');
      pre = err(500, 'internal error');
    }
    if (pre) return answer(req, res, pre, hasBody && !req.complete);
    if (expectsContinue) res.writeContinue();
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > limits.maxBodyBytes) {
        over = true;
        answer(req, res, err(413, `the body is over ${limits.maxBodyBytes} bytes`), true);
      } else chunks.push(c);
    });
    req.on('end', () => {
      if (over) return;
      let body: unknown = null;
      if (size > 0) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          body = undefined;
        }
      }
      let r: IssuanceResult;
      try {
        r = handleIssuance(store, issuer, { method, path, auth: req.headers.authorization, body }, ctx);
      } catch (e) {
        opts.log?.warn({ err: String(e) }, 'issuance request failed');
        r = err(500, 'internal error');
      }
      send(res, r, false);
    });
  };
  const server = http.createServer(
    {
      maxHeaderSize: 8 * 1024,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: 5000,
      // how often Node checks the two timeouts (default 30 s, which would let a slow client hold a connection that long)
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeoutMs / 2))),
    },
    (req, res) => onRequest(req, res, false),
  );
  server.maxConnections = limits.maxConnections;
  server.on('checkContinue', (req, res) => onRequest(req, res, true));
  server.on('checkExpectation', (_req, res) => send(res, err(417, 'only "Expect: 100-continue" is understood'), true));
  // malformed HTTP, headers too large, a timeout: a short answer, then the socket goes
  server.on('clientError', (e: NodeJS.ErrnoException, socket: Socket) => {
    if (!socket.writable) return socket.destroy();
    const status =
      e.code === 'HPE_HEADER_OVERFLOW'
        ? '431 Request Header Fields Too Large'
        : e.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : '400 Bad Request';
    const body = JSON.stringify({ error: status.slice(4).toLowerCase() });
    socket.end(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.on('error', (e) => opts.log?.warn({ err: String(e) }, 'issuance server error'));
      const a = server.address();
      resolve({
        port: typeof a === 'object' && a ? a.port : port,
        close: () =>
          new Promise((r) => {
            server.close(() => r());
            server.closeAllConnections();
          }),
      });
    });
  });
}
