/**
 * A client that tells (issue 16 point 5):
 * - swaks submits one message to two recipients of a real client (its SMTP listener; the overlay
 *   through the in-process mixnet with the real gateway intake, the fallback to an SMTP sink):
 *   the 250 to DATA is a multi-line reply naming each recipient's path and why, and a recipient
 *   refused at RCPT TO with its reason; both messages arrive;
 * - `postmix sendmail -v` (a process) prints each recipient's path on stderr; without -v it is quiet;
 * - a `postmix client run` process with smtp.allow_remote: STARTTLS offered, AUTH neither
 *   advertised nor taken before it and offered after it (swaks --tls), a self-signed certificate
 *   made in data_dir (0600) whose fingerprint is logged, msmtp with `auth on`, `tls on`,
 *   `tls_starttls on` and that fingerprint, `postmix sendmail -v` pinning it; half a key pair or a
 *   certificate without allow_remote is exit 78.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientConfigSchema } from '../client/config.ts';
import { runClient, type RunningClient } from '../client/daemon.ts';
import { edgeCaseMessage } from '../cli/testnet/messages.ts';
import { freePort } from '../cli/testnet/ports.ts';
import { InProcessMixnet } from './support/in-process-mixnet.ts';
import { postmixProcess, ROOT, run, swaks } from './support/processes.ts';

const MAILBOX = new Uint8Array(32).fill(7);
let tmp: string;
let sim: InProcessMixnet;
let client: RunningClient;
let pump: NodeJS.Timeout;
let sinkServer: SMTPServer;
let sinkPort: number;
const sunk: { to: string[]; raw: string }[] = [];
const children: ChildProcess[] = [];

async function waitFor<T>(what: string, f: () => T | undefined | null | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const q = (v: unknown) => JSON.stringify(v);

/** A plain SMTP conversation: the greeting's and each command's final reply line. */
function talk(port: number, commands: readonly string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const finals: string[] = [];
    let buf = '';
    const next = [...commands];
    s.on('data', (b: Buffer) => {
      buf += b.toString();
      let i;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!/^\d{3} /.test(line)) continue;
        finals.push(line);
        const c = next.shift();
        if (c !== undefined) s.write(c + '\r\n');
      }
    });
    s.on('close', () => resolve(finals));
    s.on('error', reject);
  });
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'postmix-tells-'));
  // the user's provider: takes whatever the fallback relays
  sinkServer = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        sunk.push({ to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks).toString('utf8') });
        cb(null, 'ok');
      });
    },
  });
  await new Promise<void>((r) => sinkServer.listen(0, '127.0.0.1', () => r()));
  sinkPort = (sinkServer.server.address() as { port: number }).port;

  sim = new InProcessMixnet({ domains: ['alpha.test'], mixing: { lambdaP: 50, lambdaL: 0, lambdaD: 0, lambdaM: 0, lambdaG: 0, mu: 10 } });
  const cfg = ClientConfigSchema.parse({
    data_dir: join(tmp, 'client'),
    log: { level: 'warn' },
    smtp: { host: '127.0.0.1', port: await freePort(), user: 'alice', password: 'secret' },
    smarthost: { host: '127.0.0.1', port: sinkPort, require_tls: false, retry_base_ms: 100 },
    routing: { overlay_only_recipients: ['carol@alpha.test'] },
    bounce: { maildir: join(tmp, 'client', 'Maildir') },
  });
  client = await runClient(cfg, { log: pino({ level: 'silent' }), network: sim.network(MAILBOX), maxSleepMs: 50 });
  pump = setInterval(() => {
    for (const item of sim.fetch(MAILBOX)) client.core.onMailboxItem(item);
  }, 20);
  client.core.wallet.importBundle(sim.bundle('alice@alpha.test', 5));
}, 60_000);

