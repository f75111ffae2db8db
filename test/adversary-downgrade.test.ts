/**
 * Adversary: someone who keeps a recipient's gateway out of the client's network document: an
 * on-path attacker blocking the client's document fetches, or anyone who stops the gateway's
 * descriptor from reaching the authorities for an epoch (docs/threat-model.md, "Defaults"). What
 * it wants: the client's mail to that domain leaving through the SMTP smarthost instead of the
 * overlay, where the user's provider and every SMTP hop see who writes to whom.
 *
 * Before issue 11 the client fell back to SMTP silently (the reason said "not anonymous" in the
 * log, but nothing stopped it). Now a domain the client knows had a gateway (an earlier document
 * listed one, or its wallet holds tokens from it) is refused at RCPT TO by default, logged, and
 * listed by `postmix client status`; `routing.on_gateway_loss = "smtp"` is the explicit opt-in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeSuite } from '../proto/sphinx/index.ts';
import { ClientCore } from '../client/core.ts';
import { SmtpReply } from '../client/smtp-server.ts';
import { formatLostGateways } from '../client/status.ts';
import { InProcessMixnet, TestNetwork, seededUniform } from './support/in-process-mixnet.ts';
import type { DocumentBody } from '../proto/pki/codec.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Harness {
  core: ClientCore;
  net: TestNetwork;
  relayed: string[];
  warnings: string[];
  dir: string;
}

function client(doc: DocumentBody | null, onGatewayLoss?: 'refuse' | 'smtp', dir = mkdtempSync(join(tmpdir(), 'postmix-adv-downgrade-'))): Harness {
  dirs.push(dir);
  const relayed: string[] = [];
  const warnings: string[] = [];
  const net = new TestNetwork(doc, { send: () => undefined }, new Uint8Array(32).fill(4));
  const core = new ClientCore({
    outboxPath: join(dir, 'outbox.sqlite'),
    suite: nodeSuite,
    network: net,
    policy: { overlayOnly: false, overlayOnlyRecipients: [], ...(onGatewayLoss ? { onGatewayLoss } : {}) },
    strip: {},
    smarthost: { host: '127.0.0.1', port: 25, secure: false, requireTls: false, maxAttempts: 3, retryBaseMs: 1000 },
    bounceMaildir: join(dir, 'Maildir'),
    cover: false,
    uniform: seededUniform(3),
    log: { info() {}, warn: (_o, m) => warnings.push(m ?? '') },
    relay: async (_c, _from, to) => {
      relayed.push(...to);
      return { ok: true, response: '250 ok' };
    },
  });
  return { core, net, relayed, warnings, dir };
}

/** What the user's mail client gets at RCPT TO for `address`: accepted, or the SMTP reply. */
function rcpt(h: Harness, address: string): string {
  try {
    h.core.checkRecipient(address);
    return `accepted (${h.core.route(address).path})`;
  } catch (e) {
    if (e instanceof SmtpReply) return `${e.responseCode}`;
    throw e;
  }
}

const raw = new Uint8Array(Buffer.from('From: a@sender.test\r\nTo: bob@overlay.test\r\nSubject: s\r\n\r\nbody\r\n'));

describe('keeping the gateway out of the document', () => {
  const sim = new InProcessMixnet({ domains: ['overlay.test'] });
  const without: DocumentBody = { ...sim.doc, epoch: sim.doc.epoch + 1, gateways: [] };

  it('a domain whose gateway the client saw is refused, not relayed by SMTP, when the gateway is gone or the document is', async () => {
    const h = client(sim.doc);
    h.core.wallet.importBundle(sim.bundle('bob@overlay.test', 2));
    expect(rcpt(h, 'bob@overlay.test')).toBe('accepted (overlay)');
    h.core.tick(0); // the document's gateways are remembered

    h.net.doc = without; // the gateway missed an epoch, or someone kept it out
    expect(rcpt(h, 'bob@overlay.test')).toBe('550');
    expect(rcpt(h, 'carol@overlay.test')).toBe('550'); // no token for carol: the domain alone decides
    expect(() => h.core.accept('a@sender.test', ['bob@overlay.test'], raw)).toThrow(SmtpReply);
    expect(h.core.route('bob@overlay.test').reason).toMatch(/overlay\.test had a postmix gateway .* refused rather than relayed/);

    // the client's document fetches are blocked: held for the overlay (or a temporary 451 with
    // routing.no_document = "refuse"), never relayed
    h.net.doc = null;
    expect(rcpt(h, 'bob@overlay.test')).toBe('accepted (hold)');
    const held = h.core.accept('a@sender.test', ['bob@overlay.test'], raw);
    expect(h.core.outbox.recipient(held, 'bob@overlay.test')).toMatchObject({ path: 'overlay', fragmentCount: 0, state: 'active' });

    // a domain that never had a gateway still falls back, as before
    expect(rcpt(h, 'dave@plain.test')).toBe('accepted (smtp)');
    await h.core.relayDue(Date.now());
    expect(h.relayed).toEqual([]); // nothing for overlay.test went out by SMTP
    h.core.accept('a@sender.test', ['dave@plain.test'], raw);
    await h.core.relayDue(Date.now());
    expect(h.relayed).toEqual(['dave@plain.test']);

    // logged, counted, and what `postmix client status` prints
    expect(h.warnings.some((w) => /gateway is missing/.test(w))).toBe(true);
    const lost = h.core.gateways.lost(null);
    expect(lost.map((s) => s.domain)).toEqual(['overlay.test']);
    expect(lost[0]!.refused).toBeGreaterThanOrEqual(3);
    expect(formatLostGateways(h.core.gateways.lost(without), 'refuse', true)).toMatch(/GATEWAY MISSING[\s\S]*overlay\.test[\s\S]*refused/);
    h.core.close();
  });

  it('the memory survives a restart, and tokens alone are enough evidence', () => {
    const first = client(sim.doc);
    first.core.tick(0);
    first.core.close();
    const again = client(without, undefined, first.dir);
    expect(rcpt(again, 'erin@overlay.test')).toBe('550');
    again.core.close();
    // a client that never saw a document listing the gateway, but holds tokens issued by it
    const fresh = client(without);
    fresh.core.wallet.importBundle(sim.bundle('bob@overlay.test', 1));
    expect(rcpt(fresh, 'bob@overlay.test')).toBe('550');
    fresh.core.close();
  });

  it('routing.on_gateway_loss = "smtp" is the explicit way back to the fallback, and says so', () => {
    const h = client(sim.doc, 'smtp');
    h.core.tick(0);
    h.net.doc = without;
    expect(rcpt(h, 'bob@overlay.test')).toBe('accepted (smtp)');
    expect(h.core.route('bob@overlay.test').reason).toMatch(/not anonymous; routing\.on_gateway_loss = "smtp"/);
    h.core.close();
  });
});
