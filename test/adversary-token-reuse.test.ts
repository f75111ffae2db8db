/**
 * Adversary: a holder of one delivery token for bob (docs/threat-model.md, "A token holder").
 * One token must admit one message, to one recipient, for ever within its key epoch.
 *
 * The attacker redeems its token, waits until the gateway has handed the message over and,
 * `keep_delivered_s` later, forgotten the queue row (the gateway's housekeeping purges delivered
 * rows after that long), then presents the same token again: with the same message id (before
 * issue 11 that was accepted without re-verification and delivered a second time), with a new
 * message id, and to another user of the same gateway (the old binding check ignored the
 * recipient). The real intake and store run on a fake clock; the hand-off is the queue's own
 * claim/markDelivered, the purge the one the daemon's housekeeping calls.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AckStatus } from '../proto/fragment/index.ts';
import { deriveIssuerKeys, encodeToken, type Token } from '../proto/tokens/index.ts';
import { GatewayConfigSchema } from '../gateway/config.ts';
import { Intake } from '../gateway/intake.ts';
import { GatewayStore } from '../gateway/store.ts';
import { messageFragments } from './support/fragments.ts';
import { issuedTokens } from './support/tokens.ts';

const issuer = deriveIssuerKeys(new Uint8Array(32).fill(21));
const BOB = 'bob@example.org';
const CAROL = 'carol@example.org';
const DAY = 86_400_000;

let dir: string;
let store: GatewayStore;
let intake: Intake;
let now: number;

// bob's key epoch has no scheduled end here: these properties must hold for as long as it lasts
const NEVER = { rotation: { rotationS: 0, graceS: 0 } };

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'postmix-adv-token-'));
  store = new GatewayStore(join(dir, 'gw.sqlite'), NEVER);
  now = 1_700_000_000_000;
  store.addUser(BOB, { now });
  store.addUser(CAROL, { now });
  intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 1_000_000, reassemblyTtlMs: 2 * DAY, now: () => now });
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const body = (s: string) => new Uint8Array(Buffer.from(`Subject: ${s}\r\n\r\n${'x'.repeat(3000)}\r\n`));

/** Sends every fragment; returns the last ACK status (or drop reason). */
function redeem(recipient: string, token: Token, messageId?: Uint8Array, text = 'hello'): AckStatus | string {
  let last: AckStatus | string = 'none';
  for (const f of messageFragments(body(text), recipient, token, messageId ? { messageId } : {})) {
    const r = intake.handleFragment(f);
    last = r.kind === 'ack' ? r.status : r.reason;
  }
  return last;
}

/** The MX took every queued message; `keep` later the housekeeping forgets the delivered rows. */
function deliverAndForget(keepMs: number): void {
  for (const q of store.due(now, 100)) {
    expect(store.claim(q.handoffId)).toBe(true);
    store.markDelivered(q.handoffId, now);
  }
  now += keepMs + 1;
  store.purge({ deliveredBefore: now - keepMs });
}

describe('a token holder against the gateway', () => {
  const keep = GatewayConfigSchema.shape.mx.unwrap().shape.keep_delivered_s.parse(undefined) * 1000;

  it('one token admits one message: after keep_delivered_s the same token is refused, whatever the message id or recipient', () => {
    expect(keep).toBeGreaterThan(0);
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const first = messageFragments(body('first'), BOB, t!)[0]!.messageId;
    expect(redeem(BOB, t!, first, 'first')).toBe(AckStatus.Queued);
    deliverAndForget(keep);
    expect(store.handoffOf(first)).toBeUndefined(); // the queue row is gone: only the spent set remembers

    // the same message id again: not queued, not delivered again
    const again = redeem(BOB, t!, first, 'second copy');
    expect(again).not.toBe(AckStatus.Queued);
    expect(again).not.toBe(AckStatus.Stored);
    // a new message id
    expect(redeem(BOB, t!, undefined, 'another')).toBe(AckStatus.TokenRefused);
    // another user of the gateway, with the bound message id and with a new one
    expect(redeem(CAROL, t!, first, 'to carol')).toBe(AckStatus.TokenRefused);
    expect(redeem(CAROL, t!, undefined, 'to carol')).toBe(AckStatus.TokenRefused);

    // nothing reached the queue (or the MX) after the first message
    expect(store.listQueue()).toEqual([]);
    expect(store.partialCount()).toBe(0);
    expect(intake.counters.messagesCompleted).toBe(1);
    expect(intake.counters.tokensAccepted).toBe(1);
  });

  it('the same holds across a gateway restart and long after (the spent set is durable and outlives the queue)', () => {
    const [t] = issuedTokens(issuer, BOB, 1, 1);
    const id = messageFragments(body('first'), BOB, t!)[0]!.messageId;
    expect(redeem(BOB, t!, id)).toBe(AckStatus.Queued);
    deliverAndForget(keep);
    store.close();
    store = new GatewayStore(join(dir, 'gw.sqlite'), NEVER);
    intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 1_000_000, reassemblyTtlMs: 2 * DAY, now: () => now });
    now += 365 * DAY;
    expect(store.purgeOldSpent(now).spent).toBe(0); // bob's key epoch is still the one the token was issued under
    expect([AckStatus.Duplicate, AckStatus.TokenRefused]).toContain(redeem(BOB, t!, id));
    expect(redeem(BOB, t!)).toBe(AckStatus.TokenRefused);
    expect(redeem(CAROL, t!, id)).toBe(AckStatus.TokenRefused);
    expect(store.listQueue()).toEqual([]);
  });

  it('the spent set holds a hash of each token, never its input; it is purged per expired key epoch', () => {
    const [t, u] = issuedTokens(issuer, BOB, 1, 2);
    expect(redeem(BOB, t!)).toBe(AckStatus.Queued);
    expect(redeem(BOB, u!)).toBe(AckStatus.Queued);
    store.close();
    const raw = readFileSync(join(dir, 'gw.sqlite'));
    const wal = (() => {
      try {
        return readFileSync(join(dir, 'gw.sqlite-wal'));
      } catch {
        return Buffer.alloc(0);
      }
    })();
    for (const tok of [t!, u!]) {
      const input = Buffer.from(tok.input);
      const enc = Buffer.from(encodeToken(tok));
      for (const file of [raw, wal]) {
        expect(file.includes(input)).toBe(false);
        expect(file.includes(Buffer.from(input.toString('hex')))).toBe(false);
        expect(file.includes(enc)).toBe(false);
      }
    }
    store = new GatewayStore(join(dir, 'gw.sqlite'), NEVER);
    intake = new Intake(store, { domains: ['example.org'], issuer, maxMessageBytes: 1_000_000, reassemblyTtlMs: 2 * DAY, now: () => now });
    // bob rotates his key: both rows belong to an epoch no token can pass any more, so they go
    store.rotateUser(BOB, now / 1000);
    expect(store.purgeOldSpent(now).spent).toBe(2);
    const row = (store.db.prepare('SELECT COUNT(*) AS n FROM spent').get() as { n: number }).n;
    expect(row).toBe(0);
    // and the old tokens are still refused (expired), not admitted again
    expect(redeem(BOB, t!)).toBe(AckStatus.TokenRefused);
  });
});
