/**
 * Real programs run by the tests: any command, the `postmix` CLI as a process (as mutt and
 * cron run `postmix sendmail`), and swaks submitting a file to a client's SMTP intake.
 * One place for their argv, so every test submits the way a user's mail client would.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(import.meta.dirname, '..', '..');

export interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** bytes for stdin; when absent stdin is closed empty */
  readonly input?: string | Buffer;
  /** merged over process.env */
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

/** Runs a program to its end; a non-zero exit is a result, not a rejection. */
export function run(cmd: string, args: readonly string[], o: RunOptions = {}): Promise<Ran> {
  return new Promise((resolve) => {
    const p = execFile(
      cmd,
      [...args],
      { cwd: o.cwd ?? ROOT, timeout: o.timeoutMs ?? 30_000, env: { ...process.env, ...o.env }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (err as { code?: unknown }).code : 0;
        resolve({ code: typeof code === 'number' ? code : 1, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    p.stdin!.end(o.input ?? '');
  });
}

/** `bin/postmix.js` as its own process. */
export function postmixProcess(args: readonly string[], o: RunOptions = {}): Promise<Ran> {
  return run(process.execPath, [join(ROOT, 'bin/postmix.js'), ...args], o);
}

export interface SwaksSubmission {
  readonly port: number;
  readonly from: string;
  readonly to: string;
  /** the message file; swaks ends DATA with "\r\n.\r\n" after its last byte */
  readonly file: string;
  /** AUTH PLAIN credentials; omitted means no AUTH */
  readonly auth?: { readonly user: string; readonly password: string };
  /** further swaks options, placed first (e.g. '--no-data-fixup', '--silent', '2') */
  readonly extra?: readonly string[];
}

/** swaks submitting `file` to 127.0.0.1:`port`. */
export function swaks(s: SwaksSubmission): Promise<Ran> {
  const auth = s.auth ? ['--auth', 'PLAIN', '--auth-user', s.auth.user, '--auth-password', s.auth.password] : [];
  return run('swaks', [...(s.extra ?? []), '--server', `127.0.0.1:${s.port}`, ...auth, '--from', s.from, '--to', s.to, '--data', `@${s.file}`]);
}
