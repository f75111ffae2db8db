import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AckStatus } from '../proto/fragment/index.ts';
import { DEFAULT_GEOMETRY, createSurb, fastestSuite, packetFromSurb, type SurbUseResult } from '../proto/sphinx/index.ts';
import { deriveIssuerKeys, useFastestTokenChecks, type Token } from '../proto/tokens/index.ts';
import { UnwrapPool } from '../runtime/hop/unwrap-pool.ts';
import { fragmentPayloads, messageFragments } from '../test/support/fragments.ts';
import { issuedTokens } from '../test/support/tokens.ts';
import { PoolReplies, PoolTokenChecks } from './crypto-offload.ts';
import { GroupCommit } from './group-commit.ts';
import { Intake, type IntakeResult } from './intake.ts';
import { GatewayStore } from './store.ts';

const issuer = deriveIssuerKeys(new Uint8Array(32).fill(3));
const BOB = 'bob@example.org';
const NOW = 1_000_000;
const msg = (n: number, c = 0x61) => new Uint8Array(n).fill(c);
type Answer = { status: AckStatus | string; reason?: string };
const answerOf = (r: IntakeResult): Answer =>
  r.kind === 'ack' ? { status: r.status, ...(r.tokenReason ? { reason: r.tokenReason } : {}) } : { status: r.kind === 'drop' ? r.reason : r.kind };
/** A token the issuer never computed: it decodes, its POPRF output does not verify. */
const forged = (): Token => ({ keyEpoch: 1, input: new Uint8Array(randomBytes(32)), output: new Uint8Array(randomBytes(64)) });

async function until(ok: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let dir: string;
let pool: UnwrapPool | undefined;
beforeAll(async () => {
  await useFastestTokenChecks();
});
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pmx-offload-'));
});
afterEach(async () => {
  await pool?.close();
  pool = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** The gateway's intake wired as the daemon wires it: token checks on `p` ahead of the group commit. */
function gateway(p: UnwrapPool | undefined) {
  const store = new GatewayStore(join(dir, 'gw.sqlite'));
  store.addUser(BOB, { now: NOW });
  const intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => NOW });
  const checks = new PoolTokenChecks(() => p, issuer);
  const gc = new GroupCommit(store, intake, { maxWaitMs: 2, maxFragments: 64, checks: (r, t, k, done) => checks.check(r, t, k, done) });
  return { store, intake, checks, gc };
}

/** A pool of one worker that dies on its next `times` jobs. */
async function crashingPool(times: number): Promise<UnwrapPool> {
  const crashes = new SharedArrayBuffer(4);
  Atomics.store(new Int32Array(crashes), 0, times);
  return (pool = await UnwrapPool.start({ workers: 1, suite: fastestSuite.name, testCrashes: crashes }));
}

describe('token checks on the worker pool', () => {
  it('one check per token in flight; of two messages sharing a token, the first decided binds it, the other is refused spent', async () => {
    const p = (pool = await UnwrapPool.start({ workers: 1, suite: fastestSuite.name }));
    const { store, intake, gc } = gateway(p);
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const a = fragmentPayloads(messageFragments(msg(5000, 0x61), BOB, t!));
    const b = fragmentPayloads(messageFragments(msg(5000, 0x62), BOB, t!));
    const f = fragmentPayloads(messageFragments(msg(100), BOB, forged()));
    expect(a.length).toBe(3);
    const got = new Map<string, Answer[]>([
      ['a', []],
      ['b', []],
      ['f', []],
    ]);
    // all in flight at once, interleaved, in one event-loop turn
    for (let i = 0; i < 3; i++) {
      gc.submit(a[i]!, (r) => got.get('a')!.push(answerOf(r)));
      gc.submit(b[i]!, (r) => got.get('b')!.push(answerOf(r)));
    }
    gc.submit(f[0]!, (r) => got.get('f')!.push(answerOf(r)));
    expect(gc.pending).toBe(7);
    await until(() => [...got.values()].flat().length === 7, 'all answered');
    expect(got.get('a')).toEqual([{ status: AckStatus.Stored }, { status: AckStatus.Stored }, { status: AckStatus.Queued }]);
    expect(got.get('b')).toEqual(Array(3).fill({ status: AckStatus.TokenRefused, reason: 'spent' }));
    expect(got.get('f')).toEqual([{ status: AckStatus.TokenRefused, reason: 'invalid' }]);
    // the two distinct tokens checked in one job, each once
    expect(p.stats.batches).toBe(1);
    expect(intake.counters.tokensAccepted).toBe(1);
    expect(store.queueDepth().queued).toBe(1);
    // a resend after completion needs no check: Duplicate at once
    gc.submit(a[0]!, (r) => got.get('a')!.push(answerOf(r)));
    await until(() => got.get('a')!.length === 4, 'resend answered');
    expect(got.get('a')!.at(-1)).toEqual({ status: AckStatus.Duplicate });
    expect(p.stats.batches).toBe(1);
    store.close();
  });

  for (const crashes of [1, 2]) {
    it(`a worker crashing ${crashes === 1 ? 'once (checks run again)' : 'twice (checked on the event loop)'} while checking: nothing lost, nothing wrongly accepted`, async () => {
      const p = await crashingPool(crashes);
      const { store, gc } = gateway(p);
      const [t] = issuedTokens(issuer, BOB, 1, 1);
      const good = fragmentPayloads(messageFragments(msg(3000), BOB, t!));
      const bad = fragmentPayloads(messageFragments(msg(3000), BOB, forged()));
      const got: Answer[] = [];
      for (const x of [...good, ...bad]) gc.submit(x, (r) => got.push(answerOf(r)));
      await until(() => got.length === good.length + bad.length, 'all answered');
      expect(got).toEqual([
        { status: AckStatus.Stored },
        { status: AckStatus.Queued },
        ...bad.map(() => ({ status: AckStatus.TokenRefused, reason: 'invalid' })),
      ]);
      expect(p.stats.crashes).toBe(crashes);
      expect(store.queueDepth().queued).toBe(1);
      store.close();
    });
  }

  it('settle decides the fragments still waiting for their check, on the event loop, each answered once', async () => {
    const p = (pool = await UnwrapPool.start({ workers: 1, suite: fastestSuite.name }));
    const { store, checks, gc } = gateway(p);
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const frags = fragmentPayloads(messageFragments(msg(3000), BOB, t!));
    const got: Answer[] = [];
    for (const x of frags) gc.submit(x, (r) => got.push(answerOf(r)));
    expect(got).toEqual([]);
    gc.settle();
    expect(got).toEqual([{ status: AckStatus.Stored }, { status: AckStatus.Queued }]);
    expect(gc.pending).toBe(0);
    // the pool's late answer finds nothing waiting
    await until(() => checks.inFlight === 0, 'the check came back');
    await new Promise((r) => setTimeout(r, 20));
    expect(got.length).toBe(2);
    store.close();
  });

  it('without a pool the checks run in the transaction, as before', async () => {
    const { store, intake, gc } = gateway(undefined);
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const got: Answer[] = [];
    for (const x of fragmentPayloads(messageFragments(msg(3000), BOB, t!))) gc.submit(x, (r) => got.push(answerOf(r)));
    expect(gc.pending).toBe(2);
    gc.flush();
    expect(got).toEqual([{ status: AckStatus.Stored }, { status: AckStatus.Queued }]);
    expect(intake.counters.tokensAccepted).toBe(1);
    store.close();
  });
});

