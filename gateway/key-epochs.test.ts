import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AckStatus } from '../proto/fragment/index.ts';
import { deriveIssuerKeys } from '../proto/tokens/index.ts';
import { Intake } from './intake.ts';
import { acceptsAt, currentEpoch, planEpochs, revokeAll, type EpochRow } from './key-epochs.ts';
import { GatewayStore } from './store.ts';
import { messageFragments } from '../test/support/fragments.ts';
import { issuedTokens } from '../test/support/tokens.ts';

const DAY = 86_400;
const P = { rotationS: 30 * DAY, graceS: 2 * DAY };
const T0 = 1_800_000_000;

/** Applies planEpochs the way the store does. */
function step(rows: EpochRow[], now: number, policy = P): EpochRow[] {
  const highest = Math.max(0, ...rows.map((r) => r.keyEpoch));
  const c = planEpochs(rows, highest, now, policy);
  return [...rows.map((r) => ({ ...r, ends: c.end.find((e) => e.keyEpoch === r.keyEpoch)?.ends ?? r.ends })), ...c.add].sort((a, b) => a.keyEpoch - b.keyEpoch);
}

describe('key-epoch schedule (pure)', () => {
  it('an epoch covers now and its successor is scheduled at its end; both verify in the grace window, only the new one after', () => {
    let rows = step([], T0);
    expect(rows).toEqual([
      { keyEpoch: 1, starts: T0, ends: T0 + 30 * DAY, graceS: 2 * DAY, revoked: false },
      { keyEpoch: 2, starts: T0 + 30 * DAY, ends: T0 + 60 * DAY, graceS: 2 * DAY, revoked: false },
    ]);
    const [e1, e2] = rows;
    expect([acceptsAt(e1, T0), acceptsAt(e2, T0)]).toEqual([true, false]); // next epoch: requestable ahead, not yet valid
    // a few minutes early is clock skew, not an early token
    expect([acceptsAt(e2, e2!.starts - 60), acceptsAt(e2, e2!.starts - 600)]).toEqual([true, false]);
    const inGrace = T0 + 31 * DAY;
    expect(currentEpoch(rows, inGrace)!.keyEpoch).toBe(2);
    expect([acceptsAt(e1, inGrace), acceptsAt(e2, inGrace)]).toEqual([true, true]);
    const after = T0 + 32 * DAY;
    expect([acceptsAt(e1, after), acceptsAt(e2, after)]).toEqual([false, true]);
    rows = step(rows, after);
    expect(rows.map((r) => r.keyEpoch)).toEqual([1, 2, 3]);
    expect(rows[2]!.starts).toBe(T0 + 60 * DAY);
  });

  it('after an outage the schedule resumes where it would be (numbers a client can predict); a policy change applies from the epoch after the next', () => {
    const rows = step([], T0);
    const late = step(rows, T0 + 100 * DAY); // epochs 3 and 4 were never scheduled; 4 covers day 100
    expect(late.slice(2).map((r) => [r.keyEpoch, (r.starts - T0) / DAY, (r.ends! - T0) / DAY])).toEqual([
      [4, 90, 120],
      [5, 120, 150],
    ]);
    const changed = step(late, T0 + 101 * DAY, { rotationS: 10 * DAY, graceS: DAY });
    expect(changed.length).toBe(late.length); // 5 is announced already: unchanged
    const later = step(changed, T0 + 121 * DAY, { rotationS: 10 * DAY, graceS: DAY });
    expect(later.at(-1)).toMatchObject({ keyEpoch: 6, starts: T0 + 150 * DAY, ends: T0 + 160 * DAY, graceS: DAY });
  });

  it('"never" to a rotation schedules the end of the current epoch one period later; revocation ends everything now', () => {
    let rows = step([], T0, { rotationS: 0, graceS: 0 });
    expect(rows).toEqual([{ keyEpoch: 1, starts: T0, ends: null, graceS: 0, revoked: false }]);
    expect(acceptsAt(rows[0], T0 + 1000 * DAY)).toBe(true);
    rows = step(rows, T0 + 5 * DAY);
    expect(rows.map((r) => [r.keyEpoch, r.ends])).toEqual([
      [1, T0 + 35 * DAY],
      [2, T0 + 65 * DAY],
    ]);
    const r = revokeAll(rows, 2, T0 + 6 * DAY, P);
    expect(r.revoke).toEqual([1, 2]);
    expect(r.add).toMatchObject({ keyEpoch: 3, starts: T0 + 6 * DAY, ends: T0 + 36 * DAY });
    expect(acceptsAt({ ...rows[0]!, revoked: true }, T0 + 6 * DAY)).toBe(false);
  });
});

