/**
 * What the client tells (pure parts): the lines of the reply to DATA, `sendmail -v`'s parsing of
 * them, and the STARTTLS certificate's rules (made once in data_dir, reused; bad pairs refused).
 * test/client-tells.test.ts runs them with swaks, msmtp and `postmix sendmail` as processes.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ClientConfigSchema } from './config.ts';
import { parseSendmailArgs } from './sendmail.ts';
import { dataReplyLines, describePath } from './smtp-server.ts';
import { replyLines } from './submit.ts';
import { checkTlsKeys, selfSignedCertificate, submissionTls } from './tls.ts';

const tmp = mkdtempSync(join(tmpdir(), 'postmix-tells-unit-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('the reply to DATA', () => {
  it('names each path with its reason, folding the fallback\'s "relaying through ..." into the label', () => {
    expect(describePath({ address: 'a@x.test', path: 'overlay', reason: 'gateway for x.test in epoch 3; 2 token(s) held' })).toBe(
      '<a@x.test> overlay: gateway for x.test in epoch 3; 2 token(s) held',
    );
    expect(describePath({ address: 'a@x.test', path: 'overlay', held: true, reason: 'no valid network document is available yet (…): held' })).toBe(
      '<a@x.test> overlay, held: no valid network document is available yet (…): held',
    );
    expect(
      describePath({
        address: 'b@y.test',
        path: 'smtp',
        reason: 'no postmix gateway serves y.test in network epoch 3: relaying through the SMTP smarthost (not anonymous)',
      }),
    ).toBe('<b@y.test> smtp fallback (not anonymous): no postmix gateway serves y.test in network epoch 3');
    expect(
      describePath({
        address: 'b@y.test',
        path: 'smtp',
        reason:
          'y.test had a postmix gateway (listed up to network epoch 2) but no postmix gateway serves y.test in network epoch 3: relaying through the SMTP smarthost (not anonymous; routing.on_gateway_loss = "smtp")',
      }),
    ).toBe(
      '<b@y.test> smtp fallback (not anonymous): y.test had a postmix gateway (listed up to network epoch 2) but no postmix gateway serves y.test in network epoch 3 (routing.on_gateway_loss = "smtp")',
    );
    expect(describePath({ address: 'c@z.test', path: 'smtp', reason: 'configured to always use the SMTP smarthost for this recipient' })).toBe(
      '<c@z.test> smtp fallback (not anonymous): configured to always use the SMTP smarthost for this recipient',
    );
  });

  it('starts with the queue id, ends with the refused, and keeps every line within 512 octets', () => {
    const lines = dataReplyLines({ id: 'abc123', recipients: [{ address: 'a@x.test', path: 'overlay', reason: 'r'.repeat(2000) }] }, [
      { address: 'e@x.test', code: 550, message: '5.7.1 <e@x.test>: not today' },
    ]);
    expect(lines[0]).toBe('2.0.0 Ok: queued as abc123');
    expect(lines[1]!.length).toBe(506);
    expect(lines[1]!.endsWith('...')).toBe(true);
    expect(lines[2]).toBe('<e@x.test> refused (550): not today');
    // octets, not characters (SMTPUTF8 addresses and reasons)
    const wide = dataReplyLines({ id: 'x', recipients: [{ address: 'ä@x.test', path: 'overlay', reason: 'é'.repeat(600) }] })[1]!;
    expect(Buffer.byteLength(wide)).toBeLessThanOrEqual(506);
    expect(wide.endsWith('é...')).toBe(true);
  });

  it('sendmail -v reads the lines back without their codes', () => {
    expect(replyLines('250-2.0.0 Ok: queued as abc\n250-<a@x.test> overlay: why\n250 <b@y.test> smtp fallback (not anonymous): because')).toEqual([
      'Ok: queued as abc',
      '<a@x.test> overlay: why',
      '<b@y.test> smtp fallback (not anonymous): because',
    ]);
    expect(parseSendmailArgs(['-v', '-t', '-oi']).v).toBe(true);
    expect(parseSendmailArgs(['-t', '-oi']).v).toBe(false);
  });
});

describe('the STARTTLS certificate', () => {
  const cfg = (smtp: Record<string, unknown>, dir = join(tmp, 'd')) =>
    ClientConfigSchema.parse({ data_dir: dir, smtp: { host: '127.0.0.1', user: 'u', password: 'p', ...smtp } });

  it('none on loopback without allow_remote; keys there, or half a pair, are refused', () => {
    expect(checkTlsKeys(cfg({}))).toBe(false);
    expect(submissionTls(cfg({}))).toBeNull();
    expect(() => checkTlsKeys(cfg({ tls_cert: '/x.pem', tls_key: '/x.key' }))).toThrow(/only used with smtp\.allow_remote = true/);
    expect(() => checkTlsKeys(cfg({ allow_remote: true, tls_key: '/x.key' }))).toThrow(/smtp\.tls_cert is not set/);
    expect(checkTlsKeys(cfg({ allow_remote: true }))).toBe(true);
  });

  it('made self-signed in data_dir (0600) once, then reused', () => {
    const dir = join(tmp, 'gen');
    const a = submissionTls(cfg({ allow_remote: true }, dir))!;
    expect(a.generated).toBe(true);
    expect(statSync(join(dir, 'smtp-tls.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'smtp-tls.crt')).mode & 0o777).toBe(0o600);
    const b = submissionTls(cfg({ allow_remote: true }, dir))!;
    expect(b.fingerprint).toBe(a.fingerprint);
    expect(new X509Certificate(b.cert).fingerprint256).toBe(a.fingerprint);
  });

  it("the operator's pair is used as it is; a foreign key, a non-PEM file or a missing one is exit 78", () => {
    const one = selfSignedCertificate('one', ['localhost']);
    const two = selfSignedCertificate('two', ['localhost']);
    const f = (n: string, t: string) => {
      writeFileSync(join(tmp, n), t);
      return join(tmp, n);
    };
    const ok = submissionTls(cfg({ allow_remote: true, tls_cert: f('1.crt', one.cert), tls_key: f('1.key', one.key) }))!;
    expect(ok.generated).toBe(false);
    expect(ok.fingerprint).toBe(new X509Certificate(one.cert).fingerprint256);
    expect(() => submissionTls(cfg({ allow_remote: true, tls_cert: join(tmp, '1.crt'), tls_key: f('2.key', two.key) }))).toThrow(
      /smtp\.tls_key .* is not the key of smtp\.tls_cert/,
    );
    expect(() => submissionTls(cfg({ allow_remote: true, tls_cert: f('junk.crt', 'junk'), tls_key: join(tmp, '1.key') }))).toThrow(/is not a PEM certificate/);
    expect(() => submissionTls(cfg({ allow_remote: true, tls_cert: join(tmp, 'missing.crt'), tls_key: join(tmp, '1.key') }))).toThrow(
      /smtp\.tls_cert .*missing\.crt cannot be read/,
    );
  });
});
