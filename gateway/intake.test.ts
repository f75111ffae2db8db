import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AckStatus, encodeFragment } from '../proto/fragment/index.ts';
import { deriveIssuerKeys, encodeToken, tokenSpendKey } from '../proto/tokens/index.ts';
import { Intake } from './intake.ts';
import { GatewayStore } from './store.ts';
import { messageFragments } from '../test/support/fragments.ts';
import { issuedTokens } from '../test/support/tokens.ts';

const issuer = deriveIssuerKeys(new Uint8Array(32).fill(7));
const other = deriveIssuerKeys(new Uint8Array(32).fill(8));
const BOB = 'bob@example.org';
const msg = (n: number) => new Uint8Array(Buffer.from('Subject: hi\n\n' + 'x'.repeat(n) + '\n'));

let dir: string;
let store: GatewayStore;
let intake: Intake;
let now = 1_000_000;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pmx-intake-'));
  store = new GatewayStore(join(dir, 'gw.sqlite'));
  now = 1_000_000;
  store.addUser(BOB, { now });
  intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => now });
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const statuses = (frags: ReturnType<typeof messageFragments>) =>
  frags.map((f) => {
    const r = intake.handleFragment(f);
    return r.kind === 'ack' ? r.status : r.reason;
  });

describe('intake', () => {
  it('reassembles a multi-fragment message in any order and queues it once', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const m = msg(6000);
    const frags = messageFragments(m, BOB, t!);
    expect(frags.length).toBe(4);
    const order = [2, 0, 3, 1];
    const st = statuses(order.map((i) => frags[i]!));
    expect(st).toEqual([AckStatus.Stored, AckStatus.Stored, AckStatus.Stored, AckStatus.Queued]);
    const q = store.handoffOf(frags[0]!.messageId)!;
    expect(Buffer.compare(q.body!, Buffer.from(m))).toBe(0);
    expect(q.state).toBe('queued');
    // resends after the message is queued are harmless
    expect(statuses([frags[1]!, frags[0]!])).toEqual([AckStatus.Duplicate, AckStatus.Duplicate]);
    expect(store.listQueue().length).toBe(1);
    expect(intake.counters.messagesCompleted).toBe(1);
    expect(intake.counters.tokensAccepted).toBe(1);
    expect(store.partialCount()).toBe(0);
  });

  it('duplicate fragments before completion are harmless', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const frags = messageFragments(msg(3000), BOB, t!);
    expect(statuses([frags[0]!, frags[0]!, frags[0]!])).toEqual([AckStatus.Stored, AckStatus.Stored, AckStatus.Stored]);
    expect(statuses(frags.slice(1)).at(-1)).toBe(AckStatus.Queued);
  });

  it('the fragment that completes a message is not stored: the body is the stored ones and the one in hand', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const m = msg(5000);
    const frags = messageFragments(m, BOB, t!);
    expect(frags.length).toBe(3);
    expect(statuses([frags[2]!, frags[0]!])).toEqual([AckStatus.Stored, AckStatus.Stored]);
    const put = store.putFragment.bind(store);
    const stored: number[] = [];
    store.putFragment = (id, index, data, fits) => {
      stored.push(index);
      return put(id, index, data, fits);
    };
    // a resend of a stored index while one is missing, and a last one that does not fit: nothing stored
    const long = { ...frags[1]!, data: new Uint8Array(frags[1]!.data.length + 1) };
    expect(statuses([frags[0]!, long])).toEqual([AckStatus.Stored, AckStatus.Inconsistent]);
    expect(store.fragments(frags[0]!.messageId).map((x) => x.idx)).toEqual([0, 2]);
    expect(statuses([frags[1]!])).toEqual([AckStatus.Queued]);
    expect(stored).toEqual([]);
    expect(Buffer.compare(store.handoffOf(frags[0]!.messageId)!.body!, Buffer.from(m))).toBe(0);
    expect(store.fragments(frags[0]!.messageId)).toEqual([]);
    expect(store.partialCount()).toBe(0);
    expect(intake.counters).toMatchObject({ fragmentsStored: 3, duplicates: 1, messagesCompleted: 1 });
  });

  it('refuses forged, wrong-recipient, expired (rotated), malformed, missing and spent tokens, storing nothing', () => {
    store.addUser('carol@example.org', { now });
    const [forged] = issuedTokens(other, BOB, 1, 1);
    const [carols] = issuedTokens(issuer, 'carol@example.org', 1, 1);
    const [good, good2] = issuedTokens(issuer, BOB, 1, 2);
    const reason = (f: ReturnType<typeof messageFragments>[number]) => {
      const r = intake.handleFragment(f);
      return r.kind === 'ack' ? [r.status, r.tokenReason] : [r.reason];
    };
    expect(reason(messageFragments(msg(10), BOB, forged!)[0]!)).toEqual([AckStatus.TokenRefused, 'invalid']);
    expect(reason(messageFragments(msg(10), BOB, carols!)[0]!)).toEqual([AckStatus.TokenRefused, 'invalid']);
    expect(reason(messageFragments(msg(10), BOB, null)[0]!)).toEqual([AckStatus.TokenRefused, 'missing']);
    const bad = { ...messageFragments(msg(10), BOB, null)[0]!, token: new Uint8Array(99) };
    expect(reason(bad)).toEqual([AckStatus.TokenRefused, 'malformed']);
    // spent: the same token for a second message id
    expect(reason(messageFragments(msg(10), BOB, good!)[0]!)).toEqual([AckStatus.Queued, undefined]);
    expect(reason(messageFragments(msg(10), BOB, good!)[0]!)).toEqual([AckStatus.TokenRefused, 'spent']);
    // expired: rotate revokes good2 (and the next epoch, 2, already scheduled: the fresh one is 3)
    const freshEpoch = store.rotateUser(BOB, now / 1000);
    expect(freshEpoch).toBe(3);
    expect(reason(messageFragments(msg(10), BOB, good2!)[0]!)).toEqual([AckStatus.TokenRefused, 'expired']);
    const [fresh] = issuedTokens(issuer, BOB, freshEpoch, 1);
    expect(reason(messageFragments(msg(10), BOB, fresh!)[0]!)).toEqual([AckStatus.Queued, undefined]);
    expect(intake.counters.tokensRejected).toEqual({ malformed: 1, expired: 1, invalid: 2, spent: 1, missing: 1 });
    expect(store.listQueue().length).toBe(2);
    expect(store.partialCount()).toBe(0);
  });

  it('token work once per message: later fragments need no check of their own, yet a revocation mid-message refuses them', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const payloads = messageFragments(msg(8000), BOB, t!).map((f) => encodeFragment(f, 2048));
    expect(payloads.length).toBe(5);
    const first = intake.prepare(payloads[0]!);
    expect(intake.pendingCheck(first)).toEqual({ recipient: BOB, token: encodeToken(t!), key: expect.any(String) });
    expect(intake.handlePrepared(first)).toMatchObject({ status: AckStatus.Stored, tokenAccepted: true });
    // the second fragment finds what the first established (one POPRF evaluation per message)
    const second = intake.prepare(payloads[1]!);
    expect(intake.pendingCheck(second)).toBeUndefined();
    expect(second.facts).toBe(first.facts);
    expect(intake.handlePrepared(second)).toMatchObject({ status: AckStatus.Stored, tokenAccepted: false });
    // what the store says is still read per fragment: the key epoch revoked now refuses the rest
    const fresh = store.rotateUser(BOB, now / 1000);
    expect(intake.handlePayload(payloads[2]!)).toMatchObject({ status: AckStatus.TokenRefused, tokenReason: 'expired' });
    // a check run elsewhere (the worker pool) is what the decision uses, and its absence means "check here"
    const [u] = issuedTokens(issuer, BOB, fresh, 1);
    const p = intake.prepare(messageFragments(msg(10), BOB, u!).map((f) => encodeFragment(f, 2048))[0]!);
    intake.recordCheck(p, false);
    expect(intake.handlePrepared(p)).toMatchObject({ status: AckStatus.TokenRefused, tokenReason: 'invalid' });
  });

  it('a token bound to one message id stays valid for that message only', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const frags = messageFragments(msg(3000), BOB, t!);
    expect(statuses([frags[0]!])).toEqual([AckStatus.Stored]);
    const stolen = messageFragments(msg(3000), BOB, t!);
    expect(statuses([stolen[0]!])).toEqual([AckStatus.TokenRefused]);
    expect(statuses(frags.slice(1)).at(-1)).toBe(AckStatus.Queued);
  });

  it('drops foreign domains silently and refuses unknown users of a served domain like a bad token', () => {
    const [t] = issuedTokens(issuer, 'eve@elsewhere.net', 1, 1);
    expect(intake.handleFragment(messageFragments(msg(10), 'eve@elsewhere.net', t!)[0]!)).toEqual({ kind: 'drop', reason: 'foreign-domain' });
    // by default an unknown user is answered as a known one without a valid token (no enumeration)
    const r = intake.handleFragment(messageFragments(msg(10), 'nobody@example.org', null)[0]!);
    expect(r.kind === 'ack' && r.status).toBe(AckStatus.TokenRefused);
    expect(intake.counters.refused['unknown-recipient']).toBe(1);
    // UnknownRecipient is the gateway's choice
    const telling = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, ackUnknownRecipient: true });
    const r2 = telling.handleFragment(messageFragments(msg(10), 'nobody@example.org', null)[0]!);
    expect(r2.kind === 'ack' && r2.status).toBe(AckStatus.UnknownRecipient);
    expect(intake.handlePayload(new Uint8Array([1, 9, 0]))).toEqual({ kind: 'drop', reason: 'malformed' });
    expect(store.listQueue().length).toBe(0);
  });

  it('refuses inconsistent counts, lengths and tokens, and too-large messages', () => {
    const [t, t2] = issuedTokens(issuer, BOB, 1, 2);
    const frags = messageFragments(msg(3000), BOB, t!);
    expect(statuses([frags[0]!])).toEqual([AckStatus.Stored]);
    expect(statuses([{ ...frags[1]!, count: 5 }])).toEqual([AckStatus.Inconsistent]);
    expect(statuses([{ ...frags[1]!, totalLength: frags[1]!.totalLength + 1 }])).toEqual([AckStatus.Inconsistent]);
    expect(statuses([{ ...frags[1]!, token: encodeToken(t2!) }])).toEqual([AckStatus.Inconsistent]);
    // data beyond the declared total
    const big = messageFragments(msg(100), BOB, t2!);
    expect(statuses([{ ...big[0]!, count: 2, index: 1, data: big[0]!.data.subarray(0, 50) }])).toEqual([AckStatus.Stored]);
    expect(statuses([{ ...big[0]!, count: 2, index: 0 }])).toEqual([AckStatus.Inconsistent]);
    // too large
    const [t3] = issuedTokens(issuer, BOB, 1, 1);
    const huge = messageFragments(msg(100_001), BOB, t3!);
    expect(statuses([huge[0]!])).toEqual([AckStatus.TooLarge]);
    expect(store.spentFor(tokenSpendKey(t3!))).toBeUndefined();
  });

  it('open policy needs no token and is rate limited per hour', () => {
    store.setPolicy(BOB, 'open', 2);
    expect(statuses(messageFragments(msg(10), BOB, null))).toEqual([AckStatus.Queued]);
    const two = messageFragments(msg(3000), BOB, null);
    expect(statuses([two[0]!])).toEqual([AckStatus.Stored]);
    expect(statuses(messageFragments(msg(10), BOB, null))).toEqual([AckStatus.RateLimited]);
    expect(statuses(two.slice(1)).at(-1)).toBe(AckStatus.Queued); // later fragments of an admitted message pass
    now += 3_600_000;
    expect(statuses(messageFragments(msg(10), BOB, null))).toEqual([AckStatus.Queued]);
  });

  it('expires incomplete messages after the reassembly TTL; their token stays spent', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const frags = messageFragments(msg(3000), BOB, t!);
    statuses([frags[0]!]);
    expect(store.purgeExpiredPartials(now + 59_999)).toBe(0);
    expect(store.purgeExpiredPartials(now + 60_000)).toBe(1);
    expect(store.fragments(frags[0]!.messageId).length).toBe(0);
  });

  it('survives a reopen mid-reassembly (durable fragments and spent set)', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const frags = messageFragments(msg(3000), BOB, t!);
    statuses([frags[0]!]);
    store.close();
    store = new GatewayStore(join(dir, 'gw.sqlite'));
    intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => now });
    expect(statuses(frags.slice(1)).at(-1)).toBe(AckStatus.Queued);
    expect(statuses(messageFragments(msg(5), BOB, t!))).toEqual([AckStatus.TokenRefused]);
  });

  it('handlePayload decodes encoded fragments with zero padding', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const f = messageFragments(msg(10), BOB, t!)[0]!;
    const r = intake.handlePayload(encodeFragment(f, 2048));
    expect(r.kind === 'ack' && r.status).toBe(AckStatus.Queued);
  });
});

