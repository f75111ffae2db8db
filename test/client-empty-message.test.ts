/**
 * Issue 13 point 5: an empty submission (0 bytes, or a message with no header section) is
 * refused by a running `postmix client run` process with 554 5.6.0 before anything is stored:
 * swaks sees the 554, `postmix sendmail` prints it and exits EX_DATAERR (65), and afterwards
 * the outbox holds only the one real message submitted alongside, and the wallet's tokens are
 * untouched.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { edgeCaseMessage } from '../cli/testnet/messages.ts';
import { freePort } from '../cli/testnet/ports.ts';
import { postmixProcess, ROOT, swaks as submitWithSwaks } from './support/processes.ts';
import { forgedBundle } from './support/tokens.ts';

let tmp: string;
let cfgFile: string;
let port: number;
let proc: ChildProcess | undefined;

const postmix = (args: string[], input?: string | Buffer) => postmixProcess(args, { input });
const swaks = (file: string, ...extra: string[]) =>
  submitWithSwaks({ port, auth: { user: 'alice', password: 'secret' }, from: 'alice@sender.test', to: 'bob@recipient.test', file, extra });

function listening(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'postmix-empty-'));
  port = await freePort();
  const dead = await freePort(); // no smarthost listens: the real message stays queued
  cfgFile = join(tmp, 'client.toml');
  writeFileSync(
    cfgFile,
    [
      `data_dir = ${JSON.stringify(join(tmp, 'data'))}`,
      `[log]\nlevel = "warn"`,
      `[smtp]\nhost = "127.0.0.1"\nport = ${port}\nuser = "alice"\npassword = "secret"`,
      `[smarthost]\nhost = "127.0.0.1"\nport = ${dead}\nrequire_tls = false\nretry_base_ms = 60000`,
      `[bounce]\nmaildir = ${JSON.stringify(join(tmp, 'Maildir'))}`,
    ].join('\n') + '\n',
  );
  const bundle = join(tmp, 'bundle.json');
  writeFileSync(bundle, forgedBundle('bob@recipient.test', 2, 4));
  expect((await postmix(['client', 'tokens', 'import', bundle, '-c', cfgFile])).code).toBe(0);
  proc = spawn(process.execPath, [join(ROOT, 'bin/postmix.js'), 'client', 'run', '-c', cfgFile], { cwd: ROOT, stdio: 'ignore' });
  for (let i = 0; i < 300 && !(await listening()); i++) await new Promise((r) => setTimeout(r, 100));
}, 60_000);

afterAll(async () => {
  if (proc && proc.exitCode === null) {
    proc.kill('SIGTERM');
    await new Promise((r) => proc!.once('exit', r));
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 30_000);

describe('an empty message is refused by the running client', () => {
  it('swaks and postmix sendmail get 554 5.6.0 for 0 bytes and for a body without header; nothing is stored, no token spent', async () => {
    // swaks appends "\r\n.\r\n" to its data unless told not to: a lone ".\r\n" is 0 bytes of DATA
    const empty = join(tmp, 'empty.eml');
    writeFileSync(empty, '.\r\n');
    const e = await swaks(empty, '--no-data-fixup');
    expect(e.code).not.toBe(0);
    expect(e.stdout).toMatch(/<\*\* 554 5\.6\.0 Refused: empty message \(0 bytes\)/);

    const bodyOnly = join(tmp, 'body-only.eml');
    writeFileSync(bodyOnly, 'just a body line, no header at all\r\nsecond line');
    const b = await swaks(bodyOnly);
    expect(b.code).not.toBe(0);
    expect(b.stdout).toMatch(/<\*\* 554 5\.6\.0 Refused: no header section \(the first line is not a header field\)/);

    const s0 = await postmix(['sendmail', '-C', cfgFile, 'bob@recipient.test'], '');
    expect(s0.code).toBe(65); // EX_DATAERR
    // nodemailer ends DATA on a CRLF, so the intake sees the 0-byte input as one line break
    expect(s0.stderr).toMatch(/^sendmail: 554 5\.6\.0 Refused: empty message \((0 bytes|2 bytes of blank lines only)\)/);
    const s1 = await postmix(['sendmail', '-i', '-C', cfgFile, 'bob@recipient.test'], '\r\nbody after an empty header\r\n');
    expect(s1.code).toBe(65);
    expect(s1.stderr).toMatch(/^sendmail: 554 5\.6\.0 Refused: no header section \(the first line is empty\)/);

    // a real message on the same intake is accepted: the refusals above are about the content
    const ok = await postmix(['sendmail', '-i', '-C', cfgFile, 'bob@recipient.test'], edgeCaseMessage({ to: 'bob@recipient.test', subject: 'real' }));
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);

    const st = await postmix(['client', 'status', '--all', '--json', '-c', cfgFile]);
    expect(st.code).toBe(0);
    const msgs = JSON.parse(st.stdout) as unknown[];
    expect(msgs).toHaveLength(1); // only the real message was stored
    expect(JSON.stringify(msgs[0])).toMatch(/bob@recipient\.test/);
    const tokens = await postmix(['client', 'tokens', 'list', '-c', cfgFile]);
    expect(tokens.stdout).toMatch(/bob@recipient\.test +2 usable/);
  }, 60_000);
});
