/**
 * The README's main job as a test: `postmix testnet` as its own process, every node a real
 * process on loopback, run twice:
 *
 * 1. with real Postfix MXs (Debian's postfix, installed by .ci/run): every message where it
 *    should be, byte-identical, exactly once; the tokens came from the users' own clients (blinded
 *    issuance, one bundle per contact); nothing from a sender with forged tokens; every
 *    frame on every link one length (link capture); captured frames re-injected into a mix are
 *    dropped as replays (the mix's own counter says so);
 * 2. under chaos (embedded MXs, 10 s epochs): a mix SIGKILLed, the beta.test gateway and alice's
 *    client SIGKILLed with fragments in flight and restarted, alpha.test's MX down until its
 *    gateway has failed hand-offs, every directory authority down for 2.5 epochs while mail is
 *    sent: still every message, once, some delivered after the held document would once have
 *    expired, and every node and client on the new epoch once the authorities are back;
 * 3. a short soak (60 s of steady mail over 10 s epochs): every message once, each daemon's
 *    memory reported, and every mix's and gateway's key files and replay sets bounded.
 *
 * Each run exits 0 only when its own checks pass; the assertions below re-check its JSON report
 * and, independently of it, the Maildir files against the submitted bytes it kept.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asSubmitted } from '../cli/testnet/messages.ts';
import type { TestnetReport } from '../cli/testnet/report.ts';
import { KEY_FILES_BOUND, REPLAY_EPOCHS_BOUND } from '../cli/testnet/soak.ts';
import { sizeLeaks } from '../cli/testnet/wire.ts';

const bin = new URL('../bin/postmix.js', import.meta.url).pathname;
// the whole network boots and runs as ~20 processes: minutes on a loaded 2-core machine
const RUN_BUDGET_MS = 420_000;

interface Run {
  code: number;
  report: TestnetReport;
  stderr: string;
}

function testnet(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [bin, 'testnet', '--json', ...args], { timeout: RUN_BUDGET_MS - 20_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      try {
        resolve({ code: typeof code === 'number' ? code : 1, report: JSON.parse(stdout.trim().split('\n').at(-1)!) as TestnetReport, stderr });
      } catch {
        reject(new Error(`testnet printed no JSON report (exit ${String(code)}):\n${stderr.slice(-4000)}`));
      }
    });
  });
}

/** Maildir files of one recipient, as SMTP carried them (Postfix trace removed, CRLF restored). */
function mailbox(keep: string, domain: string, user: string, postfix: boolean): Buffer[] {
  const dir = join(keep, 'mail', domain, user, 'new');
  return readdirSync(dir).map((f) => {
    return asSubmitted(readFileSync(join(dir, f)), postfix ? 'postfix' : 'embedded');
  });
}

function sent(keep: string, id: string): Buffer {
  return readFileSync(join(keep, 'sent', `${id}.eml`));
}

function expectAllDelivered(r: Run, overlayPerDomain: number): void {
  if (r.code !== 0) console.error(r.stderr.slice(-6000));
  expect(r.code).toBe(0);
  expect(r.report.ok).toBe(true);
  const overlay = r.report.messages.filter((m) => m.expected === 'overlay');
  const fallback = r.report.messages.filter((m) => m.expected === 'smtp-fallback');
  // both gateway domains and the domain without a gateway
  expect(overlay.filter((m) => m.to.endsWith('@alpha.test'))).toHaveLength(overlayPerDomain);
  expect(overlay.filter((m) => m.to.endsWith('@beta.test'))).toHaveLength(overlayPerDomain);
  expect(fallback.map((m) => m.to)).toEqual(['carol@gamma.test', 'carol@gamma.test']);
  for (const m of [...overlay, ...fallback]) {
    expect(m.path).toBe(m.expected);
    expect(m.intact).toBe(true);
    expect(m.copies).toBe(1);
    expect(m.bytes).toBe(7000);
  }
}