describe('store: mailboxes and users', () => {
  it('bounds mailboxes by items and TTL, oldest dropped first', () => {
    const id = new Uint8Array(32).fill(1);
    let dropped = 0;
    for (let i = 0; i < 5; i++) dropped += store.mailboxPut(id, { surbId: new Uint8Array(16).fill(i), payload: new Uint8Array([i]) }, 1000, 500, 3);
    expect(dropped).toBe(2);
    expect(store.mailboxTake(id, 1000).map((x) => x.payload[0])).toEqual([2, 3, 4]);
    expect(store.mailboxTake(id, 1000)).toEqual([]);
    store.mailboxPut(id, { surbId: new Uint8Array(16).fill(9), payload: new Uint8Array([7]) }, 1000, 500, 3);
    expect(store.mailboxTake(id, 1500)).toEqual([]);
    expect(store.purgeExpiredMailbox(1500)).toBe(1);
  });

  it('checks per-user secrets', () => {
    const { secret } = store.addUser('dave@example.org', { now });
    expect(store.checkSecret('Dave@Example.org', secret)).toBe(true);
    expect(store.checkSecret('dave@example.org', secret + 'x')).toBe(false);
    expect(store.checkSecret('nobody@example.org', secret)).toBe(false);
    const s2 = store.resetSecret('dave@example.org');
    expect(store.checkSecret('dave@example.org', secret)).toBe(false);
    expect(store.checkSecret('dave@example.org', s2)).toBe(true);
  });

  it('migrates the fragments of schema version 3 (a WITHOUT ROWID table) into a rowid table, mid-reassembly', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const frags = messageFragments(msg(5000), BOB, t!);
    expect(statuses(frags.slice(0, 2))).toEqual([AckStatus.Stored, AckStatus.Stored]);
    store.close();
    const path = join(dir, 'gw.sqlite');
    const old = new Database(path);
    old.exec(`CREATE TABLE f3 (message_id BLOB NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (message_id, idx)) WITHOUT ROWID;
INSERT INTO f3 SELECT * FROM fragments; DROP TABLE fragments; ALTER TABLE f3 RENAME TO fragments;`);
    old.pragma('user_version = 3');
    old.close();
    store = new GatewayStore(path);
    intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => now });
    const sql = () => {
      const db = new Database(path, { readonly: true });
      try {
        return [
          (db.prepare("SELECT sql FROM sqlite_master WHERE name = 'fragments'").get() as { sql: string }).sql,
          db.pragma('user_version', { simple: true }),
        ];
      } finally {
        db.close();
      }
    };
    const [ddl, version] = sql();
    expect(ddl).not.toMatch(/WITHOUT ROWID/i);
    expect(version).toBe(4);
    expect(store.fragments(frags[0]!.messageId).map((x) => x.idx)).toEqual([0, 1]);
    // a duplicate index is still one, and the message completes from what was migrated
    expect(statuses([frags[1]!, frags[2]!])).toEqual([AckStatus.Stored, AckStatus.Queued]);
    expect(Buffer.compare(store.handoffOf(frags[0]!.messageId)!.body!, Buffer.from(msg(5000)))).toBe(0);
  });

  it('refuses a database of a newer schema than it knows, and leaves it as it was', () => {
    store.close();
    const path = join(dir, 'gw.sqlite');
    const newer = new Database(path);
    newer.pragma('user_version = 5');
    newer.exec('CREATE TABLE from_the_future (x INTEGER)');
    newer.close();
    expect(() => new GatewayStore(path)).toThrow(/schema version 5, newer than this build's 4/);
    const db = new Database(path, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(5);
    db.close();
    store = new GatewayStore(join(dir, 'other.sqlite')); // for afterEach
  });

  it('migrates a mailbox table of schema version 2: items without a SURB id (plain loops) go, SURB replies stay', () => {
    store.close();
    const path = join(dir, 'gw.sqlite');
    const old = new Database(path);
    old.exec(
      `DROP TABLE mailbox; CREATE TABLE mailbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, mailbox BLOB NOT NULL, surb_id BLOB, payload BLOB NOT NULL, expires INTEGER NOT NULL);`,
    );
    const put = old.prepare('INSERT INTO mailbox (mailbox, surb_id, payload, expires) VALUES (?,?,?,?)');
    put.run(Buffer.alloc(32, 1), null, Buffer.from([1]), 9e15);
    put.run(Buffer.alloc(32, 1), Buffer.alloc(16, 2), Buffer.from([2]), 9e15);
    old.pragma('user_version = 2');
    old.close();
    store = new GatewayStore(path);
    expect(store.mailboxTake(new Uint8Array(32).fill(1), 0)).toEqual([{ seq: 2, surbId: new Uint8Array(16).fill(2), payload: new Uint8Array([2]) }]);
    const db = new Database(path);
    expect(db.pragma('user_version', { simple: true })).toBe(4);
    expect(
      db
        .prepare<[], { name: string; notnull: number }>('PRAGMA table_info(mailbox)')
        .all()
        .find((c) => c.name === 'surb_id')?.notnull,
    ).toBe(1);
    db.close();
  });

  it('migrates a database from before schema version 1: spent keys and partial tokens become hashes, no token is admitted twice', () => {
    const [t, u] = issuedTokens(issuer, BOB, 1, 2);
    const done = messageFragments(msg(10), BOB, t!);
    const open = messageFragments(msg(3000), BOB, u!);
    store.close();
    rmSync(join(dir, 'gw.sqlite'));
    // the version-0 tables, as an old gateway left them: a delivered message (queue row purged) and one being reassembled
    const old = new Database(join(dir, 'gw.sqlite'));
    old.exec(`CREATE TABLE spent (token_key TEXT PRIMARY KEY, message_id BLOB NOT NULL, recipient TEXT NOT NULL, key_epoch INTEGER NOT NULL, spent_at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE TABLE partial (message_id BLOB PRIMARY KEY, recipient TEXT NOT NULL, count INTEGER NOT NULL, total_length INTEGER NOT NULL, token BLOB NOT NULL,
        first_seen INTEGER NOT NULL, expires INTEGER NOT NULL, received INTEGER NOT NULL, bytes INTEGER NOT NULL) WITHOUT ROWID;`);
    const spend = old.prepare('INSERT INTO spent VALUES (?, ?, ?, 1, 0)');
    spend.run(Buffer.from(t!.input).toString('hex'), Buffer.from(done[0]!.messageId), BOB);
    spend.run(Buffer.from(u!.input).toString('hex'), Buffer.from(open[0]!.messageId), BOB);
    old
      .prepare('INSERT INTO partial VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0)')
      .run(Buffer.from(open[0]!.messageId), BOB, open.length, open[0]!.totalLength, Buffer.from(open[0]!.token), now, now + 60_000);
    old.close();
    store = new GatewayStore(join(dir, 'gw.sqlite'));
    store.addUser(BOB, { now });
    intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 100_000, reassemblyTtlMs: 60_000, now: () => now });
    expect(store.spentFor(Buffer.from(t!.input).toString('hex'))).toBeUndefined();
    expect(store.spentFor(tokenSpendKey(t!))).toMatchObject({ recipient: BOB, done: true });
    expect(store.spentFor(tokenSpendKey(u!))).toMatchObject({ recipient: BOB, done: false });
    // the delivered one admits nothing; the one being reassembled still completes its own message
    expect(statuses(done)).toEqual([AckStatus.Duplicate]);
    expect(statuses(open).at(-1)).toBe(AckStatus.Queued);
    expect(statuses(messageFragments(msg(10), BOB, u!))).toEqual([AckStatus.TokenRefused]);
    expect(store.listQueue()).toHaveLength(1);
  });
});