describe('key epochs in the gateway store, with the intake', () => {
  const issuer = deriveIssuerKeys(new Uint8Array(32).fill(5));
  const BOB = 'bob@example.org';
  let dir: string;
  let store: GatewayStore;
  let nowMs: number;
  let intake: Intake;
  const body = () => new Uint8Array(Buffer.from('Subject: x\r\n\r\nhello\r\n'));
  const send = (keyEpoch: number) => {
    const [t] = issuedTokens(issuer, BOB, keyEpoch, 1);
    const r = intake.handleFragment(messageFragments(body(), BOB, t!)[0]!);
    return r.kind === 'ack' ? [r.status, r.tokenReason] : [r.reason];
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pmx-keyepochs-'));
    store = new GatewayStore(join(dir, 'gw.sqlite'), { rotation: P });
    nowMs = T0 * 1000;
    store.addUser(BOB, { now: nowMs });
    intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => nowMs });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a token past its epoch end + grace is refused as expired; inside grace both epochs are admitted', () => {
    expect(send(1)).toEqual([AckStatus.Queued, undefined]);
    expect(send(2)).toEqual([AckStatus.TokenRefused, 'expired']); // next epoch, not started
    nowMs = (T0 + 31 * DAY) * 1000; // epoch 2 current, epoch 1 in grace
    expect(send(1)).toEqual([AckStatus.Queued, undefined]);
    expect(send(2)).toEqual([AckStatus.Queued, undefined]);
    nowMs = (T0 + 32 * DAY) * 1000;
    expect(send(1)).toEqual([AckStatus.TokenRefused, 'expired']);
    expect(send(2)).toEqual([AckStatus.Queued, undefined]);
    expect(send(3)).toEqual([AckStatus.TokenRefused, 'expired']); // never scheduled
  });

  it('the spent set is purged per key epoch once it is past grace (or revoked), and stays bounded; the highest epoch row stays', () => {
    for (let i = 0; i < 3; i++) expect(send(1)[0]).toBe(AckStatus.Queued);
    nowMs = (T0 + 31 * DAY) * 1000;
    store.schedule(BOB, nowMs / 1000);
    for (let i = 0; i < 2; i++) expect(send(2)[0]).toBe(AckStatus.Queued);
    expect(store.purgeOldSpent(nowMs)).toEqual({ spent: 0, epochs: 0 }); // epoch 1 still in grace
    nowMs = (T0 + 32 * DAY) * 1000;
    expect(store.purgeOldSpent(nowMs)).toEqual({ spent: 3, epochs: 1 });
    expect(store.spentCount()).toBe(2);
    store.rotateUser(BOB, nowMs / 1000); // revokes 2 and the scheduled 3; 4 starts now
    expect(store.purgeOldSpent(nowMs)).toEqual({ spent: 2, epochs: 2 });
    expect(store.spentCount()).toBe(0);
    expect(store.keyEpochs(BOB).map((e) => [e.keyEpoch, e.revoked])).toEqual([[4, false]]);
    expect(send(4)).toEqual([AckStatus.Queued, undefined]);
    expect(send(2)).toEqual([AckStatus.TokenRefused, 'expired']);
  });

  it('caps the tokens issued per key epoch', () => {
    expect(store.countIssued(BOB, 1, 60, 100)).toBe(true);
    expect(store.countIssued(BOB, 1, 41, 100)).toBe(false);
    expect(store.countIssued(BOB, 1, 40, 100)).toBe(true);
    expect(store.issuedIn(BOB, 1)).toBe(100);
    expect(store.countIssued(BOB, 2, 1, 100)).toBe(true); // the next epoch has its own cap
    expect(store.countIssued(BOB, 9, 1, 100)).toBe(false); // not scheduled
  });

  it('migrates a version-1 database: a user keeps its key epoch, which the rotation then ends one period later', () => {
    store.close();
    rmSync(join(dir, 'gw.sqlite'));
    const old = new Database(join(dir, 'gw.sqlite'));
    old.exec(`CREATE TABLE users (address TEXT PRIMARY KEY, secret_hash BLOB NOT NULL, key_epoch INTEGER NOT NULL,
      policy TEXT NOT NULL CHECK (policy IN ('tokens','open')), rate_per_hour INTEGER NOT NULL, created INTEGER NOT NULL);
      INSERT INTO users VALUES ('bob@example.org', x'00', 3, 'tokens', 100, ${T0 - 10 * DAY});
      PRAGMA user_version = 1;`);
    old.close();
    store = new GatewayStore(join(dir, 'gw.sqlite'), { rotation: P });
    intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => nowMs });
    expect(send(3)).toEqual([AckStatus.Queued, undefined]); // its tokens keep working
    const s = store.schedule(BOB, T0);
    expect([s.current.keyEpoch, s.current.starts, s.current.ends, s.next?.keyEpoch]).toEqual([3, T0 - 10 * DAY, T0 + 30 * DAY, 4]);
    expect(store.getUser(BOB)!.highestKeyEpoch).toBe(4);
  });
});
