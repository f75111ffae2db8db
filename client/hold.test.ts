/**
 * The client holds overlay mail while it has no usable network document (issue: an authority
 * outage made it spend its attempts against a dead document and bounce): nothing is sent, no
 * attempt is counted and nothing bounces until a document verifies, and then it is delivered.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeSuite } from '../proto/sphinx/index.ts';
import { ClientCore } from './core.ts';
import { formatStatus } from './status.ts';
import { SmtpReply } from './smtp-server.ts';
import { InProcessMixnet, seededUniform, type TestNetwork } from '../test/support/in-process-mixnet.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const MAILBOX = new Uint8Array(32).fill(0x24);

function setup(noDocument: 'hold' | 'refuse' = 'hold') {
  const dir = mkdtempSync(join(tmpdir(), 'postmix-hold-'));
  dirs.push(dir);
  const sim = new InProcessMixnet({ perLayer: 1 });
  const net: TestNetwork = sim.network(MAILBOX);
  const relayed: string[] = [];
  const core = new ClientCore({
    outboxPath: join(dir, 'outbox.sqlite'),
    suite: nodeSuite,
    network: net,
    policy: { overlayOnly: false, overlayOnlyRecipients: [], noDocument },
    strip: {},
    smarthost: { host: '127.0.0.1', port: 25, secure: false, requireTls: false, maxAttempts: 3, retryBaseMs: 1000 },
    relay: async (_c, _f, to) => {
      relayed.push(...to);
      return { ok: true, response: '250 ok' };
    },
    bounceMaildir: join(dir, 'Maildir'),
    maxAttempts: 3,
    cover: false,
    uniform: seededUniform(5),
  });
  core.wallet.importBundle(sim.bundle('bob@overlay.test', 2));
  return { dir, sim, net, core, relayed };
}

function run(c: ClientCore, sim: InProcessMixnet, from: number, to: number, step: number, until?: () => boolean): number {
  let t = from;
  for (; t <= to; t += step) {
    c.tick(t);
    for (const item of sim.fetch(MAILBOX)) c.onMailboxItem(item, t);
    if (until?.()) break;
  }
  return t;
}

const raw = () => new Uint8Array(Buffer.concat([Buffer.from('From: a@sender.test\r\nTo: bob@overlay.test\r\nSubject: held\r\n\r\n'), randomBytes(5000)]));

describe('holding overlay mail while no network document is usable', () => {
  it('fragments in flight when the document goes: no attempt spent, no bounce for an hour; delivered once one verifies', async () => {
    const { sim, net, core, dir } = setup();
    const gw = Buffer.from(sim.gateway.entry.nodeId).toString('hex');
    sim.blackholes.add(gw); // the packets sent before the outage die
    const m = raw();
    const id = core.accept('a@sender.test', ['bob@overlay.test'], m, 0);
    let t = run(core, sim, 0, 30_000, 50, () => core.outbox.fragments(id, 'bob@overlay.test').every((f) => f.state === 'inflight'));
    const before = core.outbox.fragments(id, 'bob@overlay.test').map((f) => f.attempts);
    expect(before.every((a) => a >= 1)).toBe(true);
    const sent = sim.packetsIn;
    // the document is over (authorities unreachable for longer than its keys last): an hour of ticks
    net.doc = null;
    t = run(core, sim, t, t + 3_600_000, 1_000);
    expect(sim.packetsIn).toBe(sent); // nothing sent
    expect(core.outbox.fragments(id, 'bob@overlay.test').map((f) => f.attempts)).toEqual(before);
    expect(core.outbox.recipient(id, 'bob@overlay.test')!.state).toBe('active');
    expect(core.counters.bounced).toBe(0);
    expect(existsSync(join(dir, 'Maildir', 'new')) ? readdirSync(join(dir, 'Maildir', 'new')) : []).toEqual([]);
    // a document verifies again, the network carries packets again
    net.doc = sim.doc;
    sim.blackholes.delete(gw);
    run(core, sim, t, t + 600_000, 100, () => core.outbox.message(id)!.state === 'done');
    expect(core.outbox.recipient(id, 'bob@overlay.test')!.state).toBe('delivered');
    expect(Buffer.from(sim.delivered[0]!.bytes).equals(Buffer.from(m))).toBe(true);
    core.close();
  });

  it('a message submitted with no document is held (nothing planned or spent), then routed and delivered by the next document', async () => {
    const { sim, net, core, relayed } = setup();
    net.doc = null;
    const m = raw();
    const id = core.accept('a@sender.test', ['bob@overlay.test'], m, 0);
    const held = core.outbox.recipient(id, 'bob@overlay.test')!;
    expect(held).toMatchObject({ path: 'overlay', state: 'active', fragmentCount: 0 });
    expect(held.reason).toMatch(/held, and sent through the overlay once a document verifies/);
    expect(core.wallet.count('bob@overlay.test')).toBe(2); // no token spent yet
    expect(formatStatus(core.outbox.progress(), null)).toMatch(/HELD: waiting for a valid network document/);
    run(core, sim, 0, 60_000, 1_000);
    await core.relayDue(60_000);
    expect(relayed).toEqual([]); // never downgraded to SMTP
    expect(sim.packetsIn).toBe(0);
    net.doc = sim.doc;
    run(core, sim, 60_000, 600_000, 100, () => core.outbox.message(id)!.state === 'done');
    expect(core.outbox.recipient(id, 'bob@overlay.test')!.state).toBe('delivered');
    expect(core.wallet.count('bob@overlay.test')).toBe(1);
    expect(Buffer.from(sim.delivered[0]!.bytes).equals(Buffer.from(m))).toBe(true);
    expect(relayed).toEqual([]);
    core.close();
  });

  it('with routing.no_document = "refuse" the recipient is refused for now (451), and nothing is stored', () => {
    const { net, core } = setup('refuse');
    net.doc = null;
    let code = 0;
    try {
      core.accept('a@sender.test', ['bob@overlay.test'], raw(), 0);
    } catch (e) {
      if (e instanceof SmtpReply) code = e.responseCode;
    }
    expect(code).toBe(451);
    expect(core.outbox.activeMessages()).toHaveLength(0);
    core.close();
  });
});
