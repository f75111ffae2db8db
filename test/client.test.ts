/**
 * The client with real SMTP clients and a real MTA, on loopback:
 * - swaks and nodemailer submit to the client's SMTP intake (AUTH);
 * - the overlay path runs through an in-process mixnet with real Sphinx processing and the real
 *   gateway intake (test/support/in-process-mixnet.ts); test/testnet.test.ts runs real daemons;
 * - the fallback path goes through a real Postfix acting as the sender's provider (STARTTLS),
 *   relaying to a second Postfix acting as the recipient's MX, whose Maildir file is compared to
 *   the submitted bytes (minus the trace fields Postfix prepends: Return-Path, X-Original-To,
 *   Delivered-To, Received);
 * - overlay-only with an empty wallet fails the SMTP transaction with a clear 5xx;
 * - `postmix sendmail -t -i`, `postmix client status` and `postmix client tokens` as processes;
 * - a client process killed (SIGKILL) after the 250 and restarted delivers the message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from './support/cli.ts';
import { ClientConfigSchema, type ClientConfig } from '../client/config.ts';
import { runClient, type RunningClient } from '../client/daemon.ts';
import { Outbox } from '../client/outbox.ts';
import { InProcessMixnet } from './support/in-process-mixnet.ts';
import { postmixProcess, ROOT, swaks } from './support/processes.ts';
import { forgedBundle } from './support/tokens.ts';
import { edgeCaseMessage } from '../cli/testnet/messages.ts';
import { freePort } from '../cli/testnet/ports.ts';
import { createPostfix, postfixAvailable, stripPostfixTrace, type PostfixServer } from '../cli/testnet/postfix.ts';

const why = postfixAvailable();
if (why) throw new Error(`test/client.test.ts needs a real Postfix: ${why}`);

const MAILBOX = new Uint8Array(32).fill(9);
let tmp: string;
let relay: PostfixServer;
let mx: PostfixServer;
let sim: InProcessMixnet;
let client: RunningClient;
let pump: NodeJS.Timeout;
let cfgFile: string;
const children: ChildProcess[] = [];

const postmix = (args: string[], input?: string | Buffer) => postmixProcess(args, { input });

async function waitFor<T>(what: string, f: () => T | undefined | null | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function newMaildirFiles(dir: string): string[] {
  const d = join(dir, 'new');
  return existsSync(d) ? readdirSync(d).map((f) => join(d, f)) : [];
}

function message(to: string, subject: string): string {
  return edgeCaseMessage({ to, subject });
}

function config(dataDir: string, smtpPort: number, smarthostPort: number, extra: Record<string, unknown> = {}): ClientConfig {
  return ClientConfigSchema.parse({
    data_dir: dataDir,
    log: { level: 'warn' },
    smtp: { host: '127.0.0.1', port: smtpPort, user: 'alice', password: 'secret' },
    smarthost: { host: '127.0.0.1', port: smarthostPort, require_tls: true, insecure_tls: true, retry_base_ms: 100, max_attempts: 50 },
    routing: { overlay_only_recipients: ['carol@overlay.test'] },
    bounce: { maildir: join(dataDir, 'Maildir') },
    ...extra,
  });
}

function toml(c: ClientConfig): string {
  const q = (v: unknown) => JSON.stringify(v);
  return (
    [
      `data_dir = ${q(c.data_dir)}`,
      `[log]\nlevel = "warn"`,
      `[smtp]\nhost = "127.0.0.1"\nport = ${c.smtp.port}\nuser = ${q(c.smtp.user)}\npassword = ${q(c.smtp.password)}`,
      `[smarthost]\nhost = "127.0.0.1"\nport = ${c.smarthost.port}\nrequire_tls = true\ninsecure_tls = true\nretry_base_ms = 100\nmax_attempts = 50`,
      `[routing]\noverlay_only_recipients = ["carol@overlay.test"]`,
      `[bounce]\nmaildir = ${q(c.bounce.maildir)}`,
    ].join('\n') + '\n'
  );
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'postmix-client-it-')); // createPostfix makes it traversable for Postfix's daemons
  const [relayPort, mxPort, smtpPort] = [await freePort(), await freePort(), await freePort()];
  mx = createPostfix({
    dir: join(tmp, 'pf-mx'),
    name: 'mx',
    port: mxPort,
    role: {
      kind: 'mx',
      domains: ['recipient.test'],
      mailRoot: join(tmp, 'mail'),
      mailboxes: ['bob@recipient.test', 'dan@recipient.test', 'erin@recipient.test'],
    },
  });
  relay = createPostfix({ dir: join(tmp, 'pf-relay'), name: 'relay', port: relayPort, role: { kind: 'relay', relayPort: mxPort } });
  await Promise.all([mx.start(), relay.start()]); // each waits until its port accepts connections
  sim = new InProcessMixnet({ domains: ['overlay.test'], mixing: { lambdaP: 50, lambdaL: 0, lambdaD: 0, lambdaM: 0, lambdaG: 0, mu: 10 } });
  const cfg = config(join(tmp, 'client'), smtpPort, relayPort);
  cfgFile = join(tmp, 'client.toml');
  writeFileSync(cfgFile, toml(cfg));
  client = await runClient(cfg, { log: pino({ level: 'silent' }), network: sim.network(MAILBOX), maxSleepMs: 50 });
  pump = setInterval(() => {
    for (const item of sim.fetch(MAILBOX)) client.core.onMailboxItem(item);
  }, 20);
  client.core.wallet.importBundle(sim.bundle('bob@overlay.test', 3));
}, 60_000);

afterAll(async () => {
  clearInterval(pump);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await client?.stop();
  await relay?.stop();
  await mx?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 30_000);

describe('client intake with real SMTP clients', () => {
  it('swaks → overlay recipient: arrives at the (simulated) gateway byte-identical', async () => {
    const file = join(tmp, 'overlay.eml');
    const raw = message('bob@overlay.test', 'overlay swaks');
    // swaks ends DATA with "\r\n.\r\n" after the file's last byte, so the file omits the final line break
    writeFileSync(file, raw.slice(0, -2));
    const r = await swaks({
      port: client.smtpPort,
      auth: { user: 'alice', password: 'secret' },
      from: 'alice@sender.test',
      to: 'bob@overlay.test',
      file,
      extra: ['--silent', '2'],
    });
    expect(r.stderr + r.stdout).not.toMatch(/\*\*\*/);
    expect(r.code).toBe(0);
    const got = await waitFor('overlay delivery', () => sim.delivered.find((d) => d.recipient === 'bob@overlay.test'));
    expect(Buffer.from(got.bytes).toString('utf8')).toBe(raw);
    const done = await waitFor('all ACKs', () =>
      client.core.outbox.progress(true).find((p) => p.recipients[0]?.address === 'bob@overlay.test' && p.message.state === 'done'),
    );
    expect(done.recipients[0]!.path).toBe('overlay');
    expect(done.recipients[0]!.reason).toMatch(/gateway for overlay\.test/);
  });

  it('nodemailer → recipient without a gateway: relayed through Postfix (STARTTLS) to the Postfix MX, body and headers unchanged', async () => {
    const raw = message('bob@recipient.test', 'fallback nodemailer');
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: client.smtpPort, secure: false, ignoreTLS: true, auth: { user: 'alice', pass: 'secret' } });
    const info = await t.sendMail({ envelope: { from: 'alice@sender.test', to: ['bob@recipient.test'] }, raw });
    t.close();
    expect(info.response).toMatch(/^250[- ].*queued as/);
    const file = await waitFor('Maildir delivery', () => newMaildirFiles(mx.maildir('bob@recipient.test'))[0]);
    const delivered = readFileSync(file, 'utf8');
    // Postfix stores LF line ends in Maildir and prepends trace fields; everything else is the submitted bytes
    expect(stripPostfixTrace(delivered)).toBe(raw.replace(/\r\n/g, '\n'));
    expect(delivered).toMatch(/^Return-Path: <alice@sender\.test>\n/);
    expect(delivered).toMatch(/with ESMTPS/); // the smarthost leg used STARTTLS
    const id = /queued as (\S+)/.exec(info.response)![1]!;
    const r = client.core.outbox.recipient(id, 'bob@recipient.test')!;
    expect([r.path, r.state]).toEqual(['smtp', 'delivered']);
    expect(r.reason).toMatch(/no postmix gateway serves recipient\.test/);
  });

  it('overlay-only recipient with an empty wallet: the SMTP transaction fails with a clear 5xx', async () => {
    const file = join(tmp, 'carol.eml');
    writeFileSync(file, message('carol@overlay.test', 'refused'));
    const r = await swaks({ port: client.smtpPort, auth: { user: 'alice', password: 'secret' }, from: 'alice@sender.test', to: 'carol@overlay.test', file });
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(
      /550 5\.7\.1 <carol@overlay\.test>: overlay\.test has a gateway but the wallet holds no token for carol@overlay\.test, and overlay-only is set for this recipient/,
    );
    // nodemailer sees the same refusal
    const t = nodemailer.createTransport({ host: '127.0.0.1', port: client.smtpPort, secure: false, ignoreTLS: true, auth: { user: 'alice', pass: 'secret' } });
    await expect(t.sendMail({ envelope: { from: 'alice@sender.test', to: ['carol@overlay.test'] }, raw: 'Subject: x\r\n\r\ny\r\n' })).rejects.toMatchObject({
      responseCode: 550,
    });
    t.close();
  });

  it('refuses submission without valid AUTH', async () => {
    const file = join(tmp, 'noauth.eml');
    writeFileSync(file, message('bob@recipient.test', 'noauth'));
    const bad = await swaks({ port: client.smtpPort, auth: { user: 'alice', password: 'wrong' }, from: 'a@sender.test', to: 'bob@recipient.test', file });
    expect(bad.code).not.toBe(0);
    expect(bad.stdout).toMatch(/535 5\.7\.8/);
    const none = await swaks({ port: client.smtpPort, from: 'a@sender.test', to: 'bob@recipient.test', file });
    expect(none.code).not.toBe(0);
    expect(none.stdout).toMatch(/530 .*authentication required/i);
  });

  it('postmix sendmail -t -i (a process, as mutt and cron run it): recipients from To and Bcc, Bcc removed', async () => {
    const raw = message('Dan <dan@recipient.test>', 'sendmail cli').replace('MIME-Version', 'Bcc: erin@recipient.test\r\nMIME-Version');
    const r = await postmix(['sendmail', '-t', '-i', '-C', cfgFile], raw);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const dan = await waitFor('dan delivery', () => newMaildirFiles(mx.maildir('dan@recipient.test'))[0]);
    const erin = await waitFor('erin (Bcc) delivery', () => newMaildirFiles(mx.maildir('erin@recipient.test'))[0]);
    const want = raw.replace('Bcc: erin@recipient.test\r\n', '').replace(/\r\n/g, '\n');
    expect(stripPostfixTrace(readFileSync(dan, 'utf8'))).toBe(want);
    expect(stripPostfixTrace(readFileSync(erin, 'utf8'))).toBe(want);
  });

  it('postmix client status and tokens import/list (in-process CLI)', async () => {
    const st = await cli(['client', 'status', '--all', '-c', cfgFile]);
    expect(st.code).toBe(0);
    expect(st.stdout).toMatch(/<bob@overlay\.test>  OVERLAY DELIVERED  \[#{20}\] (\d+)\/\1 fragments ACKed/);
    expect(st.stdout).toMatch(/<dan@recipient\.test>  SMTP DELIVERED/);
    expect(st.stdout).toMatch(/why: no postmix gateway serves recipient\.test/);

    const bundle = join(tmp, 'bundle.json');
    writeFileSync(bundle, forgedBundle('zed@overlay.test', 2, 4));
    const im = await cli(['client', 'tokens', 'import', bundle, '-c', cfgFile]);
    expect(im.stdout).toMatch(/imported 2 token\(s\) for zed@overlay\.test from file \(key epoch 4: 2 new, no validity window given\)/);
    const ls = await cli(['client', 'tokens', 'list', '-c', cfgFile]);
    expect(ls.stdout).toMatch(/bob@overlay\.test +2 usable, 1 spent/);
    expect(ls.stdout).toMatch(/zed@overlay\.test +2 usable/);
    expect(ls.stdout).toMatch(/warning: only 2 token\(s\) left for zed@overlay\.test/);
    expect((await cli(['client', 'tokens', '-c', cfgFile])).stdout).toBe(ls.stdout);
  });
});

