/**
 * The issuance endpoint as a public service, over real HTTP on loopback: what an unauthenticated
 * or malicious client gets (401 alike for unknown users and wrong secrets, 413 for a large body
 * without a 100 Continue first, clear 4xx for malformed bodies, 429 past the per-user limits) and
 * that the server keeps answering afterwards.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveIssuerKeys, finalizeTokens, parseIssueAnswer, parseUserInfo, requestTokens, verifyToken } from '../proto/tokens/index.ts';
import { startIssuanceServer, type IssuanceServer } from './issuance.ts';
import { GatewayStore } from './store.ts';

const issuer = deriveIssuerKeys(new Uint8Array(32).fill(8));
const BOB = 'bob@example.org';
let store: GatewayStore;
let server: IssuanceServer;
let secret: string;
let base: string;

beforeAll(async () => {
  store = new GatewayStore(':memory:');
  secret = store.addUser(BOB).secret;
  store.addUser('carol@example.org');
  server = await startIssuanceServer(store, issuer, '127.0.0.1', 0, {
    limits: {
      maxPerRequest: 10,
      maxTokensPerHour: 25,
      maxRequestsPerMinute: 1000,
      maxTokensPerEpoch: 1000,
      maxBodyBytes: 4096,
      headersTimeoutMs: 500,
      requestTimeoutMs: 1000,
    },
  });
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(async () => {
  await server.close();
  store.close();
});

const auth = (who = BOB, s = secret) => ({ authorization: `Bearer ${who}:${s}` });
const post = (path: string, body: string, headers: Record<string, string> = auth()) =>
  fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

/** Writes `request` on a raw socket; resolves with everything the server sent until it closed or `ms` passed. */
function raw(request: string | Buffer, o: { ms?: number; thenSend?: Buffer; afterFirstByte?: boolean } = {}): Promise<{ text: string; reset: boolean }> {
  return new Promise((resolve) => {
    const s = connect(server.port, '127.0.0.1');
    let text = '';
    let reset = false;
    const done = () => {
      s.destroy();
      resolve({ text, reset });
    };
    const timer = setTimeout(done, o.ms ?? 1500);
    s.on('data', (d) => {
      text += d.toString('latin1');
      if (o.thenSend && o.afterFirstByte) {
        const b = o.thenSend;
        o.thenSend = undefined;
        s.write(b);
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNRESET') reset = true;
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ text, reset });
    });
    s.write(request);
    if (o.thenSend && !o.afterFirstByte) s.write(o.thenSend);
  });
}

async function alive(): Promise<void> {
  const r = await fetch(`${base}/v1/user`, { headers: auth() });
  expect(r.status).toBe(200);
}

