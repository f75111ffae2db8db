/**
 * Cross-role PKI test: three authorities on loopback HTTP, a dozen nodes uploading descriptors,
 * voting, signature exchange, publication, verification by a client; one authority down; a
 * forged signature; bad uploads; restart from SQLite. The clock is injected (no sleeping).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_GEOMETRY } from '../proto/sphinx/geometry.ts';
import { DEFAULT_MIXING } from '../proto/mixing/params.ts';
import {
  decodeSignedDocument,
  encodeSignedDocument,
  epochEnd,
  epochStart,
  generateIdentity,
  MAX_KEYS_AHEAD,
  hex,
  isPkiError,
  schedulePoint,
  SCHEDULE,
  verifyDocument,
  type DocumentParams,
  type EpochConfig,
  type IdentityKey,
} from '../proto/pki/index.ts';
import { DocumentCache, fetchDocument, uploadDescriptor } from '../runtime/pki/client.ts';
import { testNode, resignedDescriptor, type TestNode } from './support/pki.ts';
import { peerIdOfIdentityKey } from '../proto/pki/peer-id.ts';
import { Authority } from '../directory/authority.ts';
import { DirectoryHttp } from '../directory/http.ts';
import { AuthorityStore } from '../directory/store.ts';

const EC: EpochConfig = { origin: 1_700_000_000, length: 3600, grace: 300 };
const E = 100; // the epoch the first document is for
let clock = schedulePoint(EC, E - 1, 0.1);
const now = () => clock;
const silent = pino({ level: 'silent' });

interface Running {
  auth: Authority;
  http: DirectoryHttp;
  url: string;
  dbPath: string;
}

const ids: IdentityKey[] = [generateIdentity(), generateIdentity(), generateIdentity()];
const params: DocumentParams = {
  epochConfig: EC,
  geometry: DEFAULT_GEOMETRY,
  mixing: DEFAULT_MIXING,
  numLayers: 3,
  authorities: ids.map((i) => i.publicKey),
  threshold: 2,
};
const dir = mkdtempSync(join(tmpdir(), 'pm-dir-'));
const running: (Running | undefined)[] = [];
const urls: string[] = [];
const verifyOpts = { authorities: params.authorities, threshold: 2 };

async function start(i: number, port = 0): Promise<Running> {
  const dbPath = join(dir, `auth${i}.sqlite`);
  const auth = new Authority({
    identity: ids[i]!,
    // peers' URLs are filled in once all have ports
    peers: ids.flatMap((id, j) => (j === i ? [] : [{ url: urls[j] ?? 'http://127.0.0.1:1', publicKey: id.publicKey }])),
    params,
    store: new AuthorityStore(dbPath),
    logger: silent,
    now,
    peerTimeoutMs: 2000,
  });
  const http = new DirectoryHttp(auth);
  const addr = await http.listen('127.0.0.1', port);
  return { auth, http, url: `http://127.0.0.1:${addr.port}`, dbPath };
}

async function stop(r: Running): Promise<void> {
  await r.http.close();
  r.auth.store.close();
}

let nodes: TestNode[] = [];
/** node 0's descriptor for E + 1, uploaded to authority 0 only by the bad-uploads test. */
let node0Next: Uint8Array | undefined;

beforeAll(async () => {
  // bind each authority on an ephemeral port, then restart them knowing each other's URLs
  for (let i = 0; i < 3; i++) {
    const r = await start(i);
    urls.push(r.url);
    await stop(r);
  }
  for (let i = 0; i < 3; i++) running.push(await start(i, Number(new URL(urls[i]!).port)));
  nodes = [
    ...Array.from({ length: 9 }, (_, i) => testNode(E, i, 'mix', { layerPreference: (i % 3) + 1 })),
    ...Array.from({ length: 3 }, (_, i) => testNode(E, 50 + i, 'gateway')),
  ];
});

afterAll(async () => {
  for (const r of running) if (r) await stop(r);
});

async function round(epoch: number, up: Running[]): Promise<number[]> {
  clock = schedulePoint(EC, epoch - 1, SCHEDULE.vote);
  for (const r of up) r.auth.vote(epoch);
  clock = schedulePoint(EC, epoch - 1, SCHEDULE.tally);
  for (const r of up) expect(await r.auth.tally(epoch)).toBe(true);
  clock = schedulePoint(EC, epoch - 1, SCHEDULE.collect);
  const sigs: number[] = [];
  for (const r of up) sigs.push(await r.auth.collect(epoch));
  // a second pass picks up signatures made after this authority's first collect
  sigs.length = 0;
  for (const r of up) sigs.push(await r.auth.collect(epoch));
  return sigs;
}