describe('client process killed after the 250', () => {
  it('restarts and delivers the message from the durable outbox', async () => {
    const dir = join(tmp, 'killed');
    mkdirSync(dir, { recursive: true });
    const port = await freePort();
    const dead = await freePort(); // nothing listens here: the smarthost is "down"
    const file = join(dir, 'client.toml');
    writeFileSync(file, toml(config(join(dir, 'data'), port, dead)));
    const start = () => {
      const c = spawn(process.execPath, [join(ROOT, 'bin/postmix.js'), 'client', 'run', '-c', file], {
        cwd: ROOT,
        stdio: 'ignore',
        env: { ...process.env, POSTMIX_CLIENT_SMARTHOST__PORT: String(c0port) },
      });
      children.push(c);
      return c;
    };
    let c0port = dead;
    const listening = () =>
      new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
    const waitListening = async () => {
      for (let i = 0; i < 300 && !(await listening()); i++) await new Promise((r) => setTimeout(r, 100));
    };
    let proc = start();
    await waitListening();
    const raw = message('bob@recipient.test', 'survives kill');
    const eml = join(dir, 'msg.eml');
    writeFileSync(eml, raw);
    const r = await cli(['client', 'send', eml, '--to', 'bob@recipient.test', '-c', file]);
    expect(r.stdout).toMatch(/queued as (\w+)/);
    const id = /queued as (\w+)/.exec(r.stdout)![1]!;
    proc.kill('SIGKILL');
    await new Promise((res) => proc.once('exit', res));
    // the outbox holds it, not delivered
    const ob = new Outbox(join(dir, 'data', 'outbox.sqlite'));
    expect(ob.recipient(id, 'bob@recipient.test')?.state).toBe('active');
    ob.close();
    const before = newMaildirFiles(mx.maildir('bob@recipient.test')).length;
    c0port = relay.port; // the smarthost is back
    proc = start();
    const files = await waitFor(
      'delivery after restart',
      () => {
        const f = newMaildirFiles(mx.maildir('bob@recipient.test'));
        return f.length > before && f;
      },
      30_000,
    );
    const mine = files.map((f) => readFileSync(f, 'utf8')).find((t) => t.includes('Subject: survives kill'))!;
    expect(stripPostfixTrace(mine)).toBe(raw.replace(/\r\n/g, '\n'));
    proc.kill('SIGTERM');
    await new Promise((res) => proc.once('exit', res));
    const ob2 = new Outbox(join(dir, 'data', 'outbox.sqlite'));
    expect(ob2.recipient(id, 'bob@recipient.test')?.state).toBe('delivered');
    ob2.close();
  });
});
