import { describe, expect, it } from 'vitest';
import { decideRoute, type RoutingPolicy } from './routing.ts';
import { InProcessMixnet } from '../test/support/in-process-mixnet.ts';

import type { DocumentBody } from '../proto/pki/index.ts';

/** The document of an in-process network whose gateway publishes the issuer key 32 × 0x03. */
function docFor(o: { domains: string[]; openPolicy?: boolean }): DocumentBody {
  const d = new InProcessMixnet(o).doc;
  const issuerKeys = [{ keyEpoch: 0, publicKey: new Uint8Array(32).fill(3) }];
  return { ...d, gateways: d.gateways.map((g) => ({ ...g, gateway: { ...g.gateway!, issuerKeys } })) };
}
const doc = docFor({ domains: ['overlay.test'] });
const openDoc = docFor({ domains: ['open.test'], openPolicy: true });
const none: RoutingPolicy = { overlayOnly: false, overlayOnlyRecipients: [] };
/** held: recipient → issuer-key byte (the key is 32 × that byte) → count */
const tokens = (held: Record<string, Record<number, number>>) => (r: string, keys?: readonly Uint8Array[]) =>
  Object.entries(held[r] ?? {}).reduce((a, [k, n]) => a + (!keys || keys.some((x) => x.every((b) => b === Number(k))) ? n : 0), 0);

