/**
 * Issue 13 point 8: hand-off TLS toward the configured MX, against real Postfix instances
 * (cli/testnet/postfix.ts): `tls` offers STARTTLS with its usual self-signed certificate (the
 * relay role), `plain` offers none (the mx role).
 * - the probe's verdict says that `starttls = "opportunistic"` + `tls_verify = true` fails every
 *   hand-off against the self-signed MX, and what to set; the other combinations say what they do;
 * - `postmix gateway run --check` (a process, config from `gateway init`) prints it and exits 78;
 * - a failed hand-off records the TLS reason, not just a socket error; with tls_verify = false
 *   the same MX takes the message.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../cli/testnet/ports.ts';
import { createPostfix, postfixAvailable, type PostfixServer } from '../cli/testnet/postfix.ts';
import { HandoffWorker } from '../gateway/handoff.ts';
import { checkMxTls, type MxTlsSettings } from '../gateway/mx-tls.ts';
import { GatewayStore } from '../gateway/store.ts';

const why = postfixAvailable();
if (why) throw new Error(`test/gateway-mx-tls.test.ts needs a real Postfix: ${why}`);

const ROOT = join(import.meta.dirname, '..');
let dir: string;
let tlsMx: PostfixServer;
let plainMx: PostfixServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pmx-mx-tls-'));
  const [a, b, dead] = [await freePort(), await freePort(), await freePort()];
  tlsMx = createPostfix({ dir: join(dir, 'pf-tls'), name: 'tls', port: a, role: { kind: 'relay', relayPort: dead } });
  plainMx = createPostfix({ dir: join(dir, 'pf-plain'), name: 'plain', port: b, role: { kind: 'mx', domains: ['example.org'], mailRoot: join(dir, 'mail') } });
  await Promise.all([tlsMx.start(), plainMx.start()]);
}, 60_000);

afterAll(async () => {
  await tlsMx?.destroy();
  await plainMx?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

const settings = (port: number, starttls: MxTlsSettings['starttls'], tlsVerify: boolean): MxTlsSettings => ({
  host: '127.0.0.1',
  port,
  protocol: 'smtp',
  starttls,
  tlsVerify,
  heloName: 'gw.test',
});

describe('hand-off TLS toward the configured MX', () => {
  it('says what each setting will do against a self-signed STARTTLS MX and a plaintext one', async () => {
    const sample = await checkMxTls(settings(tlsMx.port, 'opportunistic', true));
    expect(sample.level).toBe('fail');
    expect(sample.text).toMatch(
      /every hand-off to smtp:\/\/127\.0\.0\.1:\d+ will FAIL: the MX offers STARTTLS but its certificate does not verify \(self-signed certificate, DEPTH_ZERO_SELF_SIGNED_CERT\)/,
    );
    expect(sample.text).toMatch(/set \[mx\] tls_verify = false/);
    expect(await checkMxTls(settings(tlsMx.port, 'require', true))).toMatchObject({ level: 'fail' });
    expect(await checkMxTls(settings(tlsMx.port, 'opportunistic', false))).toMatchObject({
      level: 'warn',
      text: expect.stringMatching(/^TLS to .*certificate NOT verified \(self[- ]signed/),
    });
    expect(await checkMxTls(settings(tlsMx.port, 'never', true))).toMatchObject({
      level: 'warn',
      text: expect.stringMatching(/^plaintext to .* although it offers STARTTLS/),
    });
    expect(await checkMxTls(settings(plainMx.port, 'require', true))).toMatchObject({
      level: 'fail',
      text: expect.stringMatching(/starttls = "require" but the MX offers no STARTTLS/),
    });
    expect(await checkMxTls(settings(plainMx.port, 'opportunistic', true))).toMatchObject({
      level: 'warn',
      text: expect.stringMatching(/^plaintext to .*the MX offers no STARTTLS/),
    });
    const dead = await freePort();
    expect(await checkMxTls(settings(dead, 'opportunistic', true))).toMatchObject({
      level: 'warn',
      text: expect.stringMatching(/not reachable \(ECONNREFUSED\)/),
    });
  }, 30_000);

  it('postmix gateway run --check prints the verdict and exits 78 for the failing sample settings', () => {
    const run = (env: Record<string, string>, ...args: string[]) => {
      const r = spawnSync(process.execPath, [join(ROOT, 'bin/postmix.js'), ...args], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, ...env },
      });
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    const key = Buffer.alloc(32, 7).toString('base64');
    const init = run(
      {},
      'gateway',
      'init',
      '-c',
      'gw.toml',
      '--data-dir',
      'gw',
      '--domain',
      'example.org',
      '--authority',
      `http://127.0.0.1:8080=${key}`,
      '--epoch-length',
      '60',
    );
    expect(init.stderr).toBe('');
    const env = { POSTMIX_GATEWAY_MX__PORT: String(tlsMx.port), POSTMIX_GATEWAY_MX__STARTTLS: 'opportunistic', POSTMIX_GATEWAY_MX__TLS_VERIFY: 'true' };
    const bad = run(env, 'gateway', 'run', '--check', '-c', 'gw.toml');
    expect(bad.stdout).toMatch(/config ok/);
    expect(bad.stdout).toMatch(/MX TLS \(fail\): every hand-off to smtp:\/\/127\.0\.0\.1:\d+ will FAIL: .*self[- ]signed certificate.*tls_verify = false/);
    expect(bad.code).toBe(78);
    const ok = run({ ...env, POSTMIX_GATEWAY_MX__TLS_VERIFY: 'false' }, 'gateway', 'run', '--check', '-c', 'gw.toml');
    expect(ok.stdout).toMatch(/MX TLS \(warn\): TLS to .*certificate NOT verified/);
    expect(ok.code).toBe(0);
  }, 60_000);

  it('a hand-off that fails on the certificate records the TLS reason; with tls_verify = false it is handed over', async () => {
    const store = new GatewayStore(join(dir, 'gw.sqlite'));
    const warnings: { o: object; m: string }[] = [];
    const log = { info: () => undefined, warn: (o: object, m: string) => warnings.push({ o, m }) };
    store.enqueue(new Uint8Array(16).fill(0xaa), 'bob@example.org', new Uint8Array(Buffer.from('From: a@b.test\r\nSubject: t\r\n\r\nhi\r\n')), Date.now());
    const strict = new HandoffWorker({
      store,
      mx: { host: '127.0.0.1', port: tlsMx.port, starttls: 'opportunistic', tlsVerify: true, timeoutMs: 5000 },
      baseDelayMs: 1,
      log,
    });
    expect(await strict.runOnce()).toBe(0);
    await strict.stop();
    const err = JSON.stringify(warnings.map((w) => w.o));
    expect(err).toMatch(/TLS: the MX's certificate does not verify \(self[- ]signed certificate[^)]*\); set \[mx\] tls_verify = false/);
    const row = store.listQueue(['queued'])[0]!;
    expect(row.lastError).toMatch(/TLS: the MX's certificate does not verify/);
    await new Promise((r) => setTimeout(r, 20)); // past the 1 ms backoff
    const lax = new HandoffWorker({
      store,
      mx: { host: '127.0.0.1', port: tlsMx.port, starttls: 'opportunistic', tlsVerify: false, timeoutMs: 5000 },
      baseDelayMs: 1,
      log,
    });
    expect(await lax.runOnce()).toBe(1);
    await lax.stop();
    store.close();
  }, 30_000);
});