describe('ACK packets on the worker pool', () => {
  const geom = DEFAULT_GEOMETRY;
  const hop = () => {
    const sk = new Uint8Array(randomBytes(32));
    return { nodeId: new Uint8Array(randomBytes(32)), publicKey: fastestSuite.publicKey(sk), delayMs: 0 };
  };
  const surb = createSurb(fastestSuite, geom, { route: [hop(), hop()], queueId: new Uint8Array(32), surbId: new Uint8Array(16) }).surb;
  const payload = new Uint8Array([1, 2, 3]);

  for (const crashes of [0, 2]) {
    it(`builds the packet packetFromSurb builds${crashes ? ', on the event loop when the job took down two workers' : ''}; refusals as they are`, async () => {
      const p = await crashingPool(crashes);
      const replies = new PoolReplies(() => p);
      const got: SurbUseResult[] = [];
      const payload2 = new Uint8Array(geom.payloadSize).fill(9);
      replies.build(geom, surb, payload, (r) => (got[0] = r));
      replies.build(geom, surb.subarray(1), payload, (r) => (got[1] = r));
      replies.build(geom, surb, new Uint8Array(geom.payloadSize + 1), (r) => (got[2] = r));
      replies.build(geom, surb, payload2, (r) => (got[3] = r));
      // refused for their lengths: at once; the others from the pool
      expect(got.filter(Boolean)).toEqual([
        { ok: false, reason: 'bad-length' },
        { ok: false, reason: 'bad-payload-size' },
      ]);
      await until(() => got.filter(Boolean).length === 4, 'built');
      expect(got[0]).toEqual(packetFromSurb(fastestSuite, geom, surb, payload));
      expect(got[3]).toEqual(packetFromSurb(fastestSuite, geom, surb, payload2));
      expect(p.stats.crashes).toBe(crashes);
    });
  }

  it('a turn that began with a refusal does not hold back the next builds; buffers are reused across jobs', async () => {
    const p = (pool = await UnwrapPool.start({ workers: 1, suite: fastestSuite.name }));
    const replies = new PoolReplies(() => p);
    const got: SurbUseResult[] = [];
    replies.build(geom, surb.subarray(1), payload, (r) => got.push(r));
    expect(got).toEqual([{ ok: false, reason: 'bad-length' }]);
    await new Promise((r) => setImmediate(r));
    for (let round = 0; round < 3; round++) {
      const want = got.length + 2;
      replies.build(geom, surb, payload, (r) => got.push(r));
      replies.build(geom, surb, new Uint8Array([round]), (r) => got.push(r));
      await until(() => got.length === want, `round ${round} built`);
      expect(got.at(-1)).toEqual(packetFromSurb(fastestSuite, geom, surb, new Uint8Array([round])));
    }
    expect(p.stats.batches).toBe(3);
  });

  it('without a pool: built at once', () => {
    const got: SurbUseResult[] = [];
    new PoolReplies(() => undefined).build(geom, surb, payload, (r) => got.push(r));
    expect(got).toEqual([packetFromSurb(fastestSuite, geom, surb, payload)]);
  });
});