describe('routing decision', () => {
  it('overlay when the domain has a gateway and a token is held (under its issuer key)', () => {
    const d = decideRoute({ recipient: 'Bob@Overlay.test', document: doc, unspentTokens: tokens({ 'bob@overlay.test': { 3: 2 } }), policy: none });
    expect(d.path).toBe('overlay');
    expect(d.recipient).toBe('bob@overlay.test');
    expect(d.reason).toMatch(/2 token/);
  });

  it('fallback when no gateway serves the domain, or no document', () => {
    const d = decideRoute({ recipient: 'c@plain.test', document: doc, unspentTokens: tokens({}), policy: none });
    expect(d).toMatchObject({ path: 'smtp' });
    expect(d.reason).toMatch(/no postmix gateway serves plain\.test/);
    expect(decideRoute({ recipient: 'b@overlay.test', document: null, unspentTokens: tokens({}), policy: none }).reason).toMatch(/no network document/);
  });

  it('fallback when the wallet is empty or holds only tokens under another issuer key', () => {
    expect(decideRoute({ recipient: 'b@overlay.test', document: doc, unspentTokens: tokens({}), policy: none }).reason).toMatch(/holds no token/);
    const d = decideRoute({ recipient: 'b@overlay.test', document: doc, unspentTokens: tokens({ 'b@overlay.test': { 7: 5 } }), policy: none });
    expect(d.path).toBe('smtp');
    expect(d.reason).toMatch(/another issuer key/);
  });

  it('tokens held but all expired (or not yet valid): refused at submission with the reason, never a silent SMTP fallback', () => {
    const expired = () => ({ expired: 4, notYet: 0, lastExpired: 1_800_000_000, firstValid: null });
    const d = decideRoute({ recipient: 'b@overlay.test', document: doc, unspentTokens: tokens({}), heldOutsideWindow: expired, policy: none });
    expect(d).toMatchObject({ path: 'refuse' });
    expect(d.reason).toMatch(/4 delivery token\(s\) held for b@overlay\.test expired at 2027-01-15T08:00:00Z.*new bundle.*tokens forget/);
    const later = () => ({ expired: 0, notYet: 2, lastExpired: null, firstValid: 1_800_000_000 });
    const n = decideRoute({ recipient: 'b@overlay.test', document: doc, unspentTokens: tokens({}), heldOutsideWindow: later, policy: none });
    expect(n).toMatchObject({ path: 'refuse', temporary: true });
    expect(n.reason).toMatch(/valid from 2027-01-15T08:00:00Z/);
    // with a usable token the expired ones do not matter
    expect(
      decideRoute({
        recipient: 'b@overlay.test',
        document: doc,
        unspentTokens: tokens({ 'b@overlay.test': { 3: 1 } }),
        heldOutsideWindow: expired,
        policy: none,
      }).path,
    ).toBe('overlay');
  });

  it('open policy: overlay without a token', () => {
    const d = decideRoute({ recipient: 'x@open.test', document: openDoc, unspentTokens: tokens({}), policy: none });
    expect(d).toMatchObject({ path: 'overlay', open: true });
    expect(d.reason).toMatch(/open policy/);
  });

  it('overlay-only (global, per address, per @domain) refuses instead of falling back', () => {
    expect(
      decideRoute({ recipient: 'b@overlay.test', document: doc, unspentTokens: tokens({}), policy: { overlayOnly: true, overlayOnlyRecipients: [] } }),
    ).toMatchObject({
      path: 'refuse',
    });
    expect(
      decideRoute({
        recipient: 'b@overlay.test',
        document: doc,
        unspentTokens: tokens({}),
        policy: { overlayOnly: false, overlayOnlyRecipients: ['B@overlay.test'] },
      }).reason,
    ).toMatch(/overlay-only is set for this recipient/);
    expect(
      decideRoute({
        recipient: 'z@overlay.test',
        document: doc,
        unspentTokens: tokens({}),
        policy: { overlayOnly: false, overlayOnlyRecipients: ['@overlay.test'] },
      }).path,
    ).toBe('refuse');
    expect(
      decideRoute({
        recipient: 'z@plain.test',
        document: doc,
        unspentTokens: tokens({}),
        policy: { overlayOnly: false, overlayOnlyRecipients: ['@overlay.test'] },
      }).path,
    ).toBe('smtp');
    // overlay-only with a token: overlay
    expect(
      decideRoute({
        recipient: 'b@overlay.test',
        document: doc,
        unspentTokens: tokens({ 'b@overlay.test': { 3: 1 } }),
        policy: { overlayOnly: true, overlayOnlyRecipients: [] },
      }).path,
    ).toBe('overlay');
  });

  it('force_smtp wins over a held token (unless overlay-only); invalid addresses are refused', () => {
    expect(
      decideRoute({
        recipient: 'b@overlay.test',
        document: doc,
        unspentTokens: tokens({ 'b@overlay.test': { 3: 1 } }),
        policy: { ...none, forceSmtp: ['@overlay.test'] },
      }).path,
    ).toBe('smtp');
    expect(decideRoute({ recipient: 'nobody', document: doc, unspentTokens: tokens({}), policy: none }).path).toBe('refuse');
  });

  it('a domain that had a gateway and lost it is refused (default) or falls back only when allowed', () => {
    const plain = { ...doc, gateways: [] };
    const history = (d: string) => (d === 'overlay.test' ? 'listed up to network epoch 1' : undefined);
    const lost = decideRoute({ recipient: 'b@overlay.test', document: plain, unspentTokens: tokens({}), policy: none, gatewayHistory: history });
    expect(lost).toMatchObject({ path: 'refuse', lostGateway: 'overlay.test' });
    expect(lost.reason).toMatch(/had a postmix gateway \(listed up to network epoch 1\)/);
    // no document at all is not a loss: held for one (or a temporary refusal), never relayed
    const noDoc = decideRoute({ recipient: 'b@overlay.test', document: null, unspentTokens: tokens({}), policy: none, gatewayHistory: history });
    expect(noDoc).toMatchObject({ path: 'hold', domain: 'overlay.test' });
    expect(noDoc.reason).toMatch(/held, and sent through the overlay once a document verifies/);
    const deferred = decideRoute({
      recipient: 'b@overlay.test',
      document: null,
      unspentTokens: tokens({}),
      policy: { ...none, noDocument: 'refuse' },
      gatewayHistory: history,
    });
    expect(deferred.path).toBe('defer');
    // overlay-only recipients are held too; one with no gateway known falls back as before
    expect(decideRoute({ recipient: 'c@plain.test', document: null, unspentTokens: tokens({}), policy: { ...none, overlayOnly: true } }).path).toBe('hold');
    expect(decideRoute({ recipient: 'c@plain.test', document: null, unspentTokens: tokens({}), policy: none, gatewayHistory: history }).path).toBe('smtp');
    const allowed = decideRoute({
      recipient: 'b@overlay.test',
      document: plain,
      unspentTokens: tokens({}),
      policy: { ...none, onGatewayLoss: 'smtp' },
      gatewayHistory: history,
    });
    expect(allowed).toMatchObject({ path: 'smtp' });
    expect(allowed.reason).toMatch(/not anonymous/);
    // overlay-only wins over the opt-in, and a domain without history falls back as before
    expect(
      decideRoute({
        recipient: 'b@overlay.test',
        document: plain,
        unspentTokens: tokens({}),
        policy: { ...none, overlayOnly: true, onGatewayLoss: 'smtp' },
        gatewayHistory: history,
      }).path,
    ).toBe('refuse');
    expect(decideRoute({ recipient: 'c@plain.test', document: plain, unspentTokens: tokens({}), policy: none, gatewayHistory: history }).path).toBe('smtp');
  });
});