describe('issuance endpoint (HTTP)', () => {
  it('issues to an authenticated user: tokens finalize under the issuer key and verify', async () => {
    const info = parseUserInfo(await (await fetch(`${base}/v1/user`, { headers: auth() })).json());
    expect(info).toMatchObject({ recipient: BOB, keyEpoch: 1, maxPerRequest: 10 });
    expect(info.epochs.map((e) => e.keyEpoch)).toEqual([1, 2]);
    const st = requestTokens(issuer.publicKey, BOB, 1, 3);
    const r = await post('/v1/issue', JSON.stringify({ keyEpoch: 1, blinded: st.blinded.map((b) => Buffer.from(b).toString('hex')) }));
    expect(r.status).toBe(200);
    const a = parseIssueAnswer(await r.json());
    const toks = finalizeTokens(st, a);
    expect(toks.every((t) => verifyToken(issuer, BOB, t))).toBe(true);
    expect(store.issuedIn(BOB, 1)).toBe(3);
  });

  it('answers the same 401 for an unknown address and for a wrong secret', async () => {
    const a = await fetch(`${base}/v1/user`, { headers: auth('nobody@example.org', secret) });
    const b = await fetch(`${base}/v1/user`, { headers: auth(BOB, 'x'.repeat(43)) });
    const c = await fetch(`${base}/v1/user`);
    for (const r of [a, b, c]) expect(r.status).toBe(401);
    const [ta, tb, tc] = await Promise.all([a.text(), b.text(), c.text()]);
    expect(ta).toBe(tb);
    expect(tb).toBe(tc);
    expect(a.headers.get('www-authenticate')).toBe('Bearer');
  });

  it('malformed bodies get a clear 400; wrong paths 404, wrong methods 405; stale epochs 409', async () => {
    const cases: [string, number, RegExp][] = [
      ['not json', 400, /not JSON/],
      ['[1,2]', 400, /not a JSON object/],
      ['{"blinded": []}', 400, /keyEpoch/],
      ['{"keyEpoch": 1}', 400, /blinded is missing/],
      ['{"keyEpoch": 1, "blinded": []}', 400, /0 blinded elements/],
      [JSON.stringify({ keyEpoch: 1, blinded: Array(11).fill('00'.repeat(32)) }), 400, /11 blinded elements.*1\.\.10/],
      ['{"keyEpoch": 1, "blinded": ["zz"]}', 400, /64 lower-case hex/],
      [JSON.stringify({ keyEpoch: 1, blinded: ['ff'.repeat(32)] }), 400, /not a valid ristretto255 element/],
      [JSON.stringify({ keyEpoch: 7, blinded: ['00'.repeat(32)] }), 409, /key epoch 7 cannot be requested now; ask for 1 \(current\) or 2 \(next\)/],
    ];
    for (const [body, status, msg] of cases) {
      const r = await post('/v1/issue', body);
      expect(r.status, body).toBe(status);
      expect(((await r.json()) as { error: string }).error, body).toMatch(msg);
    }
    expect((await fetch(`${base}/v2/issue`, { headers: auth() })).status).toBe(404);
    const m = await fetch(`${base}/v1/issue`, { headers: auth() });
    expect(m.status).toBe(405);
    expect(m.headers.get('allow')).toBe('POST');
    await alive();
  });

  it('a body over the limit: 413 before any 100 Continue, authenticated or not, and the connection is not reset', async () => {
    const big = Buffer.alloc(100_000, 0x61);
    for (const authz of ['', `Authorization: Bearer ${BOB}:${secret}\r\n`]) {
      // Expect: 100-continue: the answer must be the 413, not a 100
      const e = await raw(
        `POST /v1/issue HTTP/1.1\r\nHost: x\r\n${authz}Content-Type: application/json\r\nContent-Length: ${big.length}\r\nExpect: 100-continue\r\n\r\n`,
      );
      expect(e.text).toMatch(/^HTTP\/1\.1 413 /);
      expect(e.text).not.toContain('100 Continue');
      expect(e.reset).toBe(false);
      // no Expect, the body sent at once: 413, read completely before the close
      const n = await raw(`POST /v1/issue HTTP/1.1\r\nHost: x\r\n${authz}Content-Length: ${big.length}\r\n\r\n`, { thenSend: big });
      expect(n.text).toMatch(/^HTTP\/1\.1 413 /);
      expect(n.text).toContain('at most 4096');
      expect(n.reset).toBe(false);
    }
    // chunked, no length announced: cut off at the limit
    const c = await raw(`POST /v1/issue HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${BOB}:${secret}\r\nTransfer-Encoding: chunked\r\n\r\n`, {
      thenSend: Buffer.concat([Buffer.from((8000).toString(16) + '\r\n'), Buffer.alloc(8000, 0x61), Buffer.from('\r\n')]),
    });
    expect(c.text).toMatch(/^HTTP\/1\.1 413 /);
    await alive();
  });

  it('Expect: 100-continue is answered with 100 only for an authenticated request of an allowed size', async () => {
    const body = Buffer.from('{"keyEpoch": 1, "blinded": ["zz"]}');
    const unauth = await raw(`POST /v1/issue HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
    expect(unauth.text).toMatch(/^HTTP\/1\.1 401 /);
    const ok = await raw(
      `POST /v1/issue HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${BOB}:${secret}\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
      {
        thenSend: body,
        afterFirstByte: true,
      },
    );
    expect(ok.text).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 400 /);
  });

  it('slow or broken clients: header timeout, oversized headers, garbage: a 4xx each, and the daemon keeps serving', async () => {
    const slow = await raw('GET /v1/user HTTP/1.1\r\nHost: x\r\n', { ms: 3000 }); // never finishes its headers
    expect(slow.text).toMatch(/^HTTP\/1\.1 408 /);
    const huge = await raw(`GET /v1/user HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(huge.text).toMatch(/^HTTP\/1\.1 431 /);
    const junk = await raw('\x00\x01\x02 nonsense\r\n\r\n');
    expect(junk.text).toMatch(/^HTTP\/1\.1 400 /);
    await alive();
  });

  it('rate limits tokens per user (429 with Retry-After), without touching other users', async () => {
    const carol = store.resetSecret('carol@example.org');
    const ask = (who: string, s: string, n: number) =>
      post(
        '/v1/issue',
        JSON.stringify({ keyEpoch: 1, blinded: requestTokens(issuer.publicKey, who, 1, n).blinded.map((b) => Buffer.from(b).toString('hex')) }),
        auth(who, s),
      );
    // bob already got 3 of his 25 per hour
    expect((await ask(BOB, secret, 10)).status).toBe(200);
    expect((await ask(BOB, secret, 10)).status).toBe(200);
    const over = await ask(BOB, secret, 10);
    expect(over.status).toBe(429);
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await over.json()) as { error: string }).error).toMatch(/at most 25 tokens per hour/);
    expect((await ask('carol@example.org', carol, 10)).status).toBe(200);
    expect(store.issuedIn(BOB, 1)).toBe(23); // the refused batch was not counted
  });
});

describe('issuance endpoint: per-request limit and epoch cap', () => {
  it('caps the tokens of one key epoch and says how to get more', async () => {
    const s = new GatewayStore(':memory:');
    const sec = s.addUser(BOB).secret;
    const srv = await startIssuanceServer(s, issuer, '127.0.0.1', 0, { limits: { maxPerRequest: 10, maxTokensPerEpoch: 15, maxRequestsPerMinute: 3 } });
    try {
      const ask = (n: number) =>
        fetch(`http://127.0.0.1:${srv.port}/v1/issue`, {
          method: 'POST',
          headers: { authorization: `Bearer ${BOB}:${sec}` },
          body: JSON.stringify({ keyEpoch: 1, blinded: requestTokens(issuer.publicKey, BOB, 1, n).blinded.map((b) => Buffer.from(b).toString('hex')) }),
        });
      expect((await ask(10)).status).toBe(200);
      const capped = await ask(10);
      expect(capped.status).toBe(429);
      expect(((await capped.json()) as { error: string }).error).toMatch(/cap of 15 tokens \(5 left\).*rotate/);
      // requests per minute: the third request of the minute is refused
      const third = await ask(1);
      expect(third.status).toBe(200);
      expect((await ask(1)).status).toBe(429);
    } finally {
      await srv.close();
      s.close();
    }
  });
});