afterAll(async () => {
  clearInterval(pump);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await client?.stop();
  await new Promise<void>((r) => (sinkServer ? sinkServer.close(() => r()) : r()));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 30_000);

/** The server's lines in a swaks transcript (`<-` in clear, `<~` inside TLS), without the arrows. */
const serverLines = (out: string, arrow = '<-') =>
  out
    .split('\n')
    .filter((l) => l.startsWith(`${arrow} `))
    .map((l) => l.slice(arrow.length).trim());

describe("the reply to DATA tells each recipient's path", () => {
  it('swaks, two recipients (overlay, fallback) and one refused: a multi-line 250 naming each, and both arrive', async () => {
    const raw = edgeCaseMessage({ to: 'alice@alpha.test, bob@b.example', subject: 'tells swaks' });
    const file = join(tmp, 'two.eml');
    writeFileSync(file, raw.slice(0, -2)); // swaks adds the final CRLF before the dot
    const r = await swaks({
      port: client.smtpPort,
      auth: { user: 'alice', password: 'secret' },
      from: 'sender@sender.test',
      to: 'alice@alpha.test,bob@b.example,carol@alpha.test',
      file,
    });
    expect(r.code).toBe(0);
    const lines = serverLines(r.stdout);
    // carol is overlay-only with no token: refused at RCPT TO (swaks marks a failure '<**'), the others go on
    expect(serverLines(r.stdout, '<**')).toEqual([
      expect.stringMatching(/^550 5\.7\.1 <carol@alpha\.test>: alpha\.test has a gateway but the wallet holds no token/),
    ]);
    const at = lines.findIndex((l) => /^250-2\.0\.0 Ok: queued as \w+$/.test(l));
    expect(at, r.stdout).toBeGreaterThan(0);
    const epoch = sim.doc.epoch;
    expect(lines.slice(at, at + 4)).toEqual([
      expect.stringMatching(/^250-2\.0\.0 Ok: queued as \w+$/),
      `250-<alice@alpha.test> overlay: gateway for alpha.test in epoch ${epoch}; 5 token(s) held`,
      `250-<bob@b.example> smtp fallback (not anonymous): no postmix gateway serves b.example in network epoch ${epoch}`,
      expect.stringMatching(
        /^250 <carol@alpha\.test> refused \(550\): alpha\.test has a gateway but the wallet holds no token for carol@alpha\.test, and overlay-only is set for this recipient/,
      ),
    ]);
    // every line within RFC 5321's 512 octets
    for (const l of lines) expect(Buffer.byteLength(l) + 2).toBeLessThanOrEqual(512);
    const overlay = await waitFor('overlay delivery', () => sim.delivered.find((d) => d.recipient === 'alice@alpha.test'));
    expect(Buffer.from(overlay.bytes).toString('utf8')).toBe(raw);
    const fallback = await waitFor('fallback delivery', () => sunk.find((s) => s.to.includes('bob@b.example')));
    expect(fallback.to).toEqual(['bob@b.example']);
    expect(fallback.raw).toBe(raw);
  });

  it("postmix sendmail -v prints each recipient's path on stderr; without -v it is quiet", async () => {
    const cfgFile = join(tmp, 'sendmail.toml');
    writeFileSync(
      cfgFile,
      `data_dir = ${q(join(tmp, 'client'))}\n[smtp]\nhost = "127.0.0.1"\nport = ${client.smtpPort}\nuser = "alice"\npassword = "secret"\n`,
    );
    const raw = edgeCaseMessage({ to: 'alice@alpha.test, bob@b.example', subject: 'tells sendmail' });
    const v = await postmixProcess(['sendmail', '-v', '-t', '-i', '-C', cfgFile], { input: raw });
    expect(v.code, v.stderr).toBe(0);
    const epoch = sim.doc.epoch;
    expect(v.stderr.split('\n').filter(Boolean)).toEqual([
      expect.stringMatching(/^sendmail: Ok: queued as \w+$/),
      `sendmail: <alice@alpha.test> overlay: gateway for alpha.test in epoch ${epoch}; 4 token(s) held`,
      `sendmail: <bob@b.example> smtp fallback (not anonymous): no postmix gateway serves b.example in network epoch ${epoch}`,
    ]);
    expect(v.stdout).toBe('');
    const quiet = await postmixProcess(['sendmail', '-t', '-i', '-C', cfgFile], { input: raw.replace('tells sendmail', 'tells quiet') });
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe('');
    expect(quiet.stdout).toBe('');
  });
});

describe('submission with smtp.allow_remote: STARTTLS, AUTH only after it', () => {
  const dir = () => join(tmp, 'remote');
  let port: number;
  let cfgFile: string;
  let fingerprint: string;
  let log = '';

  beforeAll(async () => {
    mkdirSync(dir(), { recursive: true });
    port = await freePort();
    cfgFile = join(dir(), 'client.toml');
    writeFileSync(
      cfgFile,
      [
        `data_dir = ${q(join(dir(), 'data'))}`,
        `[smtp]\nhost = "127.0.0.1"\nport = ${port}\nuser = "alice"\npassword = "secret"\nallow_remote = true`,
        `[smarthost]\nhost = "127.0.0.1"\nport = ${sinkPort}\nrequire_tls = false\nretry_base_ms = 100`,
        `[bounce]\nmaildir = ${q(join(dir(), 'Maildir'))}`,
      ].join('\n') + '\n',
    );
    const c = spawn(process.execPath, [join(ROOT, 'bin/postmix.js'), 'client', 'run', '-c', cfgFile], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(c);
    c.stdout!.on('data', (b: Buffer) => (log += b.toString()));
    c.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    await waitFor('the client listening', () => log.includes('smtp submission listening'), 30_000);
    fingerprint = /"sha256":"([0-9A-F:]+)"/.exec(log)![1]!;
  }, 40_000);

  it('makes a self-signed certificate in data_dir (0600) and logs its fingerprint', () => {
    const cert = join(dir(), 'data', 'smtp-tls.crt');
    const key = join(dir(), 'data', 'smtp-tls.key');
    expect(statSync(cert).mode & 0o777).toBe(0o600);
    expect(statSync(key).mode & 0o777).toBe(0o600);
    const x = new X509Certificate(readFileSync(cert));
    expect(x.fingerprint256).toBe(fingerprint);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.subjectAltName).toMatch(/DNS:localhost/);
    expect(x.subjectAltName).toMatch(/IP Address:127\.0\.0\.1/);
    expect(log).toContain(`certificate SHA-256 fingerprint ${fingerprint}`);
  });

  it('EHLO in clear offers STARTTLS and not AUTH; AUTH and MAIL in clear are refused', async () => {
    const file = join(dir(), 'ehlo.eml');
    writeFileSync(file, 'Subject: x\r\n\r\nx');
    const ehlo = await swaks({ port, from: 'a@sender.test', to: 'bob@b.example', file, extra: ['--quit-after', 'EHLO'] });
    expect(ehlo.code, ehlo.stdout + ehlo.stderr).toBe(0);
    const lines = serverLines(ehlo.stdout);
    expect(lines).toContainEqual(expect.stringMatching(/^250[- ]STARTTLS$/));
    expect(lines.filter((l) => /AUTH/.test(l))).toEqual([]);
    // a client that tries anyway gets no 235 and no 250 to MAIL
    const replies = await talk(port, ['EHLO x.test', `AUTH PLAIN ${Buffer.from('\0alice\0secret').toString('base64')}`, 'MAIL FROM:<a@sender.test>', 'QUIT']);
    expect(replies[0]).toMatch(/^220 /);
    expect(replies[2]).toMatch(/^5\d\d /); // AUTH
    expect(replies[3]).toMatch(/^530 5\.7\.0 Must issue a STARTTLS command first/); // MAIL
  });

  it('swaks --tls: AUTH offered after STARTTLS, accepted, and the DATA reply tells the path', async () => {
    const raw = edgeCaseMessage({ to: 'bob@b.example', subject: 'tells tls' });
    const file = join(dir(), 'tls.eml');
    writeFileSync(file, raw.slice(0, -2));
    const r = await swaks({ port, from: 'a@sender.test', to: 'bob@b.example', file, auth: { user: 'alice', password: 'secret' }, extra: ['--tls'] });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(serverLines(r.stdout).filter((l) => /AUTH/.test(l))).toEqual([]); // nothing before TLS
    const inTls = serverLines(r.stdout, '<~');
    expect(inTls).toContainEqual(expect.stringMatching(/^250[- ]AUTH PLAIN LOGIN$/));
    expect(inTls).toContainEqual(expect.stringMatching(/^235 /));
    expect(inTls).toContainEqual('250 <bob@b.example> smtp fallback (not anonymous): no network document is available');
    await waitFor('fallback delivery', () => sunk.find((s) => s.raw.includes('Subject: tells tls')));
  });

  it('msmtp with its defaults auth on, tls on, tls_starttls on and the logged fingerprint', async () => {
    const rc = join(dir(), 'msmtprc');
    writeFileSync(
      rc,
      [
        'account default',
        'host 127.0.0.1',
        `port ${port}`,
        'auth on',
        'user alice',
        'password secret',
        'tls on',
        'tls_starttls on',
        `tls_fingerprint ${fingerprint}`,
        'from a@sender.test',
      ].join('\n') + '\n',
      { mode: 0o600 },
    );
    const raw = edgeCaseMessage({ to: 'bob@b.example', subject: 'tells msmtp' });
    const r = await run('msmtp', ['-C', rc, '-v', 'bob@b.example'], { input: raw });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^<-- 250 <bob@b\.example> smtp fallback \(not anonymous\)/m); // -v: the conversation on stdout
    await waitFor('fallback delivery', () => sunk.find((s) => s.raw.includes('Subject: tells msmtp')));
  });

  it('postmix sendmail -v submits with STARTTLS, pinning the certificate', async () => {
    const raw = edgeCaseMessage({ to: 'bob@b.example', subject: 'tells sendmail tls' });
    const r = await postmixProcess(['sendmail', '-v', '-t', '-i', '-C', cfgFile], { input: raw });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^sendmail: <bob@b\.example> smtp fallback \(not anonymous\): /m);
    await waitFor('fallback delivery', () => sunk.find((s) => s.raw.includes('Subject: tells sendmail tls')));
  });

  it('half a key pair, or a certificate without allow_remote: exit 78 naming the key', async () => {
    const bad = join(dir(), 'bad.toml');
    const base = `data_dir = ${q(join(dir(), 'bad-data'))}\n[smtp]\nhost = "127.0.0.1"\nport = ${await freePort()}\nuser = "alice"\npassword = "secret"\n`;
    writeFileSync(bad, base + `allow_remote = true\ntls_cert = ${q(join(dir(), 'data', 'smtp-tls.crt'))}\n`);
    const half = await postmixProcess(['client', 'run', '--check', '-c', bad]);
    expect(half.code).toBe(78);
    expect(half.stderr).toMatch(/smtp\.tls_cert and smtp\.tls_key go together: smtp\.tls_key is not set/);
    writeFileSync(bad, base + `tls_cert = ${q(join(dir(), 'data', 'smtp-tls.crt'))}\ntls_key = ${q(join(dir(), 'data', 'smtp-tls.key'))}\n`);
    const loop = await postmixProcess(['client', 'run', '-c', bad]);
    expect(loop.code).toBe(78);
    expect(loop.stderr).toMatch(/only used with smtp\.allow_remote = true/);
    const check = await postmixProcess(['client', 'run', '--check', '-c', cfgFile]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toContain(`STARTTLS (AUTH after it; self-signed certificate ${join(dir(), 'data', 'smtp-tls.crt')}, SHA-256 ${fingerprint})`);
  });
});
