import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { peerIdOfIdentityKey } from '../../proto/pki/peer-id.ts';
import { DEFAULT_MIXING } from '../../proto/mixing/params.ts';
import {
  buildDocumentBody,
  combineSignatures,
  decodeDescriptorBody,
  decodeSignedDescriptor,
  encodeCheckedDocumentBody,
  epochStart,
  generateIdentity,
  generateSphinxKey,
  PkiError,
  signDocumentBody,
  verifyDocument,
  type VerifiedDocument,
} from '../../proto/pki/index.ts';
import { type UploadResult } from '../pki/client.ts';
import { DEFAULT_GEOMETRY } from '../../proto/sphinx/index.ts';
import { EpochDriver, type EpochDriverOptions } from './epoch-driver.ts';
import { NetworkView } from './network-view.ts';

const tmp = mkdtempSync(join(tmpdir(), 'pm-epochdriver-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const EC = { origin: 1_000_000, length: 100, grace: 10 };
const E = 5;
const at = (epoch: number, offset: number) => epochStart(EC, epoch) + offset;
const AUTHORITY = generateIdentity();
const RETRY_MS = 1000;

/** A real signed document (empty network), so the document cache can verify what it stores. */
function signedDoc(epoch: number): VerifiedDocument {
  const params = { epochConfig: EC, geometry: DEFAULT_GEOMETRY, mixing: DEFAULT_MIXING, numLayers: 1, authorities: [AUTHORITY.publicKey], threshold: 1 };
  const body = encodeCheckedDocumentBody(buildDocumentBody(params, epoch, []));
  return verifyDocument(combineSignatures(body, [signDocumentBody(AUTHORITY, body)]), { authorities: [AUTHORITY.publicKey], threshold: 1 });
}
const DOCS = new Map([E, E + 1, E + 2].map((e) => [e, signedDoc(e)]));

/**
 * A driver against fakes: the wall clock `t`, the monotonic clock `mono`, which documents the
 * authorities serve and how they answer uploads; every call is recorded.
 */
function harness(name: string, extra: Partial<EpochDriverOptions> = {}) {
  const identity = generateIdentity();
  const h = {
    t: at(E, 30),
    mono: 0,
    serving: new Set<number>(),
    answer: 'accepted',
    fetched: [] as number[],
    uploaded: [] as { epoch: number; publishedAt: number; keys: number[] }[],
    ensured: [] as number[][],
    pruned: [] as number[],
    dropped: [] as number[],
    views: [] as [number, boolean][],
    fetchResults: [] as string[],
    view: new NetworkView(identity.nodeId),
    driver: undefined as unknown as EpochDriver,
  };
  h.driver = new EpochDriver({
    config: {
      epoch: EC,
      authorities: [{ url: 'http://authority.test', publicKey: AUTHORITY.publicKey }],
      dataDir: join(tmp, name),
      file: { directory: { threshold: 1, timeout_ms: 100, retry_ms: RETRY_MS } },
    },
    identity,
    keys: {
      ensure: (epochs) => (h.ensured.push([...epochs]), epochs.map((e) => generateSphinxKey(e))),
      prune: (e) => (h.pruned.push(e), []),
    },
    view: h.view,
    replay: { dropEpochsBefore: (e) => (h.dropped.push(e), []) },
    log: pino({ level: 'silent' }),
    now: () => h.t,
    monotonicMs: () => h.mono,
    descriptor: () => ({ peerId: peerIdOfIdentityKey(identity.publicKey), addresses: ['/ip4/127.0.0.1/tcp/1'], role: 'mix' }),
    onView: (e, changed) => h.views.push([e, changed]),
    onFetch: (r) => h.fetchResults.push(r),
    fetchDocument: async (which) => {
      const epoch = which as number;
      h.fetched.push(epoch);
      if (!h.serving.has(epoch)) throw new PkiError('unavailable', `no document for ${epoch}`);
      return DOCS.get(epoch)!;
    },
    uploadDescriptor: async (urls, descriptor): Promise<UploadResult[]> => {
      const b = decodeDescriptorBody(decodeSignedDescriptor(descriptor).body);
      h.uploaded.push({ epoch: b.epoch, publishedAt: b.publishedAt, keys: b.sphinxKeys.map((k) => k.epoch) });
      return urls.map((url) => ({ url, ok: h.answer === 'accepted', status: 200, result: h.answer, message: '' }));
    },
    ...extra,
  });
  return h;
}

describe('epoch driver', () => {
  it('fetches, uploads and expires on the PKI schedule', async () => {
    const h = harness('schedule');
    h.serving = new Set([E, E + 1]);
    // after the grace window, before the vote point: the current document, descriptors for e+1 and e+2
    await h.driver.tick();
    expect(h.fetched).toEqual([E]);
    expect(h.uploaded).toEqual([
      { epoch: E + 1, publishedAt: epochStart(EC, E), keys: [E + 1, E + 2, E + 3, E + 4] },
      { epoch: E + 2, publishedAt: epochStart(EC, E + 1), keys: [E + 2, E + 3, E + 4, E + 5] },
    ]);
    expect(h.ensured).toEqual([
      [E + 1, E + 2, E + 3, E + 4],
      [E + 2, E + 3, E + 4, E + 5],
    ]);
    expect(h.views).toEqual([[E, true]]);
    expect(h.view.current?.body.epoch).toBe(E);
    expect([h.dropped, h.pruned]).toEqual([[E], [E]]);

    // past the vote point nothing is due: the next document is not published before the collect point
    h.t = at(E, 60);
    await h.driver.tick();
    expect([h.fetched.length, h.uploaded.length]).toEqual([1, 2]);
    expect(h.views.at(-1)).toEqual([E, false]);

    h.t = at(E, 75);
    await h.driver.tick();
    expect(h.fetched).toEqual([E, E + 1]);

    // in the next epoch's grace window: only the newly due descriptor (e+2), nothing expires yet
    h.t = at(E + 1, 5);
    await h.driver.tick();
    expect(h.fetched).toEqual([E, E + 1]);
    expect(h.uploaded.map((u) => u.epoch)).toEqual([E + 1, E + 2, E + 3]);
    expect(h.views.at(-1)).toEqual([E + 1, true]);
    expect(h.pruned).toEqual([E]);

    h.t = at(E + 1, 10);
    await h.driver.tick();
    await h.driver.tick();
    expect([h.dropped, h.pruned]).toEqual([
      [E, E + 1],
      [E, E + 1],
    ]);
  });

  it('retries a failed fetch or upload once per retry_ms, and e+1 only until the vote point', async () => {
    const h = harness('retry');
    h.answer = 'unreachable';
    await h.driver.tick();
    expect(h.fetched).toEqual([E]);
    expect(h.fetchResults).toEqual(['unavailable']);
    expect(h.uploaded.map((u) => u.epoch)).toEqual([E + 1, E + 2]);

    h.mono += RETRY_MS - 1;
    await h.driver.tick();
    expect([h.fetched.length, h.uploaded.length]).toEqual([1, 2]);

    h.mono += 1;
    await h.driver.tick();
    expect(h.fetched).toEqual([E, E]);
    expect(h.uploaded.map((u) => u.epoch)).toEqual([E + 1, E + 2, E + 1, E + 2]);

    // below the threshold at the vote point: e+1 is given up, e+2 still tried
    h.t = at(E, 50);
    h.mono += RETRY_MS;
    await h.driver.tick();
    expect(h.uploaded.slice(4).map((u) => u.epoch)).toEqual([E + 2]);

    // once a threshold holds it, an epoch is not uploaded again
    h.answer = 'duplicate';
    h.serving.add(E);
    h.mono += RETRY_MS;
    await h.driver.tick();
    h.mono += RETRY_MS;
    await h.driver.tick();
    expect(h.uploaded.slice(5).map((u) => u.epoch)).toEqual([E + 2]);
    expect(h.fetchResults.at(-1)).toBe('ok');
    expect(h.fetched.length).toBe(4);
  });

  it('runs one round at a time, and none after stop', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let rounds = 0;
    const h = harness('overlap', {
      fetchDocument: async () => {
        await gate;
        throw new PkiError('unavailable', 'down');
      },
      afterRound: () => rounds++,
    });
    const a = h.driver.tick();
    expect(h.driver.tick()).toBe(a);
    const stopped = h.driver.stop();
    let done = false;
    void stopped.then(() => (done = true));
    await Promise.resolve();
    expect(done).toBe(false);
    release();
    await stopped;
    await h.driver.tick();
    // the stop came during the fetch: the round ends there, before the role's own work
    expect(rounds).toBe(0);
    expect(h.uploaded).toEqual([]);
  });

  it('keeps the newest document in the cache when the next one arrives first', async () => {
    const h = harness('cache');
    h.t = at(E, 80);
    h.serving = new Set([E + 1]);
    await h.driver.tick();
    expect(h.fetched).toEqual([E, E + 1]);
    h.serving.add(E);
    h.mono += RETRY_MS;
    await h.driver.tick();
    expect(h.fetched).toEqual([E, E + 1, E]);

    const again = harness('cache');
    again.t = h.t;
    expect(again.driver.restoreCached()?.body.epoch).toBe(E + 1);
    expect(again.view.has(E + 1)).toBe(true);
  });
});
