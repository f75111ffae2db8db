/**
 * Adversary: anyone who can build a Sphinx packet, probing a gateway for which addresses exist
 * (docs/threat-model.md, "Anyone with the network document"). The gateway must not tell an
 * anonymous sender without a valid token whether a user of a served domain exists.
 *
 * Before issue 11 the gateway answered UnknownRecipient for an unknown user and TokenRefused for
 * a known one, so one token-less fragment per address enumerated the users of a domain. Now
 * UnknownRecipient is a per-gateway choice (`intake.ack_unknown_recipient`, default off) and by
 * default an unknown user gets exactly the answer a known user gets for the same probe. The
 * attacker's probes: no token, a forged token (current and other key epochs), a malformed
 * token, and an oversized message with a forged token. It compares everything an ACK carries
 * (status, message id, fragment index) and whether an ACK comes at all.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AckStatus, type Fragment } from '../proto/fragment/index.ts';
import { deriveIssuerKeys, type Token } from '../proto/tokens/index.ts';
import { GatewayConfigSchema } from '../gateway/config.ts';
import { Intake } from '../gateway/intake.ts';
import { GatewayStore } from '../gateway/store.ts';
import { messageFragments } from './support/fragments.ts';
import { issuedTokens } from './support/tokens.ts';

const issuer = deriveIssuerKeys(new Uint8Array(32).fill(31));
const forger = deriveIssuerKeys(new Uint8Array(32).fill(32));
const KNOWN = 'bob@example.org';
const UNKNOWN = 'nobody@example.org';

let dir: string;
let store: GatewayStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'postmix-adv-enum-'));
  store = new GatewayStore(join(dir, 'gw.sqlite'));
  store.addUser(KNOWN);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function intake(ackUnknownRecipient?: boolean): Intake {
  return new Intake(store, {
    domains: ['example.org'],
    issuer,
    maxMessageBytes: 100_000,
    reassemblyTtlMs: 60_000,
    // the default of the gateway's configuration file, unless the test sets it
    ackUnknownRecipient: ackUnknownRecipient ?? GatewayConfigSchema.shape.intake.unwrap().shape.ack_unknown_recipient.parse(undefined),
  });
}

/** What goes back to the sender for one fragment: the ACK's contents, or nothing. */
function observe(i: Intake, f: Fragment): string {
  const r = i.handleFragment(f);
  if (r.kind === 'drop') return 'no ACK';
  return JSON.stringify({ status: r.status, messageId: Buffer.from(r.fragment.messageId).toString('hex'), index: r.fragment.index });
}

/** The probes of an anonymous attacker against one address (fixed message ids, so answers compare). */
function probes(address: string): Fragment[] {
  const body = new Uint8Array(Buffer.from('Subject: probe\r\n\r\nhello\r\n'));
  const forged = (keyEpoch: number): Token => issuedTokens(forger, address, keyEpoch, 1)[0]!;
  const id = (n: number) => new Uint8Array(16).fill(n);
  const huge = new Uint8Array(200_000);
  return [
    messageFragments(body, address, null, { messageId: id(1) })[0]!,
    messageFragments(body, address, forged(1), { messageId: id(2) })[0]!,
    messageFragments(body, address, forged(7), { messageId: id(3) })[0]!,
    { ...messageFragments(body, address, null, { messageId: id(4) })[0]!, token: new Uint8Array(99).fill(1) },
    messageFragments(huge, address, forged(1), { messageId: id(5) })[0]!,
    { ...messageFragments(body, address, forged(1), { messageId: id(6) })[0]!, count: 50 },
  ];
}

describe('address enumeration at a gateway', () => {
  it('by default a known and an unknown user answer every anonymous probe alike', () => {
    const i = intake();
    const known = probes(KNOWN).map((f) => observe(i, f));
    const unknown = probes(UNKNOWN).map((f) => observe(i, f));
    expect(unknown).toEqual(known);
    // and the probes stored nothing
    expect(store.partialCount()).toBe(0);
    expect(store.listQueue()).toEqual([]);
  });

  it('a sender with a valid token still gets a working answer (the message is accepted)', () => {
    const i = intake();
    const [t] = issuedTokens(issuer, KNOWN, 1, 1);
    const f = messageFragments(new Uint8Array(Buffer.from('Subject: hi\r\n\r\nx\r\n')), KNOWN, t!)[0]!;
    expect(JSON.parse(observe(i, f)).status).toBe(AckStatus.Queued);
  });

  it('UnknownRecipient remains available as a per-gateway choice, and then tells (documented)', () => {
    const i = intake(true);
    const known = probes(KNOWN).map((f) => observe(i, f));
    const unknown = probes(UNKNOWN).map((f) => observe(i, f));
    expect(unknown).not.toEqual(known);
  });
});