describe.sequential('postmix testnet (whole network, separate processes)', () => {
  describe('end to end with real Postfix MXs, forged tokens, link capture and replays', () => {
    const keep = mkdtempSync(join(tmpdir(), 'postmix-e2e-'));
    let run: Run;
    beforeAll(async () => {
      run = await testnet(['--mta', 'postfix', '--messages', '2', '--size', '7000', '--unauthorized', '1', '--capture', '--replay', '3', '--keep', keep]);
    }, RUN_BUDGET_MS);
    afterAll(() => rmSync(keep, { recursive: true, force: true }));

    it('delivers every message byte-identical, exactly once, by the path it should take', () => {
      expectAllDelivered(run, 2);
      expect(run.report.topology['mta']).toBe('postfix');
      // independently of the report: each Maildir file, as SMTP carried it, equals a submitted message
      const bob = mailbox(keep, 'beta.test', 'bob', true);
      const toBob = run.report.messages.filter((m) => m.to === 'bob@beta.test' && m.expected === 'overlay');
      expect(bob).toHaveLength(toBob.length);
      for (const m of toBob) expect(bob.filter((f) => f.equals(sent(keep, m.id)))).toHaveLength(1);
      const carol = mailbox(keep, 'gamma.test', 'carol', true);
      for (const m of run.report.messages.filter((x) => x.to === 'carol@gamma.test')) expect(carol.filter((f) => f.equals(sent(keep, m.id)))).toHaveLength(1);
      // the fallback went through the senders' provider (a Postfix relay, over STARTTLS), then gamma's MX
      const carolDir = join(keep, 'mail', 'gamma.test', 'carol', 'new');
      for (const f of readdirSync(carolDir))
        expect(readFileSync(join(carolDir, f), 'latin1')).toMatch(/by provider-relay\.postmix-test\.invalid \(Postfix\) with ESMTPS/);
    });

    it("gives permission the recipients' way: each user's client requested its own tokens (blinded) and exported one bundle per contact", () => {
      expect(run.report.tokens.issued_via).toBe('client');
      expect(run.report.tokens.bundles.map((b) => `${b.recipient}>${b.contact}`).sort()).toEqual([
        'alice@alpha.test>bob@beta.test',
        'bob@beta.test>alice@alpha.test',
      ]);
      // the bundles the clients wrote share no token and carry the window of their key epoch
      const inputs = run.report.tokens.bundles.map((b) => {
        const j = JSON.parse(readFileSync(join(keep, `tokens-${b.recipient}-for-${b.contact}.json`), 'utf8')) as {
          epochs: { expires: number; tokens: string[] }[];
        };
        expect(j.epochs[0]!.expires).toBeGreaterThan(Date.now() / 1000);
        return j.epochs.flatMap((e) => e.tokens.map((t) => t.slice(8, 72)));
      });
      expect(inputs[0]!.filter((x) => inputs[1]!.includes(x))).toEqual([]);
    });

    it('refuses the sender with forged tokens: nothing of theirs reaches the MX', () => {
      const refused = run.report.messages.filter((m) => m.expected === 'refused');
      expect(refused).toHaveLength(1);
      expect(refused[0]!.path).toBe('refused');
      expect(refused[0]!.copies).toBe(0);
      for (const f of mailbox(keep, 'beta.test', 'bob', true)) expect(f.toString('latin1')).not.toContain('mallory');
    });

    it('puts frames of exactly one length on every link, per protocol (passive check of the wire)', () => {
      const w = run.report.wire!;
      expect(w).not.toBeNull();
      // 9 mixes, 2 gateways, 3 clients each captured their own links
      expect(w.nodes).toBe(14);
      const sphinx = w.protocols['/postmix/sphinx/1']!;
      const mailbox = w.protocols['/postmix/mailbox/3']!;
      // packets: one length everywhere, whoever sends them to whom
      expect(sphinx.frames).toBeGreaterThan(200);
      expect(Object.keys(sphinx.lengths)).toHaveLength(1);
      expect(Object.keys(sphinx.flows)).toEqual(expect.arrayContaining(['client→mix', 'mix→mix', 'mix→gateway', 'gateway→mix']));
      // gateway → client mailbox items (ACKs, loops, dummies), both ends captured: one length
      const items = mailbox.flows['gateway→client']!;
      expect(items.frames).toBeGreaterThan(20);
      expect(Object.keys(items.lengths)).toHaveLength(1);
      // client → gateway: only the subscribe frame each stream opens with, one length
      const subscribes = mailbox.flows['client→gateway']!;
      expect(Object.keys(subscribes.lengths)).toHaveLength(1);
      expect(subscribes.frames).toBeLessThan(items.frames / 10);
      expect(Object.keys(mailbox.flows).sort()).toEqual(['client→gateway', 'gateway→client']);
      expect(Object.keys(w.protocols).sort()).toEqual(['/postmix/mailbox/3', '/postmix/sphinx/1']);
      expect(sizeLeaks(w)).toEqual([]);
    });

    it('drops captured frames re-injected into a mix, as replays', () => {
      const r = run.report.replay!;
      expect(r).not.toBeNull();
      expect(r.injected).toBe(3);
      expect(r.dropped_as_replay).toBe(3);
    });
  });

  describe('chaos: a mix killed, a gateway and a client killed and restarted, an MX down, every authority down', () => {
    const keep = mkdtempSync(join(tmpdir(), 'postmix-chaos-'));
    let run: Run;
    beforeAll(async () => {
      run = await testnet([
        '--messages',
        '2',
        '--size',
        '7000',
        '--epoch-length',
        '10s',
        '--kill-mix',
        '1',
        '--restart-gateway',
        '2000ms',
        '--restart-client',
        '1500ms',
        '--mx-outage',
        '8s',
        '--authority-outage',
        '25s',
        '--keep',
        keep,
      ]);
    }, RUN_BUDGET_MS);
    afterAll(() => rmSync(keep, { recursive: true, force: true }));

    it('still delivers every message, byte-identical and exactly once', () => {
      expectAllDelivered(run, 2);
      for (const m of run.report.messages.filter((x) => x.to === 'bob@beta.test')) {
        expect(mailbox(keep, 'beta.test', 'bob', false).filter((f) => f.equals(sent(keep, m.id)))).toHaveLength(1);
      }
    });

    it('really did the damage it claims', () => {
      const c = run.report.chaos;
      expect(c.errors).toEqual([]);
      expect(c.killed).toHaveLength(1);
      expect(c.killed[0]).toMatch(/^mix-l\d-\d$/);
      expect(c.restarted.map((x) => x.name).sort()).toEqual(['client-alice', 'gw-beta']);
      expect(c.mx_outage!.domain).toBe('alpha.test');
      expect(c.mx_outage!.down_s).toBeGreaterThanOrEqual(8);
      // the gateway saw the MX fail and retried: delivery after the outage is not luck
      expect(c.mx_outage!.handoff_failures).toBeGreaterThan(0);
    });

    it('rides through an outage of every authority longer than two epochs, and follows the epoch once they are back', () => {
      const a = run.report.chaos.authority_outage!;
      expect(a).not.toBeNull();
      expect(a.down_s).toBeGreaterThanOrEqual(25);
      expect(a.down_s).toBeGreaterThan(2 * 10);
      // mail sent during the outage went through, some of it after the held document's fresh_until
      // + grace, where the network stopped before issue 13
      expect(a.submitted_during).toBeGreaterThanOrEqual(1);
      expect(a.delivered_past_old_expiry).toBeGreaterThanOrEqual(1);
      expect(a.old_expiry_s).toBeLessThan(a.down_s);
      // back: a new document, and every live node (8 mixes, 2 gateways) and both clients route by it
      expect(a.first_epoch_after).toBeGreaterThan(a.document_epoch);
      expect(a.followers.map((f) => f.name).filter((n) => n.startsWith('mix-'))).toHaveLength(8);
      expect(
        a.followers
          .map((f) => f.name)
          .filter((n) => !n.startsWith('mix-'))
          .sort(),
      ).toEqual(['client-alice', 'client-bob', 'gw-alpha', 'gw-beta']);
      for (const f of a.followers) expect(f.document_epoch).toBeGreaterThanOrEqual(a.first_epoch_after);
      // independently of the report: the nodes themselves said they routed by an older document
      for (const gw of ['gw-alpha', 'gw-beta']) expect(readFileSync(join(keep, 'logs', `${gw}.log`), 'utf8')).toContain('routing by an older one');
      expect(readFileSync(join(keep, 'logs', 'client-bob.log'), 'utf8')).toContain('the network document is stale');
    });
  });

  describe('soak: steady mail across epochs, memory reported, stores bounded', () => {
    const keep = mkdtempSync(join(tmpdir(), 'postmix-soak-'));
    let run: Run;
    beforeAll(async () => {
      run = await testnet(['--messages', '6', '--size', '7000', '--epoch-length', '10s', '--soak', '60s', '--keep', keep]);
    }, RUN_BUDGET_MS);
    afterAll(() => rmSync(keep, { recursive: true, force: true }));

    it('delivers every message of the soak byte-identical, exactly once', () => {
      expectAllDelivered(run, 6);
    });

    it("reports every daemon's memory at both ends and keeps each hop's key files and replay sets bounded", () => {
      const s = run.report.soak!;
      expect(s).not.toBeNull();
      expect(s.duration_s).toBeGreaterThanOrEqual(60);
      expect(s.epochs).toBeGreaterThanOrEqual(5);
      // 3 authorities, 9 mixes, 2 gateways, 2 clients
      expect(s.daemons).toHaveLength(16);
      for (const d of s.daemons) {
        expect(d.rss_start_bytes).toBeGreaterThan(0);
        expect(d.rss_end_bytes).toBeGreaterThan(0);
      }
      expect(s.bounded).toBe(true);
      expect(s.problems).toEqual([]);
      expect(s.stores).toHaveLength(11);
      for (const h of s.stores) {
        expect(h.key_files_end).toBeLessThanOrEqual(KEY_FILES_BOUND);
        expect(h.replay_epochs_end).toBeLessThanOrEqual(REPLAY_EPOCHS_BOUND);
        // epoch expiry removed a key file per epoch and the replay sets of the epochs that ended
        expect(h.key_files_deleted).toBeGreaterThanOrEqual(s.epochs - 1);
        expect(h.replay_sets_dropped).toBeGreaterThanOrEqual(1);
      }
      // independently of the metrics: the key directories on disk after the run
      for (const h of s.stores) {
        const dir = join(keep, h.name, 'keys');
        expect(existsSync(dir)).toBe(true);
        expect(readdirSync(dir).filter((f) => /^sphinx-\d+\.key$/.test(f)).length).toBeLessThanOrEqual(KEY_FILES_BOUND);
      }
    });
  });
});
