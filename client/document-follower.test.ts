import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_GEOMETRY } from '../proto/sphinx/index.ts';
import { DEFAULT_MIXING } from '../proto/mixing/params.ts';
import {
  buildDocumentBody,
  combineSignatures,
  encodeCheckedDocumentBody,
  epochStart,
  generateIdentity,
  PkiError,
  signDocumentBody,
  verifyDescriptor,
  verifyDocument,
  type DocumentBody,
  type DocumentParams,
  type EpochConfig,
  type VerifiedDocument,
} from '../proto/pki/index.ts';
import { testNode } from '../test/support/pki.ts';
import { seededUniform } from '../test/support/in-process-mixnet.ts';
import { DocumentFollower, FETCH_AHEAD, planFetch, retryDelay, type FetchPlan } from './document-follower.ts';
import { OverlayConnection } from './network.ts';

const EC: EpochConfig = { origin: 1_000_000, length: 600, grace: 60 };
const AUTH = generateIdentity();
const PARAMS: DocumentParams = {
  epochConfig: EC,
  geometry: DEFAULT_GEOMETRY,
  mixing: DEFAULT_MIXING,
  numLayers: 1,
  authorities: [AUTH.publicKey],
  threshold: 1,
};
const E = 50;

function signed(epoch: number): VerifiedDocument {
  const body = encodeCheckedDocumentBody(
    buildDocumentBody(
      PARAMS,
      epoch,
      [testNode(epoch, 1, 'mix'), testNode(epoch, 2, 'gateway')].map((n) => verifyDescriptor(n.descriptor)),
    ),
  );
  return verifyDocument(combineSignatures(body, [signDocumentBody(AUTH, body)]), { authorities: [AUTH.publicKey], threshold: 1 });
}
const D = [signed(E), signed(E + 1)];
const bodies = (...es: number[]): DocumentBody[] => es.map((e) => D[e - E]!.body);
const at = (e: number, f: number) => epochStart(EC, e) + f * EC.length;

describe('when the client fetches documents', () => {
  const u = seededUniform(9);

  it('with no document, at once, then backing off from 5 s to a minute', () => {
    expect(planFetch([], 1000, 0, 300, u)).toEqual({ which: 'latest', at: 1000 });
    const waits = [1, 2, 3, 4, 8].map((f) => planFetch([], 1000, f, 300, () => 0.5).at - 1000);
    expect(waits).toEqual([5, 10, 20, 40, 60]);
  });

  it('ahead of each boundary, at a random point between 80 % and 95 % of the epoch', () => {
    for (let i = 0; i < 200; i++) {
      const p = planFetch(bodies(E), at(E, 0.1), 0, 1e9, u);
      expect(p.which).toBe('next');
      expect(p.at).toBeGreaterThanOrEqual(at(E, FETCH_AHEAD.from));
      expect(p.at).toBeLessThanOrEqual(at(E, FETCH_AHEAD.to));
    }
    // the times spread over the window (clients do not all ask at once)
    const ts = Array.from({ length: 200 }, () => planFetch(bodies(E), at(E, 0.1), 0, 1e9, u).at);
    expect(Math.max(...ts) - Math.min(...ts)).toBeGreaterThan(0.1 * EC.length);
    // in the window without the next one: now; with it: in the next epoch's window
    expect(planFetch(bodies(E), at(E, 0.9), 0, 1e9, u)).toEqual({ which: 'next', at: at(E, 0.9) });
    const after = planFetch(bodies(E, E + 1), at(E, 0.9), 0, 1e9, u);
    expect(after.which).toBe('next');
    expect(after.at).toBeGreaterThanOrEqual(at(E + 1, FETCH_AHEAD.from));
    // refresh_s still bounds the wait
    expect(planFetch(bodies(E), at(E, 0.1), 0, 10, () => 0.5)).toEqual({ which: 'latest', at: at(E, 0.1) + 10 });
  });

  it('with only a stale document, asks for the newest published one again and again', () => {
    expect(planFetch(bodies(E), at(E + 2, 0.1), 0, 300, u)).toEqual({ which: 'latest', at: at(E + 2, 0.1) });
    const p = planFetch(bodies(E), at(E + 2, 0.1), 3, 300, () => 0.5);
    expect(p.which).toBe('latest');
    expect(p.at - at(E + 2, 0.1)).toBe(Math.min(60, (EC.length / 32) * 4));
  });

  it('never plans in the past, and never waits longer than refresh_s (or the retry cap)', () => {
    fc.assert(
      fc.property(
        fc.double({ min: at(E, 0), max: at(E + 5, 1), noNaN: true }),
        fc.integer({ min: 0, max: 20 }),
        fc.integer({ min: 1, max: 3600 }),
        (t, f, r) => {
          for (const held of [[], bodies(E), bodies(E, E + 1)]) {
            const p: FetchPlan = planFetch(held, t, f, r, u);
            expect(p.at).toBeGreaterThanOrEqual(t);
            expect(p.at - t).toBeLessThanOrEqual(Math.max(r * 1.25, 90) + 1e-6);
          }
        },
      ),
    );
    expect(retryDelay(0, 5, 60, () => 0)).toBe(2.5);
  });
});

describe('the follower', () => {
  const closers: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });

  it('attaches when a document verifies, saves what routes, and warns while it has none or a stale one', async () => {
    const clock = { t: at(E, 0.5) };
    const o = await OverlayConnection.open({ mailboxId: new Uint8Array(32), home: '', log: null, now: () => clock.t });
    closers.push(() => o.close());
    const warnings: string[] = [];
    const saved: number[] = [];
    let up = false;
    const asked: string[] = [];
    const f = new DocumentFollower({
      target: o,
      fetch: async (which) => {
        asked.push(which);
        if (!up) throw new PkiError('unavailable', 'authorities unreachable');
        return which === 'next' ? D[1]! : D[0]!;
      },
      save: (d) => saved.push(d.body.epoch),
      refreshS: 300,
      uniform: seededUniform(2),
      now: () => clock.t,
      log: { info() {}, warn: (_o, m) => warnings.push(m ?? '') },
    });
    await f.runOnce(); // authorities down, no document
    expect(o.document()).toBeNull();
    expect(warnings.at(-1)).toMatch(/no valid network document .* held/);
    up = true;
    await f.runOnce();
    expect(o.document()!.epoch).toBe(E);
    expect(saved).toEqual([E]);
    // the authorities go away again; two epochs later the client still routes by E, and says so
    up = false;
    clock.t = at(E + 2, 0.3);
    await f.runOnce();
    expect(o.document()!.epoch).toBe(E + 2);
    expect(warnings.at(-1)).toMatch(/stale/);
    expect(f.counts).toEqual({ fetched: 1, failed: 2 });
    expect(asked).toEqual(['latest', 'latest', 'latest']);
    f.stop();
  });
});