describe('directory authorities on loopback', () => {
  it('publish the same document with >= 2 signatures from a dozen descriptors', async () => {
    for (const n of nodes) {
      const res = await uploadDescriptor(urls, n.descriptor);
      expect(res.map((r) => r.result)).toEqual(['accepted', 'accepted', 'accepted']);
    }
    // re-upload is idempotent
    expect((await uploadDescriptor(urls, nodes[0]!.descriptor)).map((r) => r.result)).toEqual(['duplicate', 'duplicate', 'duplicate']);

    const sigs = await round(E, running as Running[]);
    expect(sigs).toEqual([3, 3, 3]);
    // the clock is still in epoch E - 1, for which no document exists: alive but not ready
    const notReady = await fetch(`${urls[0]}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ ready: false, checks: { document: `no signed document for the current epoch ${E - 1} yet` } });

    const docs: Uint8Array[] = [];
    for (const url of urls) {
      const v = await fetchDocument(E, { ...verifyOpts, urls: [url], epoch: E, now: clock });
      expect(v.signers.length).toBeGreaterThanOrEqual(2);
      docs.push(v.bytes);
    }
    expect(hex(docs[1]!)).toBe(hex(docs[0]!));
    expect(hex(docs[2]!)).toBe(hex(docs[0]!));

    const v = verifyDocument(docs[0]!, { ...verifyOpts, epoch: E, now: epochStart(EC, E) + 10 });
    const mixes = v.body.layers.flat();
    expect(mixes).toHaveLength(9);
    expect(v.body.layers.map((l) => l.length)).toEqual([3, 3, 3]);
    expect(v.body.gateways.map((g) => g.gateway!.domains[0]).sort()).toEqual(['mail50.example', 'mail51.example', 'mail52.example']);
    for (const n of nodes.filter((x) => x.role === 'mix')) {
      const entry = mixes.find((m) => hex(m.nodeId) === hex(n.identity.nodeId))!;
      expect(hex(entry.sphinxKey)).toBe(hex(n.keys[0]!.publicKey));
      expect(entry.sphinxKeysAhead.map(hex)).toEqual(n.keys.slice(1).map((k) => hex(k.publicKey)));
    }
  });

  it('serves current/next with caching headers and answers If-None-Match with 304; ready once serving the current epoch', async () => {
    clock = epochStart(EC, E) + 5; // epoch E is now current
    const ready = await fetch(`${urls[0]}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, checks: { document: true } });
    const res = await fetch(`${urls[0]}/v1/document/current`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-postmix-epoch')).toBe(String(E));
    const etag = res.headers.get('etag')!;
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    expect(res.headers.get('cache-control')).toBe(`public, max-age=${EC.length - 5}`);
    expect(res.headers.get('x-postmix-fresh-until')).toBe(new Date(epochEnd(EC, E) * 1000).toISOString());
    expect(res.headers.get('x-postmix-valid-until')).toBe(new Date(epochEnd(EC, E + MAX_KEYS_AHEAD) * 1000).toISOString());
    await res.arrayBuffer();
    const again = await fetch(`${urls[0]}/v1/document/current`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    const next = await fetch(`${urls[0]}/v1/document/next`);
    expect(next.status).toBe(404);
    await next.arrayBuffer();
  });

  it('rejects bad uploads with a typed reason and counts them', async () => {
    const url = [urls[0]!];
    const garbage = await uploadDescriptor(url, new Uint8Array([1, 2, 3, 4, 5]));
    expect(['truncated', 'malformed']).toContain(garbage[0]!.result);
    const big = await uploadDescriptor(url, new Uint8Array(20_000));
    expect(big[0]!.result).toBe('oversized');
    expect(big[0]!.status).toBe(413);
    // stale: a descriptor for epoch E, now that E is current and voted
    const stale = await uploadDescriptor(url, testNode(E - 1, 1, 'mix').descriptor);
    expect(stale[0]!.result).toBe('stale-epoch');
    const late = await uploadDescriptor(url, testNode(E, 2, 'mix').descriptor);
    expect(late[0]!.result).toBe('stale-epoch');
    const future = await uploadDescriptor(url, testNode(E + 5, 3, 'mix').descriptor);
    expect(future[0]!.result).toBe('future-epoch');
    // wrong signature: flip a byte of the signature (last bytes of the encoding)
    const good = testNode(E + 1, 4, 'mix').descriptor;
    const bad = good.slice();
    bad[bad.length - 1]! ^= 0x55;
    expect((await uploadDescriptor(url, bad))[0]!.result).toBe('bad-signature');
    // a validly signed descriptor that names another node's libp2p peer id
    const thief = testNode(E + 1, 5, 'mix');
    const stolen = await uploadDescriptor(url, resignedDescriptor(thief, { peerId: peerIdOfIdentityKey(nodes[1]!.identity.publicKey) }));
    expect(stolen[0]!.result).toBe('invalid-field');
    expect(stolen[0]!.status).toBe(400);
    expect(stolen[0]!.message).toMatch(/peer id .* is not the one derived from the identity key/);
    // conflicting: the same node uploads a second, different descriptor for E+1
    const n = nodes[0]!;
    const first = fakeNodeFor(n, E + 1, '/ip4/127.0.0.1/tcp/1');
    const second = fakeNodeFor(n, E + 1, '/ip4/127.0.0.1/tcp/2');
    expect((await uploadDescriptor(url, first))[0]!.result).toBe('accepted');
    node0Next = first;
    const c = await uploadDescriptor(url, second);
    expect(c[0]!.result).toBe('conflicting');
    expect(c[0]!.status).toBe(409);
    // a gateway claiming a domain another gateway already has
    const g2 = testNode(E + 1, 60, 'gateway');
    const g3 = testNode(E + 1, 60, 'gateway');
    expect((await uploadDescriptor(url, g2.descriptor))[0]!.result).toBe('accepted');
    expect((await uploadDescriptor(url, g3.descriptor))[0]!.result).toBe('duplicate-key');

    const metrics = await (await fetch(`${urls[0]}/metrics`)).text();
    expect(metrics).toMatch(/postmix_directory_rejected_total\{kind="descriptor",reason="bad-signature"\} 1/);
    expect(metrics).toMatch(/postmix_directory_rejected_total\{kind="descriptor",reason="conflicting"\} 1/);
    expect(metrics).toMatch(/postmix_directory_rejected_total\{kind="descriptor",reason="oversized"\} 1/);
    expect(metrics).toMatch(/postmix_directory_rejected_total\{kind="descriptor",reason="invalid-field"\} 1/);
    // the authority is still serving
    expect((await fetch(`${urls[0]}/healthz`)).status).toBe(200);
  });

  it('with one authority down the other two still publish, and layers stay stable', async () => {
    const E2 = E + 1;
    const down = running[2]!;
    await stop(down);
    running[2] = undefined;
    // the remaining nodes re-upload for E+1 (to all three; the third is unreachable)
    const fresh = nodes.map((n, i) => (i === 0 && node0Next ? node0Next : fakeNodeFor(n, E2, `/ip4/127.0.0.1/tcp/${30000 + i}`)));
    for (const [i, d] of fresh.entries()) {
      const res = await uploadDescriptor(urls, d, 2000);
      expect(res[2]!.result).toBe('unreachable');
      // node 0 already uploaded this exact descriptor to authority 0 in the previous test
      expect(res[0]!.result).toBe(i === 0 ? 'duplicate' : 'accepted');
      expect(res[1]!.result).toBe('accepted');
    }
    // authority 1 also got no gateway g2 (only authority 0 did), so it lacks a threshold
    const up = [running[0]!, running[1]!];
    const sigs = await round(E2, up);
    expect(sigs).toEqual([2, 2]);
    const v = await fetchDocument(E2, { ...verifyOpts, urls, epoch: E2 });
    expect(v.signers).toHaveLength(2);
    expect(v.body.gateways).toHaveLength(3); // the gateway known to one authority only is out
    const prev = verifyDocument((await fetchDocument(E, { ...verifyOpts, urls })).bytes, verifyOpts);
    expect(hex(v.body.previousDigest)).toBe(hex(prev.digest));
    const layerOf = (body: typeof v.body) => new Map(body.layers.flatMap((l, i) => l.map((n) => [hex(n.nodeId), i + 1] as const)));
    expect(layerOf(v.body)).toEqual(layerOf(prev.body));
    // a client that needs 3 signatures refuses it
    await expect(fetchDocument(E2, { ...verifyOpts, threshold: 3, urls })).rejects.toThrow(/threshold/);
  });

  it('a verifier rejects a document with a forged signature', async () => {
    const bytes = (await fetchDocument(E + 1, { ...verifyOpts, urls })).bytes;
    const sd = decodeSignedDocument(bytes);
    const forged = encodeSignedDocument({
      body: sd.body,
      signatures: sd.signatures.map((s, i) => (i === 0 ? { ...s, signature: s.signature.map((b) => b ^ 1) } : s)),
    });
    let reason = '';
    try {
      verifyDocument(forged, verifyOpts);
    } catch (e) {
      if (isPkiError(e)) reason = e.reason;
    }
    expect(reason).toBe('bad-signature');
    // and a document signed by an impostor authority key
    const impostor = generateIdentity();
    const { signDocumentBody, combineSignatures } = await import('../proto/pki/index.ts');
    const fake = combineSignatures(sd.body, [signDocumentBody(impostor, sd.body), signDocumentBody(generateIdentity(), sd.body)]);
    expect(() => verifyDocument(fake, verifyOpts)).toThrow(/unknown-authority/);
  });

  it('an authority restarted from its database serves the same documents; the client caches the last good one', async () => {
    const r0 = running[0]!;
    const before = r0.auth.document(E + 1)!;
    const port = Number(new URL(r0.url).port);
    await stop(r0);
    running[0] = await start(0, port);
    expect(hex(running[0].auth.document(E + 1)!)).toBe(hex(before));
    // the vote is kept too, so a late descriptor for E+1 is still refused after the restart
    const lateUp = await uploadDescriptor([urls[0]!], testNode(E + 1, 77, 'mix').descriptor);
    expect(lateUp[0]!.result, lateUp[0]!.message).toBe('stale-epoch');

    const cache = new DocumentCache(join(dir, 'client', 'document.bin'));
    const { doc, fromCache } = await cache.refresh(E + 1, { ...verifyOpts, urls });
    expect(fromCache).toBe(false);
    // every authority unreachable: the cached copy is used
    const offline = await cache.refresh(E + 1, { ...verifyOpts, urls: ['http://127.0.0.1:1'], timeoutMs: 1000 });
    expect(offline.fromCache).toBe(true);
    expect(hex(offline.doc.digest)).toBe(hex(doc.digest));
  });

  it('publishes no document that cannot route; the latest one, with its keys ahead, is served instead', async () => {
    const up = running.filter((r): r is Running => r !== undefined);
    // nothing was uploaded for E + 3 (as after an outage that outlasted the upload window)
    clock = schedulePoint(EC, E + 2, SCHEDULE.vote);
    for (const r of up) r.auth.vote(E + 3);
    clock = schedulePoint(EC, E + 2, SCHEDULE.tally);
    for (const r of up) expect(await r.auth.tally(E + 3)).toBe(false);
    clock = schedulePoint(EC, E + 2, SCHEDULE.collect);
    for (const r of up) expect(await r.auth.collect(E + 3)).toBe(0);
    clock = epochStart(EC, E + 3) + 1;
    const current = await fetch(`${urls[0]}/v1/document/current`);
    expect(current.status).toBe(404);
    await current.arrayBuffer();
    // the document for E + 1 lists keys to E + 4: it is what a node or client starting now uses
    const latest = await fetchDocument('latest', { ...verifyOpts, urls, now: clock });
    expect(latest.body.epoch).toBe(E + 1);
    expect(latest.body.validUntil).toBe(epochEnd(EC, E + 1 + MAX_KEYS_AHEAD));
    const metrics = await (await fetch(`${urls[0]}/metrics`)).text();
    expect(metrics).toMatch(/^postmix_directory_documents_withheld_total 1$/m);
  });
});

/** A new descriptor for an existing node (same identity), with fresh Sphinx keys. */
function fakeNodeFor(n: TestNode, epoch: number, address: string): Uint8Array {
  const { buildDescriptor, generateSphinxKey } = pkiSync;
  return buildDescriptor({
    identity: n.identity,
    peerId: peerIdOfIdentityKey(n.identity.publicKey),
    addresses: [address],
    role: n.role,
    epoch,
    sphinxKeys: Array.from({ length: 1 + pkiSync.MAX_KEYS_AHEAD }, (_, j) => generateSphinxKey(epoch + j)),
    gateway:
      n.role === 'gateway'
        ? {
            domains: [`mail${hex(n.identity.nodeId).slice(0, 8)}.example`],
            issuerKeys: [],
            keyDirectoryUrl: 'https://keys.example/v1',
            policy: 'open-rate-limited',
          }
        : undefined,
    publishedAt: 1_800_000_000,
  });
}
import * as pkiSync from '../proto/pki/index.ts';
